"""Benchmark: every agreement figure of the admin pages (labeling.quality.report) on a dashboard-sized queue.

10,000 prompts x 9 answers x 3 labelers per prompt = 270,000 label rows. Each prompt's 3 labelers are
drawn from a pool (40 by default; --pool 3 gives every labeler every prompt). Ranks are competition ranks
of random integers 1-60, so about half the rankings hold a tie. Reports the median wall time of --runs
runs of: queue_agreement(resamples=1000) (queue, labeler pair, labeler, leave-one-out and per-prompt
figures), the disagreement review's order (prompts by lowest agreement) and gold_agreement on the 2% of
prompts taken as gold items (a random reference ranking each); then one untimed run under tracemalloc
(Python-side peak, numpy buffers included) and the process max RSS.

Run from the project root:  .venv/bin/python -m bench.agreement [--runs 3] [--prompts 10000] [--pool 40]
"""
from __future__ import annotations

import argparse
import gc
import resource
import statistics
import time
import tracemalloc

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from labeling.quality.report import gold_agreement, queue_agreement

ANSWERS, LABELERS_PER_PROMPT = 9, 3
MIB = 1 << 20


def make_labels(prompts: int, pool: int, seed: int = 1) -> pd.DataFrame:
    """One row per (prompt, labeler, answer) with a competition rank; ties from random values 1-60."""
    rng = np.random.default_rng(seed)
    # 3 distinct labelers per prompt: the first 3 of a random permutation of the pool.
    labelers = np.argsort(rng.random((prompts, pool)), axis=1)[:, :LABELERS_PER_PROMPT]
    ranks = rankdata(rng.integers(1, 61, size=(prompts * LABELERS_PER_PROMPT, ANSWERS)), method="min", axis=1)
    return pd.DataFrame({
        "prompt_id": np.repeat(np.arange(prompts), LABELERS_PER_PROMPT * ANSWERS),
        "labeler_id": np.repeat(labelers.ravel(), ANSWERS),
        "answer_id": np.tile(np.arange(ANSWERS), prompts * LABELERS_PER_PROMPT),
        "rank": ranks.ravel().astype(np.int64),
    })


def make_reference(labels: pd.DataFrame, share: float = 0.02, seed: int = 2) -> pd.DataFrame:
    """A reference ranking (a random permutation of the answers) for every 1/share-th prompt."""
    rng = np.random.default_rng(seed)
    gold = np.arange(0, labels["prompt_id"].max() + 1, round(1 / share))
    return pd.DataFrame({
        "prompt_id": np.repeat(gold, ANSWERS),
        "answer_id": np.tile(np.arange(ANSWERS), len(gold)),
        "rank": np.argsort(rng.random((len(gold), ANSWERS)), axis=1).ravel() + 1,
    })


def dashboard_figures(labels: pd.DataFrame, reference: pd.DataFrame, resamples: int):
    report = queue_agreement(labels, resamples=resamples)
    review_order = report.prompts.assign(undefined=report.prompts["rate"].isna()).sort_values(
        ["undefined", "rate", "prompt_id"])
    gold = gold_agreement(labels[labels["prompt_id"].isin(reference["prompt_id"])], reference)
    return report, review_order, gold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs (median reported)")
    parser.add_argument("--prompts", type=int, default=10_000)
    parser.add_argument("--pool", type=int, default=40, help="labelers the 3 per prompt are drawn from")
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    if args.pool < LABELERS_PER_PROMPT:
        parser.error(f"--pool must be at least {LABELERS_PER_PROMPT}")

    labels = make_labels(args.prompts, args.pool)
    reference = make_reference(labels)
    tied = labels.groupby(["prompt_id", "labeler_id"])["rank"].nunique().lt(ANSWERS).mean()
    print(f"{args.prompts:,} prompts x {ANSWERS} answers x {LABELERS_PER_PROMPT} labelers (pool {args.pool}): "
          f"{len(labels):,} rows, {tied:.0%} of rankings hold a tie; resamples {args.resamples}")
    print(f"max RSS after generating {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")

    times = []
    for _ in range(args.runs):
        gc.collect()
        start = time.perf_counter()
        report, review_order, gold = dashboard_figures(labels, reference, args.resamples)
        times.append(time.perf_counter() - start)
    gc.collect()
    tracemalloc.start()
    dashboard_figures(labels, reference, args.resamples)
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    q = report.queue
    print(f"queue: rate {q.rate:.4f} [{q.ci_low:.4f}, {q.ci_high:.4f}] over {q.n:,} pairs, {q.prompts:,} prompts; "
          f"{len(report.pairs):,} labeler pairs, {len(report.labelers):,} labelers")
    print(f"review: lowest prompt agreement {review_order['rate'].iloc[0]:.3f}; gold: "
          f"{reference['prompt_id'].nunique():,} gold prompts, {len(gold):,} labelers, "
          f"median gold accuracy {gold['rate'].median():.3f}")
    print(f"wall: median {statistics.median(times):.3f} s of {args.runs} ({', '.join(f'{t:.3f}' for t in times)})")
    print(f"tracemalloc peak {traced_peak / MIB:,.0f} MiB; process max RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")


if __name__ == "__main__":
    main()
