"""Queue instructions keep every version, and each assignment records the version it was made under."""
from django.urls import reverse

from labeling.assignment.services import lease_next_task
from labeling.models import InstructionsVersion, Queue
from labeling.queues.services import record_instructions
from tests.conftest import make_queue


def test_instructions_get_a_new_version_only_when_they_change(db):
    queue = make_queue("Versions", prompts=1, instructions="Be kind.")
    first = record_instructions(queue)
    assert (first.version, first.text, queue.instructions_version) == (1, "Be kind.", 1)
    assert record_instructions(queue) is None
    queue.instructions = "Be kind and brief."
    queue.save()
    second = record_instructions(queue)
    assert second.version == 2 and Queue.objects.get(pk=queue.pk).instructions_version == 2
    assert list(queue.instruction_versions.values_list("version", "text")) == [
        (2, "Be kind and brief."),
        (1, "Be kind."),
    ]


def test_each_assignment_records_the_instructions_it_was_made_under(db, labeler, labeler2):
    queue = make_queue("Labels", prompts=2, answers=3, instructions="v1 text", ranking_overlap=2)
    record_instructions(queue)
    before = lease_next_task(labeler=labeler, queue=queue)
    queue.instructions = "v2 text"
    queue.save()
    record_instructions(queue)
    after = lease_next_task(labeler=labeler2, queue=queue)
    before.refresh_from_db()
    assert (before.instructions_version, after.instructions_version) == (1, 2)


def test_editing_a_queue_in_the_browser_versions_its_instructions(client, queue_admin):
    client.force_login(queue_admin)
    form = {"name": "Edited", "instructions": "First", "task_kind": "ranking", "demonstration_overlap": 1,
            "ranking_overlap": 3, "priority": 0, "lease_seconds": 600, "is_open": "on",
            "gold_rate": 0, "gold_threshold": 0.7}  # fmt: skip
    client.post(reverse("manage-queue-new"), form)
    queue = Queue.objects.get(name="Edited")
    client.post(reverse("manage-queue-edit", args=[queue.pk]), {**form, "priority": 5})  # same text
    client.post(reverse("manage-queue-edit", args=[queue.pk]), {**form, "instructions": "Second"})
    versions = InstructionsVersion.objects.filter(queue=queue)
    assert list(versions.values_list("version", "text", "created_by")) == [
        (2, "Second", queue_admin.pk),
        (1, "First", queue_admin.pk),
    ]
