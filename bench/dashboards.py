"""Benchmark: the admin dashboards of a queue of 1,000,000 prompts x 3 labelers, read from the stored figures.

Its own PostgreSQL database, `bench_dashboards` (--database), on the server of DATABASE_URL: migrated and filled
with COPY: one ranking queue of --prompts prompts (1,000,000) x 4 answers, each ranked by 3 labelers drawn from
a pool of 12 (competition ranks with ties, 70% of rankings following the prompt's own order, so that labelers
agree somewhat), finished over the last 60 days, plus a skip by a fourth labeler on 2% of the prompts. --keep
keeps the database, and the next run with the same --prompts reuses it and its stored figures (--rebuild
counts them again).

Measured, in this process on PostgreSQL:
  - the rebuild of the queue's stored figures from its labels (labeling.quality.aggregates.rebuild_queue_agreement,
    what `manage.py rebuild_agreement` runs after migration 0013), once, unless a kept database has them;
  - the four pages through Django's test Client as an admin: the queue list, the agreement page, the
    disagreement review (first page) and the labeler table (agreement.csv): median of --runs after one warm-up;
  - one incremental update (the task each ranking sends: one prompt counted again), median of 20 prompts;
  - the debounced draw of the bootstrap intervals from the stored counts (1,000 resamples), median of --runs, and
    within it the count of the queue's work from every assignment (labeling.quality.aggregates.count_work: the labeler
    table's skips and median seconds, the queue list's labels per day, median seconds and skip rate).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/annotate .venv/bin/python -m bench.dashboards [--prompts N]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import UTC, datetime, timedelta

import numpy as np
from psycopg import sql

from bench.common import bench_url, connect, copy_rows, drop, timed

ANSWERS, LABELERS_PER_PROMPT, POOL, SKIP_SHARE, FOLLOW_SHARE = 4, 3, 12, 0.02, 0.7


def fill(connection, prompts: int, seed: int = 1) -> int:
    """The queue, its prompts, answers, tasks, assignments, rankings and answer labels, by COPY; its id."""
    from django.contrib.auth.models import Group, User

    from labeling.models import Queue

    rng = np.random.default_rng(seed)
    labeler_group = Group.objects.get_or_create(name="labeler")[0]
    users = User.objects.bulk_create([User(username=f"labeler-{i:02d}", password="!") for i in range(POOL)])
    labeler_group.user_set.add(*users)
    user_ids = np.array([user.pk for user in users])
    queue = Queue.objects.create(name="dashboards", ranking_overlap=LABELERS_PER_PROMPT, is_open=False)
    now = datetime.now(UTC)
    ids = np.arange(1, prompts + 1)
    copy_rows(connection, "labeling_prompt",
          ["id", "queue_id", "external_id", "content_hash", "text", "meta", "priority", "excluded", "created_at"],
          ((int(p), queue.pk, "", f"{p:064x}", f"Prompt {p}: say something kind.", "{}", 0, False, now)
           for p in ids))  # fmt: skip
    copy_rows(connection, "labeling_answer", ["id", "prompt_id", "position", "text", "model", "meta"],
          (((int(p) - 1) * ANSWERS + j + 1, int(p), j, f"Answer {j}.", "m", "{}") for p in ids for j in range(ANSWERS)))
    copy_rows(connection, "labeling_task",
          ["id", "prompt_id", "queue_id", "kind", "overlap", "extra_overlap", "submitted_count", "gold_groups",
           "priority", "excluded"],
          ((int(p), int(p), queue.pk, "ranking", LABELERS_PER_PROMPT, 0, LABELERS_PER_PROMPT, None, 0, False)
           for p in ids))  # fmt: skip

    # Per prompt, 3 labelers (and a fourth who skips) from the pool; per ranking, values 1..3 per answer.
    chosen = np.argsort(rng.random((prompts, POOL)), axis=1)[:, :LABELERS_PER_PROMPT + 1]
    own = rng.integers(1, 4, size=(prompts, ANSWERS))
    values = rng.integers(1, 4, size=(prompts, LABELERS_PER_PROMPT, ANSWERS))
    follow = rng.random((prompts, LABELERS_PER_PROMPT)) < FOLLOW_SHARE
    values[follow] = np.repeat(own[:, None, :], LABELERS_PER_PROMPT, axis=1)[follow]
    ranks = 1 + (values[..., None, :] < values[..., :, None]).sum(axis=-1)  # competition ranks, ties shared
    finished = [now - timedelta(seconds=int(s)) for s in rng.integers(0, 60 * 86_400, size=prompts * 4)]
    spent = rng.integers(5_000, 120_000, size=prompts * 4)
    skips = np.flatnonzero(rng.random(prompts) < SKIP_SHARE)

    def assignments():
        for p in range(prompts):
            for k in range(LABELERS_PER_PROMPT):
                n = p * LABELERS_PER_PROMPT + k
                yield (n + 1, p + 1, int(user_ids[chosen[p, k]]), "submitted", "[]", finished[n], finished[n],
                       finished[n], int(spent[n]), 0, "", "")
        for i, p in enumerate(skips):
            n = prompts * LABELERS_PER_PROMPT + i
            yield (n + 1, int(p) + 1, int(user_ids[chosen[p, LABELERS_PER_PROMPT]]), "skipped", "[]", finished[n],
                   finished[n], finished[n], int(spent[n]), 0, "unclear", "")

    copy_rows(connection, "labeling_assignment",
          ["id", "task_id", "labeler_id", "status", "answer_order", "leased_at", "lease_expires_at", "finished_at",
           "time_spent_ms", "instructions_version", "skip_reason", "skip_note"], assignments())  # fmt: skip

    def groups(p: int, k: int) -> str:
        answer_ids = [p * ANSWERS + j + 1 for j in range(ANSWERS)]
        levels = sorted(set(ranks[p, k].tolist()))
        return json.dumps([[a for a, r in zip(answer_ids, ranks[p, k], strict=True) if r == level] for level in levels])

    copy_rows(connection, "labeling_ranking", ["id", "assignment_id", "groups", "created_at"],
          ((p * LABELERS_PER_PROMPT + k + 1, p * LABELERS_PER_PROMPT + k + 1, groups(p, k), now)
           for p in range(prompts) for k in range(LABELERS_PER_PROMPT)))  # fmt: skip
    copy_rows(connection, "labeling_answerlabel", ["id", "ranking_id", "answer_id", "rank", "rating", "flags"],
          (((p * LABELERS_PER_PROMPT + k) * ANSWERS + j + 1, p * LABELERS_PER_PROMPT + k + 1, p * ANSWERS + j + 1,
            int(ranks[p, k, j]), None, "[]")
           for p in range(prompts) for k in range(LABELERS_PER_PROMPT) for j in range(ANSWERS)))  # fmt: skip
    for table in ("labeling_prompt", "labeling_answer", "labeling_task", "labeling_assignment", "labeling_ranking",
                  "labeling_answerlabel"):
        connection.execute(sql.SQL("SELECT setval(pg_get_serial_sequence({}, 'id'), (SELECT max(id) FROM {}))").format(
            sql.Literal(table), sql.Identifier(table)))  # fmt: skip
    connection.execute("VACUUM ANALYZE")
    return queue.pk


def prepare(args, url: str, config: dict) -> int:
    with connect(config, "postgres") as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [args.database]).fetchone():
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(args.database)))
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotate.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from labeling.models import Prompt, Queue

    call_command("migrate", verbosity=0)
    queue = Queue.objects.filter(name="dashboards").first()
    if queue is not None:
        held = Prompt.objects.filter(queue=queue).count()
        if held != args.prompts:
            raise SystemExit(f"Database {args.database!r} holds {held:,} prompts, not {args.prompts:,}: drop it "
                             f"(dropdb {args.database}) or pass --prompts {held}.")  # fmt: skip
        print(f"reusing {args.database!r} ({held:,} prompts)")
        return queue.pk
    started = time.perf_counter()
    with connect(config, args.database) as connection:
        queue_id = fill(connection, args.prompts)
    print(f"filled {args.database!r} with {args.prompts:,} prompts x {ANSWERS} answers x {LABELERS_PER_PROMPT} "
          f"labelers in {time.perf_counter() - started:.0f} s")  # fmt: skip
    return queue_id



def show(name: str, times: list[float]) -> None:
    print(f"  {name:<36} median {statistics.median(times) * 1000:9.1f} ms   "
          f"({', '.join(f'{t * 1000:.0f}' for t in times)})")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5, help="timed runs per page and of the intervals")
    parser.add_argument("--database", default="bench_dashboards")
    parser.add_argument("--keep", action="store_true", help="keep the database (the next run reuses it)")
    parser.add_argument("--rebuild", action="store_true", help="count a kept database's stored figures again")
    args = parser.parse_args(argv)
    if args.prompts < 10 or args.runs < 1:
        parser.error("--prompts must be at least 10 and --runs at least 1.")
    url, config = bench_url(os.environ.get("DATABASE_URL", ""), args.database)
    queue_id = prepare(args, url, config)
    from django.contrib.auth.models import Group, User
    from django.test import Client
    from django.urls import reverse

    from labeling.models import Prompt, QueueAgreementTotals
    from labeling.quality import aggregates

    # The draw the update schedules would go to a broker; it is timed on its own below.
    aggregates.schedule_intervals = lambda **kwargs: None

    try:
        print(f"\n{args.prompts:,} prompts (load average {os.getloadavg()[0]:.2f}):")
        totals = QueueAgreementTotals.objects.filter(queue_id=queue_id).first()
        if totals is None or args.rebuild:
            started = time.perf_counter()
            totals = aggregates.rebuild_queue_agreement(queue_id=queue_id)
            print(f"  rebuild of the stored figures       {time.perf_counter() - started:9.1f} s")
        else:  # a kept database: its stored figures, drawn again for the labeler table's work figures
            aggregates.refresh_intervals(queue_id=queue_id)
            totals.refresh_from_db()
            print("  reusing the stored figures (--rebuild counts them again)")
        print(f"  agreement {totals.agree / totals.n:.4f} over {totals.n:,} pairs, "
              f"interval {totals.ci_low:.4f}-{totals.ci_high:.4f}")

        admin = User.objects.get_or_create(username="bench-admin")[0]
        admin.groups.add(Group.objects.get_or_create(name="admin")[0])
        client = Client(HTTP_HOST="localhost")
        client.force_login(admin)
        pages = {
            "queue list": reverse("manage-queues"),
            "agreement page": reverse("manage-queue-agreement", args=[queue_id]),
            "disagreement review (page 1)": reverse("manage-review", args=[queue_id]),
            "labeler table (agreement.csv)": reverse("manage-queue-agreement-csv", args=[queue_id]),
        }
        for name, url_path in pages.items():
            if client.get(url_path).status_code != 200:  # warm-up, and a check
                raise SystemExit(f"{name} ({url_path}) did not answer 200")
            show(name, timed(lambda path=url_path: client.get(path), args.runs))

        prompt_ids = list(Prompt.objects.filter(queue_id=queue_id).order_by("?").values_list("pk", flat=True)[:20])
        count_again = iter(prompt_ids)
        show("incremental update (one prompt)",
             timed(lambda: aggregates.refresh_prompt_agreement(prompt_id=next(count_again)), len(prompt_ids)))
        show("intervals drawn again", timed(lambda: aggregates.refresh_intervals(queue_id=queue_id), args.runs))
        show("  of which the queue's work counted", timed(lambda: aggregates.count_work(queue_id=queue_id), args.runs))
    finally:
        drop(config, args.database, keep=args.keep)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
