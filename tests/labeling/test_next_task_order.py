"""The next task is read from one index of each queue's open tasks, in the order they are handed out.

Tasks carry copies of their prompt's queue, priority and exclusion (the index's columns and condition);
these tests check that the copies follow the prompt whatever changes it, that queues of one priority
share a level, and that on PostgreSQL the lease reads the index rather than scanning the queue.
"""
import importlib

import pytest
from django.apps import apps as django_apps
from django.db import connection, transaction
from django.utils import timezone

from labeling.assignment.services import candidate_query, lease_next_task, submit_ranking
from labeling.models import Prompt, Queue, Task
from labeling.quality import review
from tests.conftest import make_queue

pytestmark = pytest.mark.django_db


def copies(queue: Queue) -> set[tuple]:
    return set(Task.objects.filter(prompt__queue=queue).values_list("prompt__priority", "priority",
                                                                    "prompt__excluded", "excluded"))  # fmt: skip


def test_a_task_copies_its_prompts_queue_priority_and_exclusion_however_the_prompt_changes(queue_admin):
    queue = make_queue("Q", prompts=3, ranking_overlap=1)
    first, second, third = Prompt.objects.filter(queue=queue).order_by("pk")
    assert set(Task.objects.values_list("queue_id", flat=True)) == {queue.pk}

    Prompt.objects.filter(pk=first.pk).update(priority=7)  # a bulk update, as a script would
    second.excluded = True
    second.save()  # a model save, as the Django admin does
    with connection.cursor() as cursor:  # plain SQL
        cursor.execute("UPDATE labeling_prompt SET priority = -2 WHERE id = %s", [third.pk])
    review.requeue_prompts(queue=queue, prompt_ids=[second.pk], reason="again", user=queue_admin)

    assert {(p, p, e, e) for p, _, e, _ in copies(queue)} == copies(queue)
    assert dict(Task.objects.values_list("prompt_id", "priority")) == {first.pk: 7, second.pk: 8, third.pk: -2}
    assert not Task.objects.filter(excluded=True).exists()


def test_the_migration_fills_the_copies_of_existing_tasks():
    queue = make_queue("Q", prompts=2, ranking_overlap=1)
    Prompt.objects.filter(queue=queue).update(priority=3, excluded=True)
    with connection.cursor() as cursor:  # as before the migration: no copies (the trigger is bypassed here)
        cursor.execute("UPDATE labeling_task SET priority = 0, excluded = false")
    migration = importlib.import_module("labeling.migrations.0012_task_queue_order")
    migration.copy_from_prompts(django_apps, None)
    assert set(Task.objects.values_list("queue_id", "priority", "excluded")) == {(queue.pk, 3, True)}


def test_queues_of_one_priority_share_a_level_and_their_tasks_compete_by_task_order(labeler):
    older = make_queue("Older", prompts=2, ranking_overlap=1, priority=1)
    newer = make_queue("Newer", prompts=2, ranking_overlap=1, priority=1)
    Prompt.objects.filter(queue=newer, text="Prompt 1").update(priority=5)
    make_queue("Lower", prompts=1, ranking_overlap=1)

    handed_out = []
    while (assignment := lease_next_task(labeler=labeler)) is not None:
        handed_out.append((assignment.task.prompt.queue.name, assignment.task.prompt.text))
        order = list(assignment.answer_order)
        submit_ranking(assignment_id=assignment.pk, labeler=labeler, groups=[order[:1], order[1:]])

    assert handed_out == [
        ("Newer", "Prompt 1"),  # the highest prompt priority of the level
        ("Older", "Prompt 0"),  # then the oldest prompt of either queue
        ("Older", "Prompt 1"),
        ("Newer", "Prompt 0"),
        ("Lower", "Prompt 0"),  # a lower queue priority only once the level is done
    ]
    assert older.priority == newer.priority


@pytest.mark.postgres
def test_the_candidate_query_reads_the_open_task_index_and_not_the_queue(labeler):
    if connection.vendor != "postgresql":
        pytest.skip("The plan is PostgreSQL's.")
    queue = make_queue("Big", prompts=400, answers=2, ranking_overlap=1)
    make_queue("Other", prompts=400, answers=2, ranking_overlap=1)
    Task.objects.filter(queue=queue, prompt__text__in=[f"Prompt {i}" for i in range(300)]).update(submitted_count=1)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE labeling_task; ANALYZE labeling_assignment")
    sql, params = candidate_query(labeler=labeler, queue_id=queue.pk, kind="ranking", now=timezone.now(),
                                  lock="FOR UPDATE OF t SKIP LOCKED")  # fmt: skip
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "task_open_in_order" in plan, plan
    assert "Seq Scan on labeling_task" not in plan and "Sort" not in plan.split("SubPlan")[0], plan
    assert lease_next_task(labeler=labeler, queue=queue).task.prompt.text == "Prompt 300"
