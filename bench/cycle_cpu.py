"""CPU per labeler cycle, in one process: the web's Python and the one PostgreSQL backend serving it.

bench.load measures a whole machine under load, where gunicorn, the Celery worker, the clients and every
PostgreSQL process share two cores and the figures move by several per cent from run to run. This bench
takes one cycle apart instead: a labeler's task page and their submit (which leases the next task), made
with Django's test client in this process over one database connection, so the figures are this
process's own CPU time and its backend's (both from /proc), free of the other processes' noise.
It compares the database settings in the same run, alternating them round by round: prepared statements
(server-side binding, psycopg's prepare_threshold: what a direct connection uses) and client-side
binding (what DATABASE_POOLER=transaction uses).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/annotate .venv/bin/python -m bench.cycle_cpu
    # options: --labelers 20 --prompts 5000 --answers 9 --cycles 200 --rounds 3 --database bench_cycle --keep

The web figure includes the test client's own work (building requests, reading responses), which a real
server does not do, and leaves out gunicorn's (parsing HTTP, the socket); bench.load has the real server.
PostgreSQL must run on this machine (its backend's CPU is read from /proc). Queries per cycle are the
statements Django sends (BEGIN and COMMIT are not among them: psycopg sends those itself).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import bench_url, drop, recreate
from bench.load import ANSWER_ID, create_data, platform_env, tree_cpu

WARM_CYCLES = 10  # before each measurement: statements prepared, caches filled
SETTINGS = {
    "prepared statements": {"server_side_binding": True, "prepare_threshold": 5},
    "client-side binding": {},
}


class Crowd:
    """Signed-in test clients, each on their current task; `cycle()` makes the next labeler in turn open their
    task page and submit a ranking (the submit leases their next task)."""

    def __init__(self, labelers: int, queue_id: int):
        from django.contrib.auth.models import User
        from django.test import Client

        users = User.objects.in_bulk([f"labeler-{n:02d}" for n in range(labelers)], field_name="username")
        self.clients, self.urls, self.turn = [], [], 0
        for n in range(labelers):
            client = Client()
            client.force_login(users[f"labeler-{n:02d}"])
            leased = client.get(f"/queues/{queue_id}/next/")
            if leased.status_code != 302:
                raise SystemExit(f"labeler-{n:02d} got no task: HTTP {leased.status_code}")
            self.clients.append(client)
            self.urls.append(leased["Location"])

    def cycle(self) -> None:
        n = self.turn % len(self.clients)
        self.turn += 1
        client, url = self.clients[n], self.urls[n]
        page = client.get(url)
        if page.status_code != 200:
            raise SystemExit(f"task page {url}: HTTP {page.status_code}")
        answer_ids = list(dict.fromkeys(ANSWER_ID.findall(page.content.decode())))
        groups = [[int(pk)] for pk in reversed(answer_ids)]
        done = client.post(f"{url}submit/", {"groups": json.dumps(groups), "time_spent_ms": "5000"})
        if done.status_code != 302 or "/tasks/" not in done["Location"]:
            raise SystemExit(f"submit {url}: HTTP {done.status_code} to {done.get('Location')}")
        self.urls[n] = done["Location"]


def use_settings(options: dict) -> int:
    """Reconnect with these OPTIONS; returns the new backend's pid."""
    from django.db import connection

    connection.close()
    base = {k: v for k, v in connection.settings_dict["OPTIONS"].items() if k not in SETTINGS["prepared statements"]}
    connection.settings_dict["OPTIONS"] = {**base, **options}
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def measure(crowd: Crowd, backend: int, cycles: int) -> tuple[float, float, int]:
    """(web ms, PostgreSQL ms) per cycle over `cycles` cycles, and the queries of one cycle."""
    from django.db import connection

    for _ in range(WARM_CYCLES):
        crowd.cycle()
    queries = []  # an execute wrapper, not CaptureQueriesContext: every request empties connection.queries

    def count(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        crowd.cycle()
    web, database = time.process_time(), tree_cpu(backend)
    for _ in range(cycles):
        crowd.cycle()
    web, database = time.process_time() - web, tree_cpu(backend) - database
    return web / cycles * 1000, database / cycles * 1000, len(queries)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labelers", type=int, default=20)
    parser.add_argument("--prompts", type=int, default=5000)
    parser.add_argument("--answers", type=int, default=9)
    parser.add_argument("--cycles", type=int, default=200, help="measured cycles per setting and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database", default="bench_cycle")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/6", help="its db is emptied first")
    parser.add_argument("--keep", action="store_true", help="keep the database at the end")
    args = parser.parse_args(argv)
    # Each cycle takes one of a prompt's 3 places, and each labeler labels a prompt once.
    total = args.rounds * len(SETTINGS) * (WARM_CYCLES + 1 + args.cycles)
    needed = max(total // 3, total // args.labelers) + args.labelers
    if needed > args.prompts:
        raise SystemExit(f"--prompts {args.prompts} is too few for the cycles asked (about {needed} needed)")

    url, config = bench_url(os.environ.get("DATABASE_URL", ""), args.database)
    recreate(config, args.database)
    var_dir = Path(tempfile.mkdtemp(prefix="bench-cycle-"))
    # The servers' production settings (DEBUG off, the cache in Redis); the test client's host.
    os.environ.update({**platform_env(database_url=url, redis_url=args.redis_url, var_dir=var_dir),
                       "ALLOWED_HOSTS": "testserver", "DJANGO_SETTINGS_MODULE": "annotate.settings"})  # fmt: skip
    import django
    import redis

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    try:
        call_command("migrate", verbosity=0)
        call_command("collectstatic", "--noinput", verbosity=0)
        queue_id = create_data(labelers=args.labelers, prompts=args.prompts, answers=args.answers, overlap=3,
                               lease_seconds=3600)  # fmt: skip
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        redis.Redis.from_url(args.redis_url, socket_connect_timeout=3).flushdb()
        crowd = Crowd(args.labelers, queue_id)
        print(f"{args.labelers} labelers, {args.prompts:,} prompts x {args.answers} answers; {args.cycles} cycles "
              f"(task page + submit and next lease) per setting and round, {args.rounds} rounds, alternating\n")
        figures: dict[str, list[tuple[float, float, int]]] = {name: [] for name in SETTINGS}
        for _ in range(args.rounds):
            for name, options in SETTINGS.items():
                figures[name].append(measure(crowd, use_settings(options), args.cycles))
        print(f"{'database setting':<22} {'web ms/cycle':>13} {'PostgreSQL ms/cycle':>20} {'queries/cycle':>14}")
        medians = {}
        for name, rows in figures.items():
            web = statistics.median(r[0] for r in rows)
            database = statistics.median(r[1] for r in rows)
            medians[name] = (web, database)
            runs = ", ".join(f"{r[0]:.1f}/{r[1]:.2f}" for r in rows)
            print(f"{name:<22} {web:13.1f} {database:20.2f} {rows[0][2]:14d}   (rounds, web/PostgreSQL: {runs})")
        (web_on, db_on), (web_off, db_off) = medians["prepared statements"], medians["client-side binding"]
        print(f"\nprepared / client-side, medians of the same run: web {web_on / web_off:.2f}x, "
              f"PostgreSQL {db_on / db_off:.2f}x, both {(web_on + db_on) / (web_off + db_off):.2f}x")
    finally:
        connection.close()
        shutil.rmtree(var_dir, ignore_errors=True)
        drop(config, args.database, keep=args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
