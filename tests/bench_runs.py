"""Running a bench script for a moment against the test server, as its smoke tests do."""
import os
import subprocess
import sys

import dj_database_url
import pytest
from django.conf import settings


def run_bench_on_postgres(module: str, *args: str, database: str, timeout: float = 240) -> str:
    """`python -m module *args --database database` on DATABASE_URL's server; its output. It must exit 0."""
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip(f"{module} needs PostgreSQL: set DATABASE_URL")
    url = os.environ["DATABASE_URL"]
    assert dj_database_url.parse(url)["NAME"] != database  # the bench drops its database
    run = subprocess.run(
        [sys.executable, "-m", module, *args, "--database", database],
        cwd=settings.BASE_DIR, env={**os.environ, "DATABASE_URL": url}, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    return output
