"""Reads for the pages: a labeler's queues and progress, a queue's progress."""
from dataclasses import dataclass

from django.db.models import Count, Exists, F, OuterRef, Q

from .assignment import queues_open_to
from .models import Assignment, Queue, Task, TaskKind


@dataclass(frozen=True)
class KindProgress:
    kind: str
    label: str
    done_by_me: int  # submitted by this labeler
    skipped_by_me: int
    available: int  # tasks that still need labels and that this labeler has not done or skipped


@dataclass(frozen=True)
class LabelerQueue:
    queue: Queue
    kinds: list[KindProgress]


def labeler_queues(*, labeler) -> list[LabelerQueue]:
    """The open queues this labeler may work on, each with their own progress per task kind."""
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
    available = {
        (row["prompt__queue"], row["kind"]): row["n"]
        for row in Task.objects.filter(prompt__queue__in=queues, submitted_count__lt=F("overlap"))
        .exclude(Exists(finished_by_me))
        .values("prompt__queue", "kind")
        .annotate(n=Count("pk"))
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


@dataclass(frozen=True)
class QueueKindProgress:
    kind: str
    label: str
    tasks: int
    complete: int  # tasks with all the labels their overlap asks for
    in_progress: int  # some labels or a live lease, not complete
    untouched: int
    labels: int  # submitted labels


def queue_progress(*, queue: Queue, now) -> list[QueueKindProgress]:
    live = Assignment.objects.filter(task=OuterRef("pk"), status=Assignment.Status.LEASED, lease_expires_at__gt=now)
    rows = {
        row["kind"]: row
        for row in Task.objects.filter(prompt__queue=queue)
        .annotate(leased=Exists(live))
        .values("kind")
        .annotate(
            # distinct: the join to assignments below repeats each task row.
            tasks=Count("pk", distinct=True),
            complete=Count("pk", distinct=True, filter=Q(submitted_count__gte=F("overlap"))),
            started=Count("pk", distinct=True, filter=Q(submitted_count__gt=0) | Q(leased=True)),
            labels=Count("assignments", filter=Q(assignments__status=Assignment.Status.SUBMITTED)),
        )
    }
    result = []
    for kind in queue.kinds:
        row = rows.get(kind, {})
        tasks, complete, started = row.get("tasks", 0), row.get("complete", 0), row.get("started", 0)
        result.append(
            QueueKindProgress(
                kind=kind,
                label=TaskKind(kind).label,
                tasks=tasks,
                complete=complete,
                in_progress=started - complete,
                untouched=tasks - started,
                labels=row.get("labels", 0),
            )
        )
    return result
