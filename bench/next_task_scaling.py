"""Benchmark: does the next task stay fast as a queue grows from 5,000 to 1,000,000 prompts?

Its own PostgreSQL database, `bench_next_task` (--database), on the server of DATABASE_URL: migrated and
filled with COPY, one ranking queue per size (5,000, 50,000, 500,000 and 1,000,000 prompts by default,
--sizes), 2 short answers per prompt, overlap 3. Each queue is in the state of a queue at work: the first
20% of its prompts are full (three labels each from a pool of 30 labelers), and the next 10,000 (all the
rest in a queue too small for that) carry one label of the *veteran*, a labeler who has labeled 10,000
prompts of the queue, so that the tasks the veteran may not take come first in the queue's order. The
rest is untouched. --keep keeps the database, and the next run reuses it after putting every queue back
in that state.

Per size, with only that queue open, through the services a request calls (labeling.assignment.services, in this
process, on PostgreSQL):
  - alone: --cycles times a fresh labeler leases a new task (timed: next task) and submits a ranking
    (timed: submit), then the same for the veteran; medians and p95;
  - under load: --labelers threads (25), each its own labeler and connection, lease and submit in a closed
    loop for --seconds; median and p95 of each, cycles/s;
  - `EXPLAIN (ANALYZE, BUFFERS)` of the candidate query the lease runs, for the veteran, at the largest size.
Last, for the fresh labeler and the veteran, the ratio of the median next task at the largest size to the
smallest (goal: within 1.5x, and under 20 ms alone).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/annotate .venv/bin/python -m bench.next_task_scaling [--keep]
"""
from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from datetime import UTC, datetime, timedelta

from psycopg import sql

from bench.common import bench_url, connect, copy_rows, drop

OVERLAP, ANSWERS, POOL, LOAD_LABELERS = 3, 2, 30, 25
FULL_SHARE, VETERAN_LABELS = 0.2, 10_000
SIZES = (5_000, 50_000, 500_000, 1_000_000)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def fill(connection, sizes: list[int]) -> None:
    """Queues, prompts, answers, tasks and the labels of the starting state, by COPY."""
    from django.contrib.auth.models import Group, User

    from labeling.models import Queue

    labeler_group = Group.objects.get_or_create(name="labeler")[0]
    users = User.objects.bulk_create(
        [User(username=f"pool-{i:02d}", password="!") for i in range(POOL)]
        + [User(username=f"load-{i:02d}", password="!") for i in range(LOAD_LABELERS)]
        + [User(username="veteran", password="!"), User(username="fresh", password="!")]
    )
    labeler_group.user_set.add(*users)
    now = datetime.now(UTC)
    prompt_id = answer_id = assignment_id = 0
    for size in sizes:
        queue = Queue.objects.create(name=f"scale {size}", ranking_overlap=OVERLAP, lease_seconds=600, is_open=False)
        first = prompt_id + 1
        copy_rows(connection, "labeling_prompt",
              ["id", "queue_id", "external_id", "content_hash", "text", "meta", "priority", "excluded", "created_at"],
              ((first + i, queue.pk, "", f"{first + i:064x}", f"Prompt {first + i}: say something kind.", "{}", 0,
                False, now + timedelta(microseconds=i)) for i in range(size)))  # fmt: skip
        copy_rows(connection, "labeling_answer", ["id", "prompt_id", "position", "text", "model", "meta"],
              ((answer_id + i * ANSWERS + j + 1, first + i, j, f"Answer {j}.", "m", "{}")
               for i in range(size) for j in range(ANSWERS)))  # fmt: skip
        answer_id += size * ANSWERS
        full = int(size * FULL_SHARE)
        veteran = range(full, full + min(VETERAN_LABELS, (size - full) // 2))  # and work left for the veteran
        counts = [OVERLAP] * full + [1] * len(veteran) + [0] * (size - full - len(veteran))
        task_columns = ["id", "prompt_id", "queue_id", "kind", "overlap", "extra_overlap", "submitted_count",
                        "gold_groups", "priority", "excluded"]  # fmt: skip
        copy_rows(connection, "labeling_task", task_columns,
              ((first + i, first + i, queue.pk, "ranking", OVERLAP, 0, counts[i], None, 0, False) for i in range(size)))
        labels = [(first + i, users[(i + k) % POOL].pk) for i in range(full) for k in range(OVERLAP)]
        labels += [(first + i, users[-2].pk) for i in veteran]
        copy_rows(connection, "labeling_assignment",
              ["id", "task_id", "labeler_id", "status", "answer_order", "leased_at", "lease_expires_at", "finished_at",
               "time_spent_ms", "instructions_version", "skip_reason", "skip_note"],
              ((assignment_id + n + 1, task, labeler, "submitted", "[]", now, now, now, 1000, 0, "", "")
               for n, (task, labeler) in enumerate(labels)))  # fmt: skip
        assignment_id += len(labels)
        prompt_id += size
        print(f"  queue {queue.name!r}: {size:,} prompts, {full:,} full, {len(veteran):,} with the veteran's label")
    for table in ("labeling_prompt", "labeling_answer", "labeling_task", "labeling_assignment"):
        connection.execute(sql.SQL("SELECT setval(pg_get_serial_sequence({}, 'id'), (SELECT max(id) FROM {}))").format(
            sql.Literal(table), sql.Identifier(table)))  # fmt: skip
    connection.execute("ANALYZE")


def reset(connection) -> None:
    """Back to the state `fill` made: drop what earlier measurements added (the ids after the filled ones)."""
    last = connection.execute("SELECT value FROM bench_state WHERE name = 'assignments'").fetchone()[0]
    connection.execute("DELETE FROM labeling_answerlabel WHERE ranking_id IN "
                       "(SELECT id FROM labeling_ranking WHERE assignment_id > %s)", [last])  # fmt: skip
    connection.execute("DELETE FROM labeling_ranking WHERE assignment_id > %s", [last])
    touched = "SELECT DISTINCT task_id FROM labeling_assignment WHERE id > %s"
    connection.execute(f"CREATE TEMP TABLE touched AS {touched}", [last])
    connection.execute("DELETE FROM labeling_assignment WHERE id > %s", [last])
    connection.execute(
        "UPDATE labeling_task t SET submitted_count = (SELECT count(*) FROM labeling_assignment a "
        "WHERE a.task_id = t.id AND a.status = 'submitted') WHERE t.id IN (SELECT task_id FROM touched)"
    )
    connection.execute("DROP TABLE touched")
    connection.execute("VACUUM ANALYZE labeling_task")
    connection.execute("VACUUM ANALYZE labeling_assignment")


def prepare(args, url: str, config: dict) -> None:
    with connect(config, "postgres") as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [args.database]).fetchone()
        if not exists:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(args.database)))
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotate.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from labeling.models import Queue

    call_command("migrate", verbosity=0)
    with connect(config, args.database) as connection:
        names = set(Queue.objects.values_list("name", flat=True))
        if names:  # a kept database (one that a failed run left empty is filled)
            if names != {f"scale {size}" for size in args.sizes}:
                raise SystemExit(f"Database {args.database!r} holds other queues ({sorted(names)}): drop it "
                                 f"(dropdb {args.database}) or pass the same --sizes.")  # fmt: skip
            started = time.perf_counter()
            reset(connection)
            print(f"reusing {args.database!r}, put back in its starting state in {time.perf_counter() - started:.1f} s")
            return
        started = time.perf_counter()
        print(f"filling {args.database!r} (sizes {', '.join(f'{s:,}' for s in args.sizes)}):")
        fill(connection, args.sizes)
        connection.execute("CREATE TABLE bench_state (name text PRIMARY KEY, value bigint)")
        connection.execute("INSERT INTO bench_state SELECT 'assignments', max(id) FROM labeling_assignment")
        print(f"filled in {time.perf_counter() - started:.1f} s")


def cycle(labeler, queue, timings: dict[str, list[float]], key: str) -> bool:
    """Lease the next task and submit a ranking of it; False when the queue has nothing left for `labeler`."""
    from labeling.assignment.services import lease_next_task, submit_ranking

    started = time.perf_counter()
    assignment = lease_next_task(labeler=labeler, queue=queue)
    leased = time.perf_counter()
    if assignment is None:
        return False
    order = list(assignment.answer_order)
    submit_ranking(assignment_id=assignment.pk, labeler=labeler, groups=[order[:1], order[1:]], ratings={}, flags={})
    done = time.perf_counter()
    timings[f"{key} next task"].append(leased - started)
    timings[f"{key} submit"].append(done - leased)
    return True


def measure(queue, cycles: int, labelers: int, seconds: float) -> dict[str, list[float]]:
    from django.contrib.auth.models import User
    from django.db import connection

    timings: dict[str, list[float]] = {key: [] for key in
                                       ("fresh next task", "fresh submit", "veteran next task", "veteran submit",
                                        "25 labelers next task", "25 labelers submit")}  # fmt: skip
    fresh, veteran = User.objects.get(username="fresh"), User.objects.get(username="veteran")
    for user, key in ((fresh, "fresh"), (veteran, "veteran")):
        cycle(user, queue, {"x next task": [], "x submit": []}, "x")  # warm-up
        for _ in range(cycles):
            cycle(user, queue, timings, key)
    load = list(User.objects.filter(username__startswith="load-").order_by("username")[:labelers])
    deadline = time.monotonic() + seconds
    counts = [0] * len(load)

    def work(index: int) -> None:
        try:
            mine: dict[str, list[float]] = {"x next task": [], "x submit": []}
            while time.monotonic() < deadline and cycle(load[index], queue, mine, "x"):
                counts[index] += 1
            timings["25 labelers next task"].extend(mine["x next task"])
            timings["25 labelers submit"].extend(mine["x submit"])
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(load))]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    timings["cycles/s"] = [sum(counts) / (time.monotonic() - started)]
    return timings


def explain(queue) -> str:
    from django.contrib.auth.models import User
    from django.db import connection, transaction
    from django.utils import timezone

    from labeling.assignment.services import candidate_query

    veteran = User.objects.get(username="veteran")
    sql, params = candidate_query(labeler=veteran, queue_id=queue.pk, kind="ranking", now=timezone.now(),
                                  lock="FOR UPDATE OF t SKIP LOCKED")  # fmt: skip
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=lambda text: [int(s) for s in text.split(",")], default=list(SIZES))
    parser.add_argument("--cycles", type=int, default=30, help="lease + submit cycles alone, per labeler")
    parser.add_argument("--labelers", type=int, default=LOAD_LABELERS)
    parser.add_argument("--seconds", type=float, default=20, help="seconds of the concurrent step per size")
    parser.add_argument("--database", default="bench_next_task")
    parser.add_argument("--keep", action="store_true", help="keep the database (the next run reuses it)")
    args = parser.parse_args(argv)
    url, config = bench_url(os.environ.get("DATABASE_URL", ""), args.database)
    prepare(args, url, config)

    from labeling.models import Queue

    medians: dict[tuple[str, int], float] = {}
    try:
        for size in args.sizes:
            Queue.objects.update(is_open=False)
            queue = Queue.objects.get(name=f"scale {size}")
            Queue.objects.filter(pk=queue.pk).update(is_open=True)
            print(f"\n{size:,} prompts (load average {os.getloadavg()[0]:.2f}):")
            timings = measure(queue, args.cycles, args.labelers, args.seconds)
            for key, values in timings.items():
                if key == "cycles/s":
                    print(f"  {args.labelers} labelers: {values[0]:.1f} cycles/s")
                elif values:
                    print(f"  {key:<24} median {statistics.median(values) * 1000:8.1f} ms   p95 "
                          f"{percentile(values, 0.95) * 1000:8.1f} ms   ({len(values)})")  # fmt: skip
            for who in ("fresh", "veteran"):
                medians[who, size] = statistics.median(timings[f"{who} next task"])
        largest, smallest = max(args.sizes), min(args.sizes)
        print(f"\nEXPLAIN of the candidate query, veteran, {largest:,} prompts:")
        print(explain(Queue.objects.get(name=f"scale {largest}")))
        print("\nmedian next task alone (goal: within 1.5x of the smallest queue's, and under 20 ms):")
        for who in ("fresh", "veteran"):
            small, large = medians[who, smallest], medians[who, largest]
            print(f"  {who:<8} {smallest:,} prompts {small * 1000:.1f} ms, {largest:,} prompts {large * 1000:.1f} ms: "
                  f"{large / small:.2f}x")  # fmt: skip
    finally:
        drop(config, args.database, keep=args.keep)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
