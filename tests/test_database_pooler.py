"""What PgBouncer in transaction mode needs of the database settings (docs/scaling.md#pgbouncer)."""
import json
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.db import connection


def database_settings(**env) -> dict:
    code = (
        "import json, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'annotate.settings'; "
        "from django.conf import settings; "
        "print(json.dumps(settings.DATABASES['default'], default=str))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=settings.BASE_DIR, env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return json.loads(result.stdout)


def test_transaction_pooling_turns_server_side_cursors_off():
    url = "postgres://postgres@127.0.0.1:6432/annotate"
    assert database_settings(DATABASE_URL=url, DATABASE_POOLER="transaction")["DISABLE_SERVER_SIDE_CURSORS"] is True
    assert database_settings(DATABASE_URL=url, DATABASE_POOLER="")["DISABLE_SERVER_SIDE_CURSORS"] is False


@pytest.mark.django_db
def test_the_connection_prepares_no_statements_a_pooler_could_not_follow():
    if connection.vendor != "postgresql":
        pytest.skip("PgBouncer fronts PostgreSQL only")
    with connection.cursor() as cursor:
        for number in range(20):  # psycopg prepares a statement after 5 uses unless parameters are bound client-side
            cursor.execute("SELECT %s::int + 1", [number])
        cursor.execute("SELECT count(*) FROM pg_prepared_statements")
        assert cursor.fetchone()[0] == 0
