"""bench/peer_labelstudio.py: the parts that need neither Label Studio nor a server."""
import argparse

import pytest

from bench.load import Call, sample_prompts
from bench.peer_labelstudio import Step, client_counts, next_task_ms


def test_annotate_next_task_is_the_task_page_plus_the_redirect_before_it_if_any():
    log = [
        Call(0, "next", 302, 10.0),
        Call(1, "next", 302, 30.0),
        Call(0, "task page", 200, 5.0, 7),
        Call(1, "next", 302, 1.0),  # its first lease's page never came: the second redirect counts
        Call(2, "task page", 200, 99.0, 8),  # no redirect before it: the page a submit sent it to
        Call(1, "task page", 200, 2.0, 9),
        Call(0, "next", 500, 50.0),
        Call(0, "task page", 200, 4.0, 10),
    ]
    assert next_task_ms(log) == [15.0, 99.0, 3.0, 4.0]


def test_client_counts_are_positive_numbers():
    assert client_counts("1,10,25") == [1, 10, 25]
    for bad in ("1,,2", "ten", "0,5", "-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            client_counts(bad)


def test_a_step_rate_is_its_cycles_per_second():
    assert Step("Annotate", 10, 4.0, 50, [], [], None, True).rate == 12.5


def test_both_platforms_get_the_same_prompts_on_every_run():
    first = list(sample_prompts(3, 9))
    assert first == list(sample_prompts(3, 9))
    assert len({text for text, _ in first}) == 3
    assert all(len(replies) == 9 and len({reply for reply, _ in replies}) == 9 for _, replies in first)
