"""Backup and restore drill: pg_dump the database, restore it into a scratch database, compare every table.

Proves the backup procedure of docs/operations.md on real data: `pg_dump --format=custom`, then
`pg_restore` into `<name>_restore_drill` (dropped first and after), then for every table in the
public schema the row count and an MD5 of its rows in a fixed order must be equal. Prints the dump
size and the time of each step; exits 1 when any table differs.

Run from the project root against the database to check (PostgreSQL only):
  DATABASE_URL=postgres://postgres@127.0.0.1:5432/annotate .venv/bin/python -m bench.backup_restore
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dj_database_url
import psycopg
from psycopg import sql

from bench.common import connect


def _connection_args(config: dict) -> list[str]:
    args = ["--host", config.get("HOST") or "127.0.0.1", "--port", str(config.get("PORT") or 5432)]
    return args + (["--username", config["USER"]] if config.get("USER") else [])



def table_fingerprints(connection: psycopg.Connection) -> dict[str, tuple[int, str]]:
    """Row count and MD5 of all rows (as text, sorted) of every table in the public schema."""
    tables = [
        row[0]
        for row in connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
        ).fetchall()
    ]
    fingerprints = {}
    for table in tables:
        query = sql.SQL(
            "SELECT count(*), coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') FROM {} AS t"
        ).format(sql.Identifier(table))
        count, digest = connection.execute(query).fetchone()
        fingerprints[table] = (count, digest)
    return fingerprints


def drill(database_url: str, workdir: Path) -> dict:
    """Dump, restore into a scratch database, compare; returns the figures and the tables that differ."""
    config = dj_database_url.parse(database_url)
    if "postgresql" not in config["ENGINE"]:
        raise SystemExit("The drill needs PostgreSQL: set DATABASE_URL=postgres://…")
    name, scratch = config["NAME"], f"{config['NAME']}_restore_drill"
    env = {**os.environ, **({"PGPASSWORD": config["PASSWORD"]} if config.get("PASSWORD") else {})}
    dump = workdir / f"{name}.dump"
    connection_args = _connection_args(config)

    started = time.perf_counter()
    subprocess.run(["pg_dump", *connection_args, "--format=custom", "--file", str(dump), name], env=env, check=True)
    dumped = time.perf_counter()
    with connect(config, "postgres") as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(scratch)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
    try:
        restore_started = time.perf_counter()
        subprocess.run(
            ["pg_restore", *connection_args, "--no-owner", "--exit-on-error", "--dbname", scratch, str(dump)],
            env=env, check=True,
        )  # fmt: skip
        restored = time.perf_counter()
        with connect(config, name) as source, connect(config, scratch) as copy:
            before, after = table_fingerprints(source), table_fingerprints(copy)
    finally:
        with connect(config, "postgres") as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(scratch)))
    differing = sorted(table for table in before.keys() | after.keys() if before.get(table) != after.get(table))
    return {
        "database": name,
        "dump_bytes": dump.stat().st_size,
        "dump_seconds": dumped - started,
        "restore_seconds": restored - restore_started,
        "tables": len(before),
        "rows": sum(count for count, _ in before.values()),
        "differing_tables": differing,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        result = drill(args.database_url, Path(workdir))
    print(
        f"{result['database']}: dump {result['dump_bytes'] / (1 << 20):.1f} MiB in {result['dump_seconds']:.1f} s,"
        f" restore {result['restore_seconds']:.1f} s; {result['tables']} tables, {result['rows']:,} rows compared"
    )
    if result["differing_tables"]:
        print("DIFFERENT after restore:", ", ".join(result["differing_tables"]))
        sys.exit(1)
    print("Every table is identical after the restore.")


if __name__ == "__main__":
    main()
