"""A lease runs out while the labeler is still on the task page. Through the real views: the late
submit is taken when the prompt still needs it, or refused with a message on the page the labeler
lands on; either way nothing is counted twice. (The rules themselves: tests/labeling/test_assignment.py.)
"""
import json
from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from labeling.assignment.services import lease_next_task, submit_ranking
from labeling.models import AnswerLabel, Assignment, Queue, Ranking, Task
from tests.conftest import make_queue


def expire(assignment: Assignment) -> None:
    Assignment.objects.filter(pk=assignment.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))


def one_prompt_queue() -> Queue:
    return make_queue("Late", prompts=1, answers=3, task_kind=Queue.Kinds.RANKING, ranking_overlap=1)


def submit_page(client, assignment: Assignment):
    groups = json.dumps([[pk] for pk in assignment.answer_order])
    return client.post(reverse("task-submit", args=[assignment.pk]), {"groups": groups}, follow=True)


def test_a_late_submit_the_prompt_still_needs_is_taken_once(client, labeler):
    queue = one_prompt_queue()
    client.force_login(labeler)
    mine = lease_next_task(labeler=labeler, queue=queue)
    assert client.get(reverse("task", args=[mine.pk])).status_code == 200
    expire(mine)

    response = submit_page(client, mine)

    assert "Submitted" in response.content.decode()
    mine.refresh_from_db()
    assert mine.status == Assignment.Status.SUBMITTED
    assert Task.objects.get(pk=mine.task_id).submitted_count == 1
    again = submit_page(client, mine)  # the same form sent twice
    assert "already submitted" in again.content.decode()
    assert Ranking.objects.count() == 1 and Task.objects.get(pk=mine.task_id).submitted_count == 1


def test_a_late_submit_after_another_labeler_filled_the_prompt_is_refused_with_a_message(client, labeler, labeler2):
    queue = one_prompt_queue()
    client.force_login(labeler)
    mine = lease_next_task(labeler=labeler, queue=queue)
    expire(mine)
    theirs = lease_next_task(labeler=labeler2, queue=queue)  # the expired lease frees the room
    assert theirs.task_id == mine.task_id
    submit_ranking(assignment_id=theirs.pk, labeler=labeler2, groups=[[pk] for pk in theirs.answer_order])

    response = submit_page(client, mine)

    page = response.content.decode()
    assert "Your lease on this task expired" in page and "Your answer was not stored" in page
    assert response.redirect_chain[0][0] == reverse("queue-next-task", args=[queue.pk]) + "?kind=ranking"
    assert list(Ranking.objects.values_list("assignment_id", flat=True)) == [theirs.pk]
    assert AnswerLabel.objects.count() == 3
    assert Task.objects.get(pk=mine.task_id).submitted_count == 1  # never past the overlap
    mine.refresh_from_db()
    assert mine.status == Assignment.Status.LEASED and mine.finished_at is None


def test_a_late_submit_while_another_labeler_holds_the_only_place_is_refused(client, labeler, labeler2):
    queue = one_prompt_queue()
    client.force_login(labeler)
    mine = lease_next_task(labeler=labeler, queue=queue)
    expire(mine)
    theirs = lease_next_task(labeler=labeler2, queue=queue)  # live, not submitted yet
    assert theirs.task_id == mine.task_id

    response = submit_page(client, mine)

    page = response.content.decode()
    assert "Your lease on this task expired and other labelers are now working on the places it had left" in page
    assert Ranking.objects.count() == 0 and Task.objects.get(pk=mine.task_id).submitted_count == 0
    # The labeler who holds the lease is not robbed of the place.
    submit_ranking(assignment_id=theirs.pk, labeler=labeler2, groups=[[pk] for pk in theirs.answer_order])
    assert Task.objects.get(pk=mine.task_id).submitted_count == 1
