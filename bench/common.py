"""What the benchmarks share: their own PostgreSQL database beside DATABASE_URL's, COPY, and timing.

A bench that fills a database creates one of its own on DATABASE_URL's server (never DATABASE_URL's
database itself), fills it with COPY rather than ORM loops, and drops it unless told to keep it.
"""
from __future__ import annotations

import time

import dj_database_url
import psycopg
from psycopg import sql


def connect(config: dict, name: str) -> psycopg.Connection:
    """An autocommit connection to database `name` on the server `config` (dj_database_url's dict) names."""
    return psycopg.connect(
        host=config.get("HOST") or "127.0.0.1", port=config.get("PORT") or 5432, user=config.get("USER") or None,
        password=config.get("PASSWORD") or None, dbname=name, autocommit=True,
    )  # fmt: skip


def bench_url(database_url: str, name: str) -> tuple[str, dict]:
    """The URL of database `name` on DATABASE_URL's server; refuses anything but PostgreSQL."""
    config = dj_database_url.parse(database_url) if database_url else {}
    if "postgresql" not in config.get("ENGINE", ""):
        raise SystemExit(
            "The bench needs PostgreSQL: set DATABASE_URL=postgres://USER@HOST:PORT/ANY_DATABASE; it creates"
            f" and drops its own database {name!r} on that server (SQLite's figures would not be the server's)."
        )
    if name == config["NAME"]:
        raise SystemExit(f"--database must differ from DATABASE_URL's database ({name!r}): the bench drops it.")
    scheme, rest = database_url.split("://", 1)
    server = rest.split("/", 1)[0]
    return f"{scheme}://{server}/{name}", config


def copy_rows(connection: psycopg.Connection, table: str, columns: list[str], rows) -> None:
    """Write `rows` (tuples in `columns` order) into `table` with COPY."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with connection.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def recreate(config: dict, name: str, *, drop_only: bool = False) -> None:
    """Drop the bench database `name` (whoever is connected) and, unless drop_only, create it empty."""
    with connect(config, "postgres") as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if not drop_only:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop(config: dict, name: str, *, keep: bool = False) -> None:
    """Close this process's Django connections (Django must be set up) and drop the bench database `name`,
    unless `keep` (--keep: the next run reuses it)."""
    from django.db import connections

    connections.close_all()
    if keep:
        print(f"kept database {name!r} (rerun with --keep to reuse it; dropdb {name} to drop)")
    else:
        recreate(config, name, drop_only=True)


def timed(call, runs: int, *, warm_up: bool = False) -> list[float]:
    """Wall seconds of `runs` calls of `call` (after one untimed call when `warm_up`)."""
    if warm_up:
        call()
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return seconds
