"""Queue changes that carry a rule: instructions keep every version they have had."""
from django.db import transaction

from .assignment import sync_tasks
from .models import InstructionsVersion, Queue


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


def save_queue(queue: Queue, *, user=None) -> int:
    """After a queue is created or edited: version its instructions and fit its tasks; returns new tasks."""
    with transaction.atomic():
        record_instructions(queue, user=user)
        return sync_tasks(queue)
