"""Fixtures for the API tests: a client, token headers, and a queue with submitted labels."""
import pytest
from rest_framework.test import APIClient

from core.tokens import issue_token
from labeling.assignment.services import lease_next_task, submit_demonstration, submit_ranking
from labeling.models import Queue
from tests.conftest import make_queue


@pytest.fixture
def api() -> APIClient:
    return APIClient()


def token_header(user) -> dict:
    _, key = issue_token(user=user, name="test")
    return {"HTTP_AUTHORIZATION": f"Token {key}"}


def label_everything(queue: Queue, labeler) -> None:
    """The labeler writes a demonstration for, and ranks, every prompt of the queue (best answer first)."""
    while (assignment := lease_next_task(labeler=labeler, queue=queue)) is not None:
        if assignment.task.kind == "demonstration":
            submit_demonstration(
                assignment_id=assignment.pk, labeler=labeler, text=f"by {labeler.username}", time_spent_ms=1000
            )
        else:
            order = sorted(assignment.answer_order)
            submit_ranking(
                assignment_id=assignment.pk, labeler=labeler, groups=[[order[0]], order[1:]],
                ratings={order[0]: 6}, flags={order[-1]: ["hallucination"]}, time_spent_ms=2000,
            )  # fmt: skip


@pytest.fixture
def labeled(labeler, labeler2) -> Queue:
    """Two prompts, each demonstrated and ranked by lab1 and lab2."""
    queue = make_queue("Labeled", prompts=2, answers=3, task_kind=Queue.Kinds.BOTH, ranking_overlap=2,
                       demonstration_overlap=2)  # fmt: skip
    label_everything(queue, labeler)
    label_everything(queue, labeler2)
    return queue
