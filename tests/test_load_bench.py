"""bench/load.py stays working: its checks catch what they are for, and a short run of it passes them."""
import re

import pytest

from bench.load import Call, Facts, check
from tests.bench_runs import run_bench_on_postgres


def failed(results) -> dict[str, list[str]]:
    return {name: failures for name, failures in results if failures}


def consistent() -> tuple[list[Call], Facts]:
    """Assignment 1 submitted twice (stored, then already), 2 skipped, 3 refused late: as stored."""
    log = [
        Call(0, "next", 302, 5.0),
        Call(0, "submit", 302, 9.0, 1, "stored", [[11], [12, 13]]),
        Call(0, "submit again", 302, 7.0, 1, "already", [[11], [12, 13]]),
        Call(1, "skip", 302, 6.0, 2, "skipped"),
        Call(1, "submit late", 302, 8.0, 3, "refused", [[13], [12], [11]], "The prompt has since received..."),
    ]
    facts = Facts(rankings={1: [[[11], [12, 13]]]}, tasks=[(100, 3, 1, 1)], skipped={2})
    return log, facts


def test_the_checks_pass_a_log_that_matches_the_database():
    log, facts = consistent()
    results = check(log, facts)
    assert len(results) == 11
    assert failed(results) == {}


def test_the_checks_catch_a_lost_a_doubled_an_unannounced_and_an_altered_label():
    log, facts = consistent()
    log.append(Call(2, "submit", 302, 9.0, 4, "stored", [[11, 12, 13]]))  # told stored, not in the database
    facts.rankings[5] = [[[11], [12], [13]]]  # in the database, never told
    facts.rankings[1].append([[11], [12, 13]])  # stored twice
    results = failed(check(log, facts))
    assert results["every submit answered 'stored' is stored exactly once, with the groups sent"] == [
        "assignment 1: 2 rows",
        "assignment 4: 0 rows",
    ]
    assert results["no ranking stored that the client was not told about"] == ["assignment 5"]
    assert results["a submit answered 'already stored' has its one stored ranking"] == ["assignment 1"]

    log, facts = consistent()
    facts.rankings[1] = [[[12], [11, 13]]]
    assert list(failed(check(log, facts))) == [
        "every submit answered 'stored' is stored exactly once, with the groups sent"
    ]


def test_the_checks_catch_overfull_tasks_double_labels_5xx_and_double_successes():
    log, facts = consistent()
    log += [Call(0, "submit again", 302, 7.0, 1, "stored", [[11], [12, 13]]), Call(3, "next", 500, 40.0),
            Call(4, "task page", 0, 120_000.0, 6, "error", message="ReadTimeout()")]  # fmt: skip
    facts.tasks += [(101, 3, 4, 4), (102, 3, 2, 1)]
    facts.labeled_twice = [(7, 55, 2)]
    facts.skipped = set()
    results = failed(check(log, facts))
    assert results["no task has more labels than its overlap; each task's counter equals its rankings"] == [
        "task 101: overlap 3, counter 4, rankings 4",
        "task 102: overlap 3, counter 2, rankings 1",
    ]
    assert results["no labeler labeled a prompt twice"] == ["labeler 7, prompt 55: 2 rankings"]
    assert results["no 5xx answer"] == ["next None: HTTP 500"]
    assert results["no transport error or unreadable answer"] == ["task page 6: ReadTimeout()"]
    assert results["a submit sent twice is answered 'stored' at most once"] == ["assignment 1: 2 times"]
    assert results["a skip answered 'skipped' is a skipped assignment"] == ["assignment 2"]


@pytest.mark.postgres
def test_a_short_run_of_the_bench_passes_its_checks():
    """5 labelers (2 log in through the form), 8 s, 200 prompts, a 3 s lease that can expire: under a minute."""
    output = run_bench_on_postgres(
        "bench.load", "--labelers", "5", "--duration", "8", "--prompts", "200", "--lease-seconds", "3",
        "--p-expire", "0.1", "--p-double", "0.2", "--form-logins", "2", database="bench_load_smoke",
    )  # fmt: skip
    assert "all checks passed" in output
    assert "FAIL" not in output
    assert re.search(r"^login +2 ", output, re.MULTILINE), output  # three arrived signed in, and worked: no error
    submits = re.search(r"^submit +(\d+) .*'stored': (\d+)", output, re.MULTILINE)
    assert submits and int(submits.group(2)) > 0, output
    for endpoint in ("next (new lease)", "task page", "submit (+ next lease)", "skip (+ next lease)"):
        assert re.search(rf"^  {re.escape(endpoint)} +HTTP [23]0[02] +\d+ queries", output, re.MULTILINE), output
