"""Benchmark: the `pairs` export (labeling.datasets.exports.export_dataset) at InstructGPT's reward-model scale.

33,000 prompts x 9 answers, each prompt ranked by 3 of 40 labelers: 99,000 rankings, 891,000 answer
labels, about 3.5 million pairs (99,000 x C(9, 2) = 3,564,000 less the tied pairs). Ranks are
competition ranks of random integers 1-60, so about 45% of rankings hold a tie; ratings 1-7 with 10%
null; 1% of answer labels flagged. Texts as in bench/pairs.py (prompts ~300 chars, answers ~600, windows
of one random-word corpus). The prompts sit in two queues, one with the first 10% of them, so that
exporting that queue is the 10% run and exporting both the 100% run. `--prompts 330000` is ten times
that (~35 million pairs) in one invocation: its 10% run is the default size's export (33,000 prompts,
~3.5 million pairs), and the ratio printed is that of the 10x larger export's memory over it.
Before anything is written the bench checks that the database and the largest file fit on their disks
(the JSONL of 330,000 prompts would be ~60 GB: use --formats parquet there).

The data goes into its own PostgreSQL database, `bench_export` (--database), on the server of
DATABASE_URL: created and migrated, filled with COPY, and dropped at the end unless --keep; a kept
database of the same size is reused. SQLite is refused: the export's figures are PostgreSQL's.

Each export runs in a fresh process, whose peak RSS is reset (Linux clear_refs) just before it begins:
the figures are the export's own, not those of importing Django, pandas and pyarrow. Per size and
format: --runs timed runs (median wall time, rows/s, peak RSS and its growth over the RSS the process
had when the export began, Arrow pool peak), then one untimed run under tracemalloc (the Python-side
peak; Arrow's buffers are outside it; --skip-trace leaves it out). The bounded-memory check: the RSS
growth at 100% over that at 10% must stay at or under 1.5x. For comparison, the same export as a single
chunk (every prompt at once, as a load-everything export would) at 10%, which must write the same file.
Each run is the whole export: the data file, then the card with each queue's agreement figures.

Run from the project root:
  DATABASE_URL=postgres://postgres@127.0.0.1:5432/annotate .venv/bin/python -m bench.export [--runs 3] [--keep]
  DATABASE_URL=… .venv/bin/python -m bench.export --prompts 330000 --formats parquet --skip-single-chunk
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql
from scipy.stats import rankdata

from bench.common import bench_url, connect, copy_rows, drop
from bench.pairs import make_corpus, make_texts

ANSWERS, LABELERS_PER_PROMPT, POOL = 9, 3, 40
SHARE = 0.1  # the small run's share of the prompts
MAX_GROWTH = 1.5
MIB = 1 << 20
FLAGS = ["hallucination", "fails_instruction", "harmful"]
# Disk space per prompt (measured at 330,000 prompts; docs/exports.md), checked before anything is written:
# the filled database, and the largest file each format writes (the 100% run's).
DATABASE_BYTES_PER_PROMPT = 15_000
FILE_BYTES_PER_PROMPT = {"parquet": 5_000, "jsonl": 190_000, "csv": 170_000}


# --- the database ----------------------------------------------------------------------------------





def generate(connection: psycopg.Connection, prompts: int, corpus_mb: int, seed: int = 1) -> tuple[int, int]:
    """Fill the migrated database; returns the ids of the 10% queue and of the other one."""
    from django.contrib.auth.models import User

    from labeling.models import Queue

    rng = np.random.default_rng(seed)
    labelers = User.objects.bulk_create(User(username=f"labeler-{i:02d}", password="!") for i in range(POOL))
    small = Queue.objects.create(name="bench 10%", ranking_overlap=LABELERS_PER_PROMPT)
    rest = Queue.objects.create(name="bench 90%", ranking_overlap=LABELERS_PER_PROMPT)
    in_small = round(prompts * SHARE)
    now = datetime.now(UTC)

    corpus = make_corpus(rng, corpus_mb)
    prompt_texts = make_texts(rng, corpus, prompts, 300, 100)
    answer_texts = make_texts(rng, corpus, prompts * ANSWERS, 600, 200)
    del corpus
    prompt_ids = np.arange(1, prompts + 1)
    copy_rows(connection, "labeling_prompt",
          ["id", "queue_id", "external_id", "content_hash", "text", "meta", "priority", "excluded", "created_at"],
          ((p, small.pk if p <= in_small else rest.pk, f"p{p}", f"{p:064x}", text, "{}", 0, False, now)
           for p, text in zip(prompt_ids.tolist(), prompt_texts, strict=True)))  # fmt: skip
    del prompt_texts
    copy_rows(connection, "labeling_answer", ["id", "prompt_id", "position", "text", "model", "meta"],
          ((a, (a - 1) // ANSWERS + 1, (a - 1) % ANSWERS, text, f"model-{(a - 1) % 3}", "{}")
           for a, text in enumerate(answer_texts, start=1)))  # fmt: skip
    del answer_texts
    copy_rows(connection, "labeling_task",
          ["id", "prompt_id", "queue_id", "kind", "overlap", "extra_overlap", "submitted_count", "gold_groups"],
          ((p, p, small.pk if p <= in_small else rest.pk, "ranking", LABELERS_PER_PROMPT, 0, LABELERS_PER_PROMPT, None)
           for p in prompt_ids.tolist()))  # fmt: skip

    rankings = prompts * LABELERS_PER_PROMPT
    ranking_prompt = np.repeat(prompt_ids, LABELERS_PER_PROMPT)
    # 3 distinct labelers per prompt: the first 3 of a random permutation of the pool.
    chosen = np.argsort(rng.random((prompts, POOL)), axis=1)[:, :LABELERS_PER_PROMPT].ravel()
    labeler_ids = np.array([user.pk for user in labelers])[chosen]
    answer_ids = (ranking_prompt[:, None] - 1) * ANSWERS + 1 + np.arange(ANSWERS)
    values = rng.integers(1, 61, size=(rankings, ANSWERS))
    ranks = rankdata(values, method="min", axis=1).astype(int)
    ratings = rng.integers(1, 8, size=(rankings, ANSWERS))
    no_rating = rng.random((rankings, ANSWERS)) < 0.1
    flagged = rng.random((rankings, ANSWERS)) < 0.01
    spent = rng.integers(5_000, 300_000, size=rankings)
    groups = []
    for answers, ranked in zip(answer_ids.tolist(), ranks.tolist(), strict=True):
        by_rank: dict[int, list[int]] = {}
        for answer, rank in sorted(zip(answers, ranked, strict=True), key=lambda pair: pair[1]):
            by_rank.setdefault(rank, []).append(answer)
        groups.append(json.dumps(list(by_rank.values())))
    copy_rows(connection, "labeling_assignment",
          ["id", "task_id", "labeler_id", "status", "answer_order", "leased_at", "lease_expires_at", "finished_at",
           "time_spent_ms", "instructions_version", "skip_reason", "skip_note"],
          ((r, p, labeler, "submitted", json.dumps(answers), now - timedelta(minutes=10), now + timedelta(minutes=20),
            now, ms, 0, "", "")
           for r, p, labeler, answers, ms in zip(range(1, rankings + 1), ranking_prompt.tolist(), labeler_ids.tolist(),
                                                 answer_ids.tolist(), spent.tolist(), strict=True)))  # fmt: skip
    copy_rows(connection, "labeling_ranking", ["id", "assignment_id", "groups", "created_at"],
          ((r, r, text, now) for r, text in enumerate(groups, start=1)))
    del groups
    flag_names = rng.choice(FLAGS, size=(rankings, ANSWERS))
    copy_rows(connection, "labeling_answerlabel", ["ranking_id", "answer_id", "rank", "rating", "flags"],
          ((r, a, rank, None if missing else rating, json.dumps([flag]) if is_flagged else "[]")
           for r, row in enumerate(zip(answer_ids.tolist(), ranks.tolist(), ratings.tolist(), no_rating.tolist(),
                                       flagged.tolist(), flag_names.tolist(), strict=True), start=1)
           for a, rank, rating, missing, is_flagged, flag in zip(*row, strict=True)))  # fmt: skip
    # Explicit ids went in: move each sequence past them, so that rows added later get new ones.
    for table in ("labeling_prompt", "labeling_answer", "labeling_task", "labeling_assignment", "labeling_ranking"):
        connection.execute(
            sql.SQL("SELECT setval(pg_get_serial_sequence({}, 'id'), (SELECT max(id) FROM {}))").format(
                sql.Literal(table), sql.Identifier(table)
            )
        )
    connection.execute("ANALYZE")
    return small.pk, rest.pk


def _need_space(folder: str | Path, needed: int, what: str, remedy: str) -> None:
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise SystemExit(f"{what} needs about {needed / 2**30:,.1f} GiB but {folder} has {free / 2**30:,.1f} GiB free:"
                         f" {remedy}, or free some space.")  # fmt: skip


def prepare(args, url: str, config: dict) -> tuple[int, int, bool]:
    """Create, migrate and fill the bench database, or reuse a kept one of the same size; returns the queue ids."""
    with connect(config, "postgres") as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [args.database]).fetchone()
        if not exists:
            data = admin.execute("SHOW data_directory").fetchone()[0]
            if Path(data).is_dir():  # the server is on this machine
                _need_space(data, args.prompts * DATABASE_BYTES_PER_PROMPT, f"A database of {args.prompts:,} prompts",
                            "choose fewer --prompts")
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(args.database)))
    os.environ["DATABASE_URL"] = url
    import django

    django.setup()
    from django.core.management import call_command

    from labeling.models import AnswerLabel, Queue

    if exists:
        call_command("migrate", verbosity=0)
        queues = list(Queue.objects.filter(name__in=["bench 10%", "bench 90%"]).order_by("name"))
        if len(queues) == 2 and AnswerLabel.objects.count() == args.prompts * LABELERS_PER_PROMPT * ANSWERS:
            print(f"reusing the kept database {args.database!r} ({args.prompts:,} prompts)")
            return queues[0].pk, queues[1].pk, True
        raise SystemExit(
            f"Database {args.database!r} exists but does not hold this bench's {args.prompts:,} prompts: drop it"
            f" (dropdb {args.database}) or choose another --database."
        )
    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    migrated = time.perf_counter()
    with connect(config, args.database) as connection:
        small, rest = generate(connection, args.prompts, args.corpus_mb)
    print(f"created {args.database!r}: migrated in {migrated - started:.1f} s, filled in "
          f"{time.perf_counter() - migrated:.1f} s ({args.prompts:,} prompts, {args.prompts * ANSWERS:,} answers, "
          f"{args.prompts * LABELERS_PER_PROMPT:,} rankings, {args.prompts * LABELERS_PER_PROMPT * ANSWERS:,} "
          "answer labels)")  # fmt: skip
    return small, rest, False




# --- one export, in its own process ----------------------------------------------------------------


def _status_kib(field: str) -> int:
    """A memory figure of this process from /proc/self/status, in bytes."""
    status = Path("/proc/self/status").read_text()
    return int(status.split(f"{field}:", 1)[1].split()[0]) * 1024


def child(args) -> None:
    """Run one export and print its figures as JSON (DATABASE_URL is the bench database)."""
    import tracemalloc

    import django

    django.setup()
    import pyarrow as pa

    from labeling.datasets import exports
    from labeling.models import Queue

    queues = list(Queue.objects.filter(pk__in=args.queue).order_by("pk"))
    # The process's peak RSS is reset to its current RSS (Linux: clear_refs 5), so that the peak read
    # afterwards is the export's, not that of importing Django, pandas and pyarrow.
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    if args.trace:
        tracemalloc.start()
    started = time.perf_counter()
    result = exports.export_dataset(dataset="pairs", queues=queues, fmt=args.child, path=Path(args.out),
                            chunk_size=args.chunk_size)  # fmt: skip
    wall = time.perf_counter() - started
    traced = tracemalloc.get_traced_memory()[1] if args.trace else None
    print(json.dumps({
        "wall": wall, "rows": result.rows, "bytes": result.path.stat().st_size, "sha256": result.sha256,
        "rss_before": before, "max_rss": _status_kib("VmHWM"),
        "traced_peak": traced, "arrow_peak": pa.default_memory_pool().max_memory(),
    }))  # fmt: skip


def run_child(url: str, fmt: str, queues: list[int], out: Path, *, chunk_size: int, trace: bool = False) -> dict:
    command = [sys.executable, "-m", "bench.export", "--child", fmt, "--out", str(out), "--chunk-size", str(chunk_size)]
    command += [argument for queue in queues for argument in ("--queue", str(queue))]
    command += ["--trace"] if trace else []
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "annotate.settings"}
    finished = subprocess.run(command, env=env, capture_output=True, text=True)
    if finished.returncode:
        raise ChildFailed(finished.stderr.strip().splitlines()[-1])
    return json.loads(finished.stdout.strip().splitlines()[-1])


class ChildFailed(Exception):
    """An export process failed; the message is the last line of its error output."""


def measure(url: str, fmt: str, queues: list[int], runs: int, folder: Path, chunk_size: int, trace: bool) -> dict:
    out = folder / f"pairs.{fmt}"
    timed = [run_child(url, fmt, queues, out, chunk_size=chunk_size) for _ in range(runs)]
    traced = run_child(url, fmt, queues, out, trace=True, chunk_size=chunk_size) if trace else {"traced_peak": None}
    out.unlink()
    assert len({run["sha256"] for run in timed + [traced] if "sha256" in run}) == 1, "the runs wrote different files"
    median = {key: statistics.median(run[key] for run in timed) for key in ("wall", "max_rss", "arrow_peak")}
    growth = statistics.median(run["max_rss"] - run["rss_before"] for run in timed)
    return {**timed[0], **median, "walls": [run["wall"] for run in timed], "growth": growth,
            "traced_peak": traced["traced_peak"]}  # fmt: skip


def _mib(size: int | None) -> str:
    return "not measured" if size is None else f"{size / MIB:,.0f} MiB"


def report(title: str, result: dict) -> None:
    print(
        f"{title}: {result['rows']:,} rows, {result['bytes'] / MIB:,.0f} MiB; wall median {result['wall']:.1f} s "
        f"({', '.join(f'{wall:.1f}' for wall in result['walls'])}), {result['rows'] / result['wall']:,.0f} rows/s; "
        f"max RSS {result['max_rss'] / MIB:,.0f} MiB (+{result['growth'] / MIB:,.0f} MiB over the process before "
        f"the export), tracemalloc peak {_mib(result['traced_peak'])}, Arrow pool peak "
        f"{result['arrow_peak'] / MIB:,.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs per size and format (median reported)")
    parser.add_argument("--prompts", type=int, default=33_000)
    parser.add_argument("--corpus-mb", type=int, default=32, help="size of the random-word text pool")
    parser.add_argument("--database", default="bench_export", help="the bench's own database (created, dropped)")
    parser.add_argument("--keep", action="store_true", help="keep the database for the next run to reuse")
    parser.add_argument("--formats", nargs="+", default=["parquet", "jsonl"], choices=["parquet", "jsonl", "csv"])
    parser.add_argument("--skip-single-chunk", action="store_true", help="skip the one-chunk comparison at 10%%")
    parser.add_argument("--skip-trace", action="store_true", help="skip the run under tracemalloc (Python's peak)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # the format, in an export's own process
    parser.add_argument("--queue", type=int, action="append", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--chunk-size", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotate.settings")
    url, config = bench_url(os.environ.get("DATABASE_URL", ""), args.database)
    largest = max(FILE_BYTES_PER_PROMPT[fmt] for fmt in args.formats)
    _need_space(tempfile.gettempdir(), args.prompts * largest, f"The largest file of {args.prompts:,} prompts",
                "choose fewer --prompts or --formats parquet")
    small, rest, _ = prepare(args, url, config)  # sets Django up on the bench database
    from labeling.datasets.exports import CHUNK_PROMPTS

    try:
        with tempfile.TemporaryDirectory() as folder:
            for fmt in args.formats:
                trace = not args.skip_trace
                tenth = measure(url, fmt, [small], args.runs, Path(folder), CHUNK_PROMPTS, trace)
                report(f"{fmt} 10% (queue of {round(args.prompts * SHARE):,} prompts)", tenth)
                whole = measure(url, fmt, [small, rest], args.runs, Path(folder), CHUNK_PROMPTS, trace)
                report(f"{fmt} 100% ({args.prompts:,} prompts)", whole)
                ratios = {key: whole[key] / tenth[key] for key in ("max_rss", "growth")}
                verdict = "bounded" if ratios["growth"] <= MAX_GROWTH else f"NOT bounded (over {MAX_GROWTH}x)"
                traced = f", tracemalloc peak {whole['traced_peak'] / tenth['traced_peak']:.2f}x" if trace else ""
                print(f"{fmt} memory 100% / 10%: max RSS {ratios['max_rss']:.2f}x, RSS growth {ratios['growth']:.2f}x"
                      f"{traced}: {verdict}; time"
                      f" {whole['wall'] / tenth['wall']:.1f}x for {whole['rows'] / tenth['rows']:.1f}x the rows")
                if not args.skip_single_chunk:
                    single = measure(url, fmt, [small], 1, Path(folder), args.prompts, trace)
                    report(f"{fmt} 10% as one chunk (every prompt at once)", single)
                    print(f"  same file as in chunks: {'yes' if single['sha256'] == tenth['sha256'] else 'NO'}")
    finally:
        drop(config, args.database, keep=args.keep)


if __name__ == "__main__":
    main()
