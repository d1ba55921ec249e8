"""Benchmark: rankings to a pair Parquet file at InstructGPT's reward-model scale.

33,000 rankings of 9 answers each, every answer in its own tie group: 33,000 x C(9, 2) = 1,188,000 pairs,
the size of InstructGPT's reward-model training set. Times the path the Celery task takes
(build_pair_frame + write_pair_dataset) and, in the same process on the same input, the naive one: a
Python loop of expand_ranking over every ranking, one tuple per pair, one DataFrame, the same writer.

Texts: each prompt (~300 chars) and answer (~600 chars, normal lengths) is a different window of one
shared random-word corpus (32 MiB by default). Slicing a pool is fast to generate and keeps every text
distinct, as in real data; windows of one corpus share some substrings, so zstd may compress a little
better than it would on real text. Ratings 1-7, 10% missing; 40 labelers.

Run from the project root:  .venv/bin/python -m bench.pairs [--runs 3] [--rankings 33000] [--overlap 1]
"""
from __future__ import annotations

import argparse
import gc
import resource
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from labeling.ranking import expand_ranking, expand_rankings
from rewardtrain.ml.pairs import (
    PAIR_COLUMNS,
    DatasetFile,
    build_pair_frame,
    split_by_prompt,
    write_pair_dataset,
)

ANSWERS_PER_PROMPT = 9
VALIDATION_FRACTION, SEED = 0.1, 0
MIB = 1 << 20


def make_corpus(rng: np.random.Generator, size_mb: int) -> str:
    """Random pseudo-words of 2-10 letters, space separated, about `size_mb` MiB."""
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocabulary = np.array(
        ["".join(rng.choice(letters, size=n)) for n in rng.integers(2, 11, size=5_000)], dtype=object
    )
    return " ".join(vocabulary[rng.integers(0, len(vocabulary), size=size_mb * MIB // 7)])


def make_texts(rng: np.random.Generator, corpus: str, count: int, mean: int, spread: int) -> list[str]:
    lengths = np.clip(rng.normal(mean, spread, size=count), mean // 5, mean * 4).astype(int)
    starts = rng.integers(0, len(corpus) - lengths.max(), size=count)
    return [corpus[start : start + length] for start, length in zip(starts.tolist(), lengths.tolist(), strict=True)]


def make_input(rankings: int, overlap: int, corpus_mb: int, seed: int = 1):
    """Label rows (the fast path's input), per-ranking records (the naive one's) and the texts."""
    rng = np.random.default_rng(seed)
    prompts = rankings // overlap
    corpus = make_corpus(rng, corpus_mb)
    prompt_ids = np.arange(1, prompts + 1, dtype=np.int64) * 7  # ids need not be dense
    answer_ids = 1_000_000 + np.arange(prompts * ANSWERS_PER_PROMPT, dtype=np.int64)
    prompt_texts = dict(zip(prompt_ids.tolist(), make_texts(rng, corpus, prompts, 300, 100), strict=True))
    answer_texts = dict(zip(answer_ids.tolist(), make_texts(rng, corpus, len(answer_ids), 600, 200), strict=True))
    del corpus

    ranking_prompt = np.repeat(np.arange(prompts), overlap)
    ranking_ids = np.arange(1, len(ranking_prompt) + 1, dtype=np.int64)
    labelers = rng.integers(1, 41, size=len(ranking_ids))
    # One shuffled order of the prompt's answers per ranking: a full ranking, one answer per tie group.
    order = rng.permuted(np.tile(np.arange(ANSWERS_PER_PROMPT), (len(ranking_ids), 1)), axis=1)
    ranked_answers = answer_ids[ranking_prompt[:, None] * ANSWERS_PER_PROMPT + order]
    ratings = rng.integers(1, 8, size=ranked_answers.shape).astype(float)
    ratings[rng.random(ratings.shape) < 0.1] = np.nan

    labels = pd.DataFrame(
        {
            "ranking_id": np.repeat(ranking_ids, ANSWERS_PER_PROMPT),
            "labeler_id": np.repeat(labelers, ANSWERS_PER_PROMPT),
            "prompt_id": np.repeat(prompt_ids[ranking_prompt], ANSWERS_PER_PROMPT),
            "answer_id": ranked_answers.ravel(),
            "group": np.tile(np.arange(ANSWERS_PER_PROMPT), len(ranking_ids)),
            "rating": pd.array(ratings.ravel(), dtype="Float64").astype("Int64"),
        }
    )
    records = [
        (ranking_id, labeler, int(prompt_ids[p]), [[a] for a in answers], dict(zip(answers, rated, strict=True)))
        for ranking_id, labeler, p, answers, rated in zip(
            ranking_ids.tolist(),
            labelers.tolist(),
            ranking_prompt.tolist(),
            ranked_answers.tolist(),
            [[None if np.isnan(r) else int(r) for r in row] for row in ratings],
            strict=True,
        )
    ]
    return labels, records, answer_texts, prompt_texts


def vectorised(labels, answer_texts, prompt_texts, path: Path) -> tuple[DatasetFile, float]:
    start = time.perf_counter()
    frame = build_pair_frame(
        expand_rankings(labels), answer_texts, prompt_texts, validation_fraction=VALIDATION_FRACTION, seed=SEED
    )
    built = time.perf_counter() - start
    return write_pair_dataset(frame, path), built


def naive(records, answer_texts, prompt_texts, path: Path) -> tuple[DatasetFile, float]:
    start = time.perf_counter()
    prompts = sorted({record[2] for record in records})
    validation = split_by_prompt(prompts, validation_fraction=VALIDATION_FRACTION, seed=SEED)
    side = {p: "validation" if v else "train" for p, v in zip(prompts, validation.tolist(), strict=True)}
    rows = []
    for ranking_id, labeler, prompt, groups, ratings in records:
        for pair in expand_ranking(groups, ratings):
            rows.append(
                (
                    prompt, labeler, ranking_id, pair.chosen, pair.rejected, pair.margin, pair.rating_diff,
                    side[prompt], prompt_texts[prompt], answer_texts[pair.chosen], answer_texts[pair.rejected],
                )
            )
    frame = pd.DataFrame(rows, columns=PAIR_COLUMNS).astype({"margin": "int16", "rating_diff": "float64"})
    del rows
    built = time.perf_counter() - start
    return write_pair_dataset(frame, path), built


def measure(name: str, run: Callable[[Path], tuple[DatasetFile, float]], runs: int, folder: Path) -> dict:
    walls, builds = [], []
    for index in range(runs):
        gc.collect()
        start = time.perf_counter()
        written, built = run(folder / f"{name}-{index}.parquet")
        walls.append(time.perf_counter() - start)
        builds.append(built)
    # One more run under tracemalloc, untimed (tracing slows every Python allocation). tracemalloc sees
    # only allocations made through Python's allocator: numpy arrays and Python objects, but not pyarrow's
    # buffers (Arrow allocates from its own jemalloc/mimalloc pool), and pandas' str columns and the
    # Parquet writer live there. The process's max RSS below counts everything.
    gc.collect()
    tracemalloc.start()
    run(folder / f"{name}-traced.parquet")
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {
        "wall": statistics.median(walls),
        "build": statistics.median(builds),
        "walls": walls,
        "file": written,
        "traced_peak": traced_peak,
        "max_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # Linux reports KiB
        "arrow_peak": pa.default_memory_pool().max_memory(),
    }


def report(title: str, result: dict) -> None:
    file: DatasetFile = result["file"]
    print(f"{title}")
    print(
        f"  wall (build + write): median {result['wall']:.2f} s over {len(result['walls'])} runs "
        f"({', '.join(f'{w:.2f}' for w in result['walls'])}); build {result['build']:.2f} s, "
        f"write {result['wall'] - result['build']:.2f} s"
    )
    print(f"  rows {file.rows:,}  file {file.bytes / MIB:.1f} MiB  sha256 {file.sha256}")
    print(
        f"  tracemalloc peak {result['traced_peak'] / MIB:,.0f} MiB; process max RSS so far "
        f"{result['max_rss'] / MIB:,.0f} MiB; Arrow pool peak so far {result['arrow_peak'] / MIB:,.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs per path (median reported)")
    parser.add_argument("--rankings", type=int, default=33_000)
    parser.add_argument("--overlap", type=int, default=1, help="rankings per prompt (labelers per prompt)")
    parser.add_argument("--corpus-mb", type=int, default=32, help="size of the random-word text pool")
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args()

    start = time.perf_counter()
    labels, records, answer_texts, prompt_texts = make_input(args.rankings, args.overlap, args.corpus_mb)
    gc.collect()
    print(
        f"input: {args.rankings:,} rankings x {ANSWERS_PER_PROMPT} answers ({len(labels):,} label rows), "
        f"{len(prompt_texts):,} prompts, mean prompt {np.mean([len(t) for t in prompt_texts.values()]):.0f} "
        f"chars, mean answer {np.mean([len(t) for t in answer_texts.values()]):.0f} chars; "
        f"generated in {time.perf_counter() - start:.1f} s; "
        f"max RSS after generating {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB"
    )
    with tempfile.TemporaryDirectory() as folder:
        fast = measure(
            "vectorised", lambda path: vectorised(labels, answer_texts, prompt_texts, path), args.runs, Path(folder)
        )
        report("vectorised: build_pair_frame + write_pair_dataset", fast)
        if args.skip_naive:
            return
        slow = measure(
            "naive", lambda path: naive(records, answer_texts, prompt_texts, path), args.runs, Path(folder)
        )
        report("naive: expand_ranking per ranking, a tuple per pair, pd.DataFrame, same writer", slow)
    wall, build = slow["wall"] / fast["wall"], slow["build"] / fast["build"]
    same = "yes" if slow["file"] == fast["file"] else "NO"
    print(f"ratio naive / vectorised: wall {wall:.1f}x, build {build:.1f}x; same file (rows, bytes, sha256): {same}")


if __name__ == "__main__":
    main()
