"""Queue changes that carry a rule: instructions keep every version they have had; every change is audited."""
from django.db import transaction

from core import audit

from ..assignment.services import sync_tasks
from ..models import InstructionsVersion, Queue

# The settings an admin edits, compared before and after an edit for the audit log.
AUDITED_FIELDS = [
    "name", "instructions", "task_kind", "demonstration_overlap", "ranking_overlap", "priority", "lease_seconds",
    "is_open", "gold_rate", "gold_threshold", "labelers", "labeler_groups",
]  # fmt: skip


def record_instructions(queue: Queue, *, user=None) -> InstructionsVersion | None:
    """Keep the queue's current instructions as a new version if they differ from the last one."""
    with transaction.atomic():
        Queue.objects.select_for_update().filter(pk=queue.pk).exists()  # one version number per change
        latest = queue.instruction_versions.order_by("-version").first()
        if latest is not None and latest.text == queue.instructions:
            return None
        version = InstructionsVersion.objects.create(
            queue=queue, version=(latest.version if latest else 0) + 1, text=queue.instructions, created_by=user
        )
        Queue.objects.filter(pk=queue.pk).update(instructions_version=version.version)
        queue.instructions_version = version.version
    return version


def queue_settings(queue: Queue) -> dict:
    """The queue's settings as stored; take it before an edit and give it to save_queue as `before`."""
    return audit.snapshot(queue, AUDITED_FIELDS)


def save_queue(queue: Queue, *, user=None, before: dict | None = None) -> int:
    """After a queue is created (`before` None) or edited: version its instructions, fit its tasks, and
    audit the change; returns new tasks."""
    with transaction.atomic():
        record_instructions(queue, user=user)
        created = sync_tasks(queue)
        audit.record(
            actor=user,
            action="queue.create" if before is None else "queue.update",
            target=queue,
            detail={"changes": audit.changes(before or {}, queue_settings(queue))},
        )
        return created


def set_queue_open(queue: Queue, *, is_open: bool, user=None) -> Queue:
    """Open or pause the queue (a paused queue hands out no tasks)."""
    with transaction.atomic():
        queue.is_open = is_open
        queue.save(update_fields=["is_open", "updated_at"])
        audit.record(actor=user, action="queue.open" if is_open else "queue.pause", target=queue)
    return queue
