"""Reads for the pages: a labeler's queues and progress, a queue's progress, the admin dashboards;
and the submitted labels that pair datasets and exports take, through their filters (filtered_labels).
"""
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import reduce
from typing import NamedTuple

import pandas as pd
from django.contrib.auth import get_user_model
from django.db.models import Count, Exists, F, Model, OuterRef, Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from .assignment.services import queues_open_to
from .models import (
    AnswerLabel,
    Assignment,
    LabelerAgreement,
    LabelerPairAgreement,
    Prompt,
    Queue,
    QueueAgreementTotals,
    QueueWork,
    Task,
    TaskKind,
)
from .quality.gold import gold_scores
from .quality.report import LABEL_COLUMNS, QueueAgreement, queue_agreement


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
    and the rest from stored rows: the agreement (labeling.quality.aggregates) and the work, labels per day, median seconds
    and skip rate (QueueWork, counted from every assignment by the worker's draw). A queue whose tasks' counters
    moved since its last draw, or that has none, gets a draw (labeling.quality.aggregates.schedule_intervals)."""
    from .quality.aggregates import schedule_intervals  # here: aggregates imports this module

    queues = list(Queue.objects.all())
    works = {work.queue_id: work for work in QueueWork.objects.all()}
    progress = _progress_counts(now, works=works.values())
    excluded = dict(Prompt.objects.filter(excluded=True).values("queue").annotate(n=Count("pk")).values_list(
        "queue", "n"))  # fmt: skip
    days = dashboard_days(now)
    agreement = {totals.queue_id: _queue_figure(totals) for totals in QueueAgreementTotals.objects.all()}
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


def ranking_labels(**filters) -> pd.DataFrame:
    """Submitted ranks, one row per (prompt, labeler, answer) as queue_agreement takes them, with the queue.

    In prompt order, so that the bootstrap intervals of every page (and of a card's chunks) draw the same.
    """
    rows = (
        AnswerLabel.objects.filter(ranking__assignment__status=Assignment.Status.SUBMITTED, **filters)
        .order_by("answer__prompt_id")
        .values_list("answer__prompt__queue_id", "answer__prompt_id", "ranking__assignment__labeler_id", "answer_id",
                     "rank")
    )  # fmt: skip
    return pd.DataFrame.from_records(rows.iterator(chunk_size=10_000), columns=["queue_id", *LABEL_COLUMNS])


def ranking_label_chunks(queue: Queue, *, chunk_prompts: int = 2_000) -> Iterator[pd.DataFrame]:
    """The queue's ranking_labels, `chunk_prompts` prompts at a time, in prompt order (whole prompts per frame)."""
    prompt_ids = list(Prompt.objects.filter(queue=queue).order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(prompt_ids), chunk_prompts):
        first, last = prompt_ids[start], prompt_ids[min(start + chunk_prompts, len(prompt_ids)) - 1]
        yield ranking_labels(answer__prompt__queue=queue, answer__prompt_id__gte=first, answer__prompt_id__lte=last)


class FilteredLabels(NamedTuple):
    labels: QuerySet  # the submitted labels through every filter
    left_out: list[dict]  # labelers the minimums left out: queue_id, labeler_id, filter, rate


def filtered_labels(model: type[Model], *, queues: Sequence[Queue], filters: dict) -> FilteredLabels:
    """The submitted labels (Demonstration, Ranking or AnswerLabel rows) of the queues through dataset filters.

    `filters` as labeling.datasets.filters.clean_filters checks them: date_from and date_to (the label's
    submission date), labeler_ids, exclude_skipped (prompts someone skipped), exclude_flagged (prompts
    with a flagged answer), min_agreement and min_gold_accuracy (labelers_below: the labeler's labels in
    that queue are left out). Excluded prompts and gold items' labels never pass: an admin took the first
    out of every dataset, and the second measure labelers. `left_out` lists the labelers the minimums
    left out among those whose labels the other filters let through. Pair datasets and exports both read
    their labels here, so a filter means the same in both.
    """
    via = "ranking__" if model is AnswerLabel else ""  # an AnswerLabel reaches its assignment through its ranking
    prompt, labeler = f"{via}assignment__task__prompt", f"{via}assignment__labeler_id"
    labels = model.objects.filter(**{
        f"{via}assignment__status": Assignment.Status.SUBMITTED, f"{prompt}__queue__in": list(queues),
        f"{prompt}__excluded": False, f"{via}assignment__task__gold_groups__isnull": True,
    })  # fmt: skip
    if filters.get("date_from"):
        labels = labels.filter(**{f"{via}created_at__date__gte": filters["date_from"]})
    if filters.get("date_to"):
        labels = labels.filter(**{f"{via}created_at__date__lte": filters["date_to"]})
    if filters.get("labeler_ids"):
        labels = labels.filter(**{f"{labeler}__in": filters["labeler_ids"]})
    if filters.get("exclude_skipped"):
        skipped = Assignment.objects.filter(status=Assignment.Status.SKIPPED).values("task__prompt_id")
        labels = labels.exclude(**{f"{prompt}_id__in": skipped})
    if filters.get("exclude_flagged"):
        flagged = AnswerLabel.objects.exclude(flags=[]).values("answer__prompt_id")
        labels = labels.exclude(**{f"{prompt}_id__in": flagged})
    below = labelers_below(queues=queues, filters=filters).to_dict("records")
    if not below:
        return FilteredLabels(labels, [])
    of_below = reduce(
        operator.or_, (Q(**{f"{prompt}__queue_id": row["queue_id"], labeler: row["labeler_id"]}) for row in below)
    )
    let_through = set(labels.filter(of_below).order_by().values_list(f"{prompt}__queue_id", labeler).distinct())
    left_out = [row for row in below if (row["queue_id"], row["labeler_id"]) in let_through]
    return FilteredLabels(labels.exclude(of_below), left_out)


def labelers_below(*, queues: Sequence[Queue], filters: dict) -> pd.DataFrame:
    """Per queue, the labelers below min_agreement or min_gold_accuracy: queue_id, labeler_id, filter, rate.

    Agreement is pooled over all the queue's submitted rankings (the figure of its agreement page), gold
    accuracy over its gold prompts, whatever the other filters; a labeler with no figure (no prompt shared
    with another labeler, no gold prompt) is kept.
    """
    found = []
    for queue in sorted(queues, key=lambda queue: queue.pk):
        figures = {}
        if "min_agreement" in filters:
            labels = ranking_labels(answer__prompt__queue=queue)
            figures["min_agreement"] = queue_agreement(labels, resamples=0).labelers
        if "min_gold_accuracy" in filters:
            figures["min_gold_accuracy"] = gold_scores(queue=queue)
        for key, scores in figures.items():
            below = scores[(scores["rate"] < filters[key]).fillna(False)]  # NA: no figure, kept
            found.append(pd.DataFrame({
                "queue_id": queue.pk, "labeler_id": below["labeler_id"].astype("int64"), "filter": key,
                "rate": below["rate"].astype(float),
            }))  # fmt: skip
    return pd.concat(found, ignore_index=True) if found else pd.DataFrame()


@dataclass(frozen=True)
class StoredAgreement:
    """A queue's agreement figures as labeling.quality.aggregates stores them: `queue`, `pairs` and `labelers` as in
    AgreementReport (equal to queue_agreement on the queue's labels once the intervals are drawn again), and
    how fresh they are."""

    queue: QueueAgreement
    pairs: pd.DataFrame  # labeler_a, labeler_b, prompts, agree, n, rate
    # labeler_id, rankings, agree, n, rate, rate_ci_low, rate_ci_high, consensus_agree, consensus_n, consensus_rate
    labelers: pd.DataFrame
    # labeler_id, rankings, skips, median_ms (as of the last draw) of every labeler who finished a ranking task
    work: pd.DataFrame
    counted_at: datetime | None  # the last ranking counted
    intervals_at: datetime | None  # when the intervals were drawn; older than counted_at while a draw is due


def stored_agreement(*, queue: Queue) -> StoredAgreement:
    """The queue's stored agreement figures and labeler work, in three indexed queries whatever the queue's size."""
    totals = QueueAgreementTotals.objects.filter(queue=queue).first()
    pairs = pd.DataFrame.from_records(
        LabelerPairAgreement.objects.filter(queue=queue, prompts__gt=0).order_by("labeler_a", "labeler_b")
        .values_list("labeler_a", "labeler_b", "prompts", "agree", "n"),
        columns=["labeler_a", "labeler_b", "prompts", "agree", "n"],
    )  # fmt: skip
    rows = pd.DataFrame.from_records(
        LabelerAgreement.objects.filter(queue=queue).order_by("labeler")
        .values_list("labeler", "rankings", "agree", "n", "ci_low", "ci_high", "consensus_agree", "consensus_n",
                     "skips", "median_ms"),
        columns=["labeler_id", "rankings", "agree", "n", "rate_ci_low", "rate_ci_high", "consensus_agree",
                 "consensus_n", "skips", "median_ms"],
    )  # fmt: skip
    labelers = rows[rows["rankings"] > 0].drop(columns=["skips", "median_ms"]).reset_index(drop=True)
    work = rows[(rows["rankings"] > 0) | (rows["skips"] > 0)][["labeler_id", "rankings", "skips", "median_ms"]]
    pairs["rate"] = _rates(pairs["agree"], pairs["n"])
    labelers["rate"] = _rates(labelers["agree"], labelers["n"])
    labelers["consensus_rate"] = _rates(labelers["consensus_agree"], labelers["consensus_n"])
    return StoredAgreement(
        queue=_queue_figure(totals),
        pairs=pairs,
        labelers=labelers,
        work=work.reset_index(drop=True),
        counted_at=totals.counted_at if totals else None,
        intervals_at=totals.intervals_at if totals else None,
    )


def _rates(agree: pd.Series, n: pd.Series) -> list[float | None]:
    return [a / b if b else None for a, b in zip(agree, n, strict=True)]


def _queue_figure(totals: QueueAgreementTotals | None) -> QueueAgreement:
    if totals is None:  # nothing counted yet
        return QueueAgreement(None, 0, None, None, 0)
    return QueueAgreement(rate=totals.agree / totals.n if totals.n else None, n=totals.n, ci_low=totals.ci_low,
                          ci_high=totals.ci_high, prompts=totals.prompts)


@dataclass(frozen=True)
class QueueAgreementPage:
    report: StoredAgreement
    labelers: list[dict]  # one per labeler: username, tasks, skips, skip rate, median seconds, agreement, gold
    matrix_labels: list[str]
    matrix: list[tuple[str, list[dict | None]]]  # (labeler, cells by labeler pair; None on the diagonal)
    heat_map: dict  # the matrix for the chart: labels, and one cell per ordered pair of distinct labelers
    low_threshold: float | None  # labelers whose agreement is below this are highlighted


# A labeler this far below the queue's pooled agreement is highlighted for review.
LOW_AGREEMENT_GAP = 0.10


def queue_agreement_page(*, queue: Queue) -> QueueAgreementPage:
    """Every figure of a queue's agreement page, from a fixed number of queries whatever the queue's size."""
    report = stored_agreement(queue=queue)
    gold = gold_scores(queue=queue).set_index("labeler_id")
    ids = sorted(set(report.work["labeler_id"]) | set(report.labelers["labeler_id"]) | set(gold.index))
    names = dict(get_user_model().objects.filter(pk__in=ids).values_list("pk", "username"))
    by_labeler = report.labelers.set_index("labeler_id")
    threshold = None if report.queue.rate is None else report.queue.rate - LOW_AGREEMENT_GAP
    work = report.work.set_index("labeler_id")
    per_labeler = pd.DataFrame({"tasks": work["rankings"], "skips": work["skips"], "ms": work["median_ms"],
                                "finished": work["rankings"] + work["skips"]})
    labelers = []
    for labeler_id in ids:
        done = per_labeler.loc[labeler_id] if labeler_id in per_labeler.index else None
        stats = by_labeler.loc[labeler_id] if labeler_id in by_labeler.index else None
        scored = gold.loc[labeler_id] if labeler_id in gold.index else None
        figure = {
            column: None if stats is None or pd.isna(stats[column]) else float(stats[column])
            for column in ("rate", "rate_ci_low", "rate_ci_high", "consensus_rate")
        }
        rate = figure["rate"]
        skips = 0 if done is None else int(done["skips"])
        labelers.append(
            {
                "username": names.get(labeler_id, f"#{labeler_id}"),
                "labeler_id": int(labeler_id),
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
                "gold_rate": None if scored is None or pd.isna(scored["rate"]) else float(scored["rate"]),
                "gold_prompts": 0 if scored is None else int(scored["prompts"]),
                "gold_flagged": scored is not None and bool(scored["flagged"]),
            }
        )
    rated = [labeler_id for labeler_id in ids if labeler_id in by_labeler.index]
    lookup = {(row.labeler_a, row.labeler_b): _cell(row.rate, row.n) for row in report.pairs.itertuples()}
    matrix_labels = [names.get(labeler_id, f"#{labeler_id}") for labeler_id in rated]
    matrix = [
        (names.get(a, f"#{a}"), [lookup.get((min(a, b), max(a, b)), _cell(None, 0)) if a != b else None for b in rated])
        for a in rated
    ]
    heat_map = {
        "labels": matrix_labels,
        "cells": [
            {"x": matrix_labels[col], "y": name, **cell}
            for name, row in matrix
            for col, cell in enumerate(row)
            if cell is not None
        ],
    }
    return QueueAgreementPage(
        report=report,
        labelers=labelers,
        matrix_labels=matrix_labels,
        matrix=matrix,
        heat_map=heat_map,
        low_threshold=threshold,
    )


def _cell(rate, n: int) -> dict:
    """A heat-map cell: red at 0 agreement, yellow at 0.5, green at 1; grey when undefined. `color` for the chart,
    `hue` (a step of 10 degrees) for the table's class: the CSP allows no style attributes."""
    if rate is None or pd.isna(rate):
        return {"rate": None, "n": int(n), "color": "#eef0f3", "hue": None}
    hue = round(float(rate) * 120)
    return {"rate": float(rate), "n": int(n), "color": f"hsl({hue}, 65%, 82%)", "hue": round(hue / 10)}
