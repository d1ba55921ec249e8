"""bench/cycle_cpu.py stays working: a short run measures both database settings and prints their figures."""
import re
import subprocess
import sys

import pytest
from django.conf import settings

from tests.bench_runs import run_bench_on_postgres


@pytest.mark.postgres
def test_a_short_run_prints_cpu_per_cycle_for_both_database_settings():
    output = run_bench_on_postgres(
        "bench.cycle_cpu", "--labelers", "3", "--prompts", "80", "--cycles", "6", "--rounds", "1",
        database="bench_cycle_smoke",
    )
    for name in ("prepared statements", "client-side binding"):
        row = re.search(rf"^{name} +([\d.]+) +([\d.]+) +(\d+) ", output, re.MULTILINE)
        assert row, output
        web, database, queries = float(row.group(1)), float(row.group(2)), int(row.group(3))
        # A cycle is two requests that read and write the database: it costs CPU on both sides.
        assert web > 0 and queries >= 10, output
        assert database >= 0, output
    assert re.search(r"prepared / client-side, medians of the same run: web [\d.]+x", output), output


def test_too_few_prompts_for_the_cycles_asked_is_refused_before_any_work():
    run = subprocess.run(
        [sys.executable, "-m", "bench.cycle_cpu", "--labelers", "2", "--prompts", "10", "--cycles", "200"],
        cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode != 0
    assert "is too few for the cycles asked" in run.stderr
