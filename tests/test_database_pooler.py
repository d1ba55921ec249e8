"""Database settings for a direct connection and for PgBouncer in transaction mode (docs/scaling.md#pgbouncer)."""
import json
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.db import connection

DIRECT = "postgres://postgres@127.0.0.1:5432/annotate"
POOLED = "postgres://postgres@127.0.0.1:6432/annotate"
COUNT_PREPARED = (
    "import os; os.environ['DJANGO_SETTINGS_MODULE'] = 'annotate.settings'; import django; django.setup(); "
    "from django.db import connection; cursor = connection.cursor(); "
    "[cursor.execute('SELECT %s::int + 1', [n]) for n in range(20)]; "
    "cursor.execute('SELECT count(*) FROM pg_prepared_statements'); print(cursor.fetchone()[0])"
)


def run_python(code: str, **env) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=settings.BASE_DIR, env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return result.stdout


def database_settings(**env) -> dict:
    code = (
        "import json, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'annotate.settings'; "
        "from django.conf import settings; "
        "print(json.dumps(settings.DATABASES['default'], default=str))"
    )
    return json.loads(run_python(code, **env))


def test_transaction_pooling_turns_server_side_cursors_and_prepared_statements_off():
    pooled = database_settings(DATABASE_URL=POOLED, DATABASE_POOLER="transaction")
    assert pooled["DISABLE_SERVER_SIDE_CURSORS"] is True
    options = pooled.get("OPTIONS", {})
    assert "server_side_binding" not in options and "prepare_threshold" not in options
    direct = database_settings(DATABASE_URL=DIRECT, DATABASE_POOLER="")
    assert direct["DISABLE_SERVER_SIDE_CURSORS"] is False
    assert direct["OPTIONS"] == {"server_side_binding": True, "prepare_threshold": 5}


def test_options_in_the_database_url_are_kept():
    options = database_settings(DATABASE_URL=f"{DIRECT}?sslmode=disable", DATABASE_POOLER="")["OPTIONS"]
    assert options == {"sslmode": "disable", "server_side_binding": True, "prepare_threshold": 5}


def _test_database_url() -> str:
    params = connection.settings_dict
    return f"postgres://{params['USER']}@{params['HOST']}:{params['PORT'] or 5432}/{params['NAME']}"


@pytest.mark.django_db
def test_a_direct_connection_prepares_its_hot_statements_and_a_pooled_one_none():
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements and PgBouncer concern PostgreSQL only")
    url = _test_database_url()
    # psycopg prepares a statement after its 5th use once parameters are bound on the server.
    assert int(run_python(COUNT_PREPARED, DATABASE_URL=url, DATABASE_POOLER="")) >= 1
    assert int(run_python(COUNT_PREPARED, DATABASE_URL=url, DATABASE_POOLER="transaction")) == 0
