"""Reads for the labeler pages: the queues a labeler may work on, and their progress in each."""
from dataclasses import dataclass

from django.db.models import Count, Exists, F, OuterRef, Q

from ..models import Assignment, Queue, Task, TaskKind
from .services import queues_open_to


@dataclass(frozen=True)
class KindProgress:
    kind: str
    label: str
    done_by_me: int  # submitted by this labeler
    skipped_by_me: int
    available: int  # tasks this labeler may still be given: see labeler_queues


@dataclass(frozen=True)
class LabelerQueue:
    queue: Queue
    kinds: list[KindProgress]


def labeler_queues(*, labeler) -> list[LabelerQueue]:
    """The open queues this labeler may work on, each with their own progress per task kind.

    `available` counts the tasks that still need labels and that this labeler has not done or skipped,
    and, while there are any, the gold tasks they have not done or skipped either (when the queue hands
    out gold): each submit then lowers it by one, gold or not. Counting regular tasks only, a gold submit
    left it unchanged and told the labeler that the prompt they had just ranked was gold.
    """
    queues = list(queues_open_to(labeler).order_by("-priority", "name"))
    mine = Assignment.objects.filter(labeler=labeler, task__prompt__queue__in=queues)
    my_counts = {
        (row["task__prompt__queue"], row["task__kind"]): row
        for row in mine.values("task__prompt__queue", "task__kind").annotate(
            done=Count("pk", filter=Q(status=Assignment.Status.SUBMITTED)),
            skipped=Count("pk", filter=Q(status=Assignment.Status.SKIPPED)),
        )
    }
    finished_by_me = Assignment.objects.filter(
        task=OuterRef("pk"), labeler=labeler, status__in=[Assignment.Status.SUBMITTED, Assignment.Status.SKIPPED]
    )
    open_tasks = (
        Task.objects.filter(prompt__queue__in=queues, prompt__excluded=False)
        .filter(Q(submitted_count__lt=F("overlap")) | Q(gold_groups__isnull=False))
        .exclude(Exists(finished_by_me))
        .values("prompt__queue", "kind")
        .annotate(
            regular=Count("pk", filter=Q(gold_groups__isnull=True)),
            gold=Count("pk", filter=Q(gold_groups__isnull=False)),
        )
    )
    gold_handed_out = {queue.pk for queue in queues if queue.gold_rate > 0}
    # Gold is handed out only in place of a regular task (labeling.assignment.services), so only while one is left.
    available = {
        (row["prompt__queue"], row["kind"]): row["regular"]
        + (row["gold"] if row["regular"] and row["prompt__queue"] in gold_handed_out else 0)
        for row in open_tasks
    }
    result = []
    for queue in queues:
        kinds = []
        for kind in queue.kinds:
            counts = my_counts.get((queue.pk, kind), {})
            kinds.append(
                KindProgress(
                    kind=kind,
                    label=TaskKind(kind).label,
                    done_by_me=counts.get("done", 0),
                    skipped_by_me=counts.get("skipped", 0),
                    available=available.get((queue.pk, kind), 0),
                )
            )
        result.append(LabelerQueue(queue=queue, kinds=kinds))
    return result
