"""Losing the database connection for real: end the server backend behind Django's connection."""
from django.db import connection


def terminate_this_connections_backend() -> None:
    """From a second connection, end the server process behind Django's connection, and wait for it to go."""
    pid = connection.connection.info.backend_pid
    killer = connection.get_new_connection(connection.get_connection_params())
    try:
        killer.autocommit = True
        assert killer.execute("SELECT pg_terminate_backend(%s, 5000)", [pid]).fetchone()[0] is True
    finally:
        killer.close()


def kill_before(monkeypatch, manager, method: str) -> list[int]:
    """Make `manager.method` lose the connection on its first call; returns a list counting the calls."""
    original = getattr(manager, method)
    calls: list[int] = []

    def lose_connection_first(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            terminate_this_connections_backend()
        return original(*args, **kwargs)

    monkeypatch.setattr(manager, method, lose_connection_first)
    return calls
