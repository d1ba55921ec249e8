"""Reads for the queue pages: a queue's progress, and the queue list's dashboard of every queue."""
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db.models import Count, F, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from ..models import Assignment, Prompt, Queue, QueueAgreementTotals, QueueWork, Task, TaskKind
from ..quality.report import QueueAgreement
from ..quality.selectors import stored_queue_figure


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
    return _progress(queue, _progress_counts(now, queue_ids=[queue.pk], works=QueueWork.objects.filter(queue=queue)))


def _progress_counts(now, *, queue_ids: list[int] | None = None, works=()) -> dict[tuple[int, str], dict]:
    """Task counts per (queue, kind) from the tasks alone, one grouped query, and the live leases, one query of few
    rows. Gold tasks and excluded prompts are not work to do. `labels`, the submitted labels of the other tasks, are
    their counters (Task.submitted_count) plus what the last draw of the queue's work (`works`, QueueWork rows) found
    they miss. Besides, per queue: `gold` (gold tasks) and `submitted_count` (every task's counter summed)."""
    tasks = Task.objects.all() if queue_ids is None else Task.objects.filter(queue_id__in=queue_ids)
    regular = Q(gold_groups__isnull=True, excluded=False)
    counts: dict[tuple[int, str], dict] = {}
    for row in tasks.values("queue", "kind").annotate(
        tasks=Count("pk", filter=regular),
        complete=Count("pk", filter=regular & Q(submitted_count__gte=F("overlap"))),
        started=Count("pk", filter=regular & Q(submitted_count__gt=0)),
        labels=Coalesce(Sum("submitted_count", filter=regular), 0),
        gold=Count("pk", filter=Q(gold_groups__isnull=False)),
        submitted_count=Coalesce(Sum("submitted_count"), 0),
    ):
        counts[(row["queue"], row["kind"])] = row
    # Started also: a task with no label yet that a labeler holds a live lease on (read along assignment_leased).
    leased = Assignment.objects.filter(status=Assignment.Status.LEASED, lease_expires_at__gt=now,
                                       task__submitted_count=0, task__gold_groups__isnull=True, task__excluded=False)
    if queue_ids is not None:
        leased = leased.filter(task__queue_id__in=queue_ids)
    for row in leased.values("task__queue", "task__kind").annotate(n=Count("task", distinct=True)):
        if (row["task__queue"], row["task__kind"]) in counts:  # else made since the count above
            counts[(row["task__queue"], row["task__kind"])]["started"] += row["n"]
    for work in works:
        for kind, n in work.uncounted_labels.items():
            if (work.queue_id, kind) in counts:
                counts[(work.queue_id, kind)]["labels"] += n
    return counts


def _progress(queue: Queue, counts: dict[tuple[int, str], dict]) -> list[QueueKindProgress]:
    result = []
    for kind in queue.kinds:
        row = counts.get((queue.pk, kind), {})
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


DASHBOARD_DAYS = 30


def dashboard_days(now) -> list[date]:
    """The days of the queue list's chart, oldest first, ending today (local time)."""
    today = timezone.localdate(now)
    return [today - timedelta(days=back) for back in range(DASHBOARD_DAYS - 1, -1, -1)]


def day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time()))


@dataclass(frozen=True)
class QueueSummary:
    queue: Queue
    progress: list[QueueKindProgress]
    excluded_prompts: int
    gold_items: int
    # Submitted labels (gold included) on each dashboard day, oldest first; None for a day not counted yet.
    labels_per_day: list[int | None]
    median_seconds: float | None  # per submitted task
    skip_rate: float | None  # skipped / finished assignments
    agreement: QueueAgreement  # the stored figures (labeling.quality.aggregates)
    work_at: datetime | None  # when the three figures above were counted (QueueWork); None: not yet

    @property
    def recent_labels(self) -> int:
        return sum(n for n in self.labels_per_day if n is not None)


@dataclass(frozen=True)
class QueueDashboard:
    days: list[date]
    queues: list[QueueSummary]


def queue_dashboard(*, now) -> QueueDashboard:
    """Every queue's figures for the queue list, from the same few queries whatever the number of queues and their
    size: progress from the tasks' counters and the live leases (_progress_counts), excluded prompts along an index,
    and the rest from stored rows: the agreement (labeling.quality.aggregates) and the work, labels per day, median
    seconds and skip rate (QueueWork, counted from every assignment by the worker's draw). A queue whose tasks' counters
    moved since its last draw, or that has none, gets a draw (labeling.quality.aggregates.schedule_intervals)."""
    from ..quality.aggregates import schedule_intervals  # here: aggregates imports this module

    queues = list(Queue.objects.all())
    works = {work.queue_id: work for work in QueueWork.objects.all()}
    progress = _progress_counts(now, works=works.values())
    excluded = dict(Prompt.objects.filter(excluded=True).values("queue").annotate(n=Count("pk")).values_list(
        "queue", "n"))  # fmt: skip
    days = dashboard_days(now)
    agreement = {totals.queue_id: stored_queue_figure(totals) for totals in QueueAgreementTotals.objects.all()}
    summaries = []
    for queue in queues:
        rows = [row for (queue_id, _), row in progress.items() if queue_id == queue.pk]
        submitted_count = sum(row["submitted_count"] for row in rows)
        work = works.get(queue.pk)
        fresh = work is not None and work.submitted_count == submitted_count
        if not fresh:
            schedule_intervals(queue_id=queue.pk)
        # A day after the draw (or any day, before the first draw of a queue whose counters never moved) had no
        # label if no counter moved since: gold labels, which no counter holds, have a draw of their own due.
        unseen = 0 if fresh or (work is None and submitted_count == 0) else None
        if work is None:
            per_day, median, skip_rate = [unseen] * len(days), None, None
        else:
            drawn_day = timezone.localdate(work.drawn_at)
            per_day = [work.labels_per_day.get(day.isoformat(), unseen if day > drawn_day else None) for day in days]
            median = None if work.median_ms is None else work.median_ms / 1000
            skip_rate = work.skipped / work.finished if work.finished else None
        summaries.append(
            QueueSummary(
                queue=queue,
                progress=_progress(queue, progress),
                excluded_prompts=excluded.get(queue.pk, 0),
                gold_items=sum(row["gold"] for row in rows),
                labels_per_day=per_day,
                median_seconds=median,
                skip_rate=skip_rate,
                agreement=agreement.get(queue.pk, QueueAgreement(None, 0, None, None, 0)),
                work_at=None if work is None else work.drawn_at,
            )
        )
    return QueueDashboard(days=days, queues=summaries)
