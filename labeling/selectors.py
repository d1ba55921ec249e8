"""Reads for the pages: a labeler's queues and progress, a queue's progress."""
from dataclasses import dataclass

import pandas as pd
from django.contrib.auth import get_user_model
from django.db.models import Count, Exists, F, OuterRef, Q

from .agreement_report import AgreementReport, queue_agreement
from .assignment import queues_open_to
from .models import AnswerLabel, Assignment, Queue, Task, TaskKind


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


@dataclass(frozen=True)
class QueueAgreementPage:
    report: AgreementReport
    labelers: list[dict]  # one per labeler: username, tasks, skips, skip rate, median seconds, agreement
    matrix_labels: list[str]
    matrix: list[tuple[str, list[dict | None]]]  # (labeler, cells by labeler pair; None on the diagonal)
    low_threshold: float | None  # labelers whose agreement is below this are highlighted


# A labeler this far below the queue's pooled agreement is highlighted for review.
LOW_AGREEMENT_GAP = 0.10


def queue_agreement_page(*, queue: Queue) -> QueueAgreementPage:
    """Every figure of a queue's agreement page, from three queries whatever the queue's size."""
    rows = AnswerLabel.objects.filter(
        ranking__assignment__task__prompt__queue=queue, ranking__assignment__status=Assignment.Status.SUBMITTED
    ).values_list("answer__prompt_id", "ranking__assignment__labeler_id", "answer_id", "rank")
    labels = pd.DataFrame.from_records(
        rows.iterator(chunk_size=10_000), columns=["prompt_id", "labeler_id", "answer_id", "rank"]
    )
    report = queue_agreement(labels)
    work = pd.DataFrame.from_records(
        Assignment.objects.filter(task__prompt__queue=queue, task__kind=TaskKind.RANKING)
        .exclude(status=Assignment.Status.LEASED)
        .values_list("labeler_id", "status", "time_spent_ms")
        .iterator(chunk_size=10_000),
        columns=["labeler_id", "status", "time_spent_ms"],
    )
    ids = sorted(set(work["labeler_id"]) | set(report.labelers["labeler_id"]))
    names = dict(get_user_model().objects.filter(pk__in=ids).values_list("pk", "username"))
    by_labeler = report.labelers.set_index("labeler_id")
    threshold = None if report.queue.rate is None else report.queue.rate - LOW_AGREEMENT_GAP
    # Per-labeler work figures in one pass over the assignments, not one filter per labeler.
    work["submitted"] = work["status"] == Assignment.Status.SUBMITTED
    work["skipped"] = work["status"] == Assignment.Status.SKIPPED
    work["submitted_ms"] = work["time_spent_ms"].where(work["submitted"])
    per_labeler = work.groupby("labeler_id").agg(
        finished=("status", "size"), tasks=("submitted", "sum"), skips=("skipped", "sum"), ms=("submitted_ms", "median")
    )
    labelers = []
    for labeler_id in ids:
        done = per_labeler.loc[labeler_id] if labeler_id in per_labeler.index else None
        stats = by_labeler.loc[labeler_id] if labeler_id in by_labeler.index else None
        figure = {
            column: None if stats is None or pd.isna(stats[column]) else float(stats[column])
            for column in ("rate", "rate_ci_low", "rate_ci_high", "consensus_rate")
        }
        rate = figure["rate"]
        skips = 0 if done is None else int(done["skips"])
        labelers.append(
            {
                "username": names.get(labeler_id, f"#{labeler_id}"),
                "tasks": 0 if done is None else int(done["tasks"]),
                "skips": skips,
                "skip_rate": None if done is None else skips / int(done["finished"]),
                "median_seconds": None if done is None or pd.isna(done["ms"]) else float(done["ms"]) / 1000,
                "rate": rate,
                "ci_low": figure["rate_ci_low"],
                "ci_high": figure["rate_ci_high"],
                "n": 0 if stats is None else int(stats["n"]),
                "consensus_rate": figure["consensus_rate"],
                "low": rate is not None and threshold is not None and rate < threshold,
            }
        )
    rated = [labeler_id for labeler_id in ids if labeler_id in by_labeler.index]
    lookup = {(row.labeler_a, row.labeler_b): _cell(row.rate, row.n) for row in report.pairs.itertuples()}
    matrix = [
        (names.get(a, f"#{a}"), [lookup.get((min(a, b), max(a, b)), _cell(None, 0)) if a != b else None for b in rated])
        for a in rated
    ]
    return QueueAgreementPage(
        report=report,
        labelers=labelers,
        matrix_labels=[names.get(labeler_id, f"#{labeler_id}") for labeler_id in rated],
        matrix=matrix,
        low_threshold=threshold,
    )


def _cell(rate, n: int) -> dict:
    """A heat-map cell: red at 0 agreement, yellow at 0.5, green at 1; grey when undefined."""
    if rate is None or pd.isna(rate):
        return {"rate": None, "n": int(n), "color": "#eef0f3"}
    return {"rate": float(rate), "n": int(n), "color": f"hsl({round(float(rate) * 120)}, 65%, 82%)"}
