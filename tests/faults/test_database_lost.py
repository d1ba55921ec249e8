"""PostgreSQL drops the connection in the middle of a submit: the labeler gets a 503 page saying nothing
was saved, nothing of the submit is stored, and submitting again stores the label exactly once.

The fault is real: a second connection terminates the request's server backend (pg_terminate_backend)
at a point inside the submit's transaction, after the task's counter was raised and the ranking row
written, so the next statement finds the connection gone.
"""
import json

import pytest
from django.db import close_old_connections, connection
from django.urls import reverse

from labeling import api
from labeling.assignment.services import lease_next_task
from labeling.models import AnswerLabel, Assignment, Demonstration, Queue, Ranking, Task, TaskKind
from tests.conftest import make_queue

from .dbfaults import kill_before, terminate_this_connections_backend

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("Terminating a server backend needs PostgreSQL: set DATABASE_URL.")


def after_the_request() -> None:
    # What Django does when every request ends (the test client switches it off): drop a dead connection.
    close_old_connections()


def assert_503_page(response) -> None:
    assert response.status_code == 503
    assert response["Retry-After"]
    page = response.content.decode()
    assert "Nothing was saved" in page and "submit again" in page
    assert f'href="{response.wsgi_request.headers["Referer"]}"' in page  # back to the task, which keeps the work


def test_a_ranking_submit_that_loses_the_database_stores_nothing_and_can_be_sent_again(client, labeler, monkeypatch):
    queue = make_queue("Rank", prompts=1, answers=4, task_kind=Queue.Kinds.RANKING, ranking_overlap=1)
    client.force_login(labeler)
    assignment = lease_next_task(labeler=labeler, queue=queue)
    task_url = "http://testserver" + reverse("task", args=[assignment.pk])
    a, b, c, d = assignment.answer_order
    data = {"groups": json.dumps([[a], [b, c], [d]]), f"rating-{a}": "6", f"flag-{d}": ["harmful"]}
    calls = kill_before(monkeypatch, AnswerLabel.objects, "bulk_create")

    response = client.post(reverse("task-submit", args=[assignment.pk]), data, HTTP_REFERER=task_url)
    after_the_request()

    assert calls == [1]  # the connection was lost inside the submit, not before it
    assert_503_page(response)
    assert Ranking.objects.count() == 0 and AnswerLabel.objects.count() == 0
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.LEASED and assignment.finished_at is None
    assert Task.objects.get(pk=assignment.task_id).submitted_count == 0

    # The labeler goes back and sends the same ranking again: stored once.
    response = client.post(reverse("task-submit", args=[assignment.pk]), data)
    assert response.status_code == 302
    ranking = Ranking.objects.get()
    assert ranking.assignment_id == assignment.pk and ranking.groups == [[a], [b, c], [d]]
    labels = {label.answer_id: label for label in AnswerLabel.objects.all()}
    assert [labels[x].rank for x in (a, b, c, d)] == [1, 2, 2, 4]
    assert labels[a].rating == 6 and labels[d].flags == ["harmful"]
    assert Task.objects.get(pk=assignment.task_id).submitted_count == 1
    # A third send (the 503 page's back button pressed twice) changes nothing.
    client.post(reverse("task-submit", args=[assignment.pk]), data)
    assert Ranking.objects.count() == 1 and AnswerLabel.objects.count() == 4
    assert Task.objects.get(pk=assignment.task_id).submitted_count == 1


def test_a_demonstration_submit_that_loses_the_database_stores_nothing_and_can_be_sent_again(
    client, labeler, monkeypatch
):
    queue = make_queue("Demo", prompts=1, answers=0, task_kind=Queue.Kinds.DEMONSTRATION, demonstration_overlap=1)
    client.force_login(labeler)
    assignment = lease_next_task(labeler=labeler, queue=queue, kind=TaskKind.DEMONSTRATION)
    task_url = "http://testserver" + reverse("task", args=[assignment.pk])
    kill_before(monkeypatch, Demonstration.objects, "create")

    response = client.post(
        reverse("task-submit", args=[assignment.pk]), {"text": "My answer."}, HTTP_REFERER=task_url
    )
    after_the_request()

    assert_503_page(response)
    assert Demonstration.objects.count() == 0
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.LEASED
    assert Task.objects.get(pk=assignment.task_id).submitted_count == 0

    assert client.post(reverse("task-submit", args=[assignment.pk]), {"text": "My answer."}).status_code == 302
    assert list(Demonstration.objects.values_list("assignment_id", "text")) == [(assignment.pk, "My answer.")]
    assert Task.objects.get(pk=assignment.task_id).submitted_count == 1


def test_an_api_client_gets_a_json_503_and_the_next_request_works(client, ml_user, monkeypatch):
    make_queue("Q", prompts=1, answers=2)
    client.force_login(ml_user)
    original = api.QueueViewSet.get_queryset

    def lose_connection(self):
        terminate_this_connections_backend()
        return original(self)

    monkeypatch.setattr(api.QueueViewSet, "get_queryset", lose_connection)
    response = client.get("/api/v1/queues/")
    after_the_request()

    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert "nothing of this request was saved" in response.json()["detail"]
    monkeypatch.setattr(api.QueueViewSet, "get_queryset", original)
    response = client.get("/api/v1/queues/")
    assert response.status_code == 200 and [q["name"] for q in response.json()["results"]] == ["Q"]


def test_other_errors_are_not_reported_as_a_lost_database(client, labeler, monkeypatch):
    """The middleware answers only for connection errors; a bug still surfaces as a 500."""
    from labeling.assignment import services as service

    queue = make_queue("Rank", prompts=1, answers=2, task_kind=Queue.Kinds.RANKING)
    assignment = lease_next_task(labeler=labeler, queue=queue)

    def broken(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(service, "submit_ranking", broken)
    client.force_login(labeler)
    client.raise_request_exception = False
    response = client.post(reverse("task-submit", args=[assignment.pk]), {"groups": "[]"})
    assert response.status_code == 500
