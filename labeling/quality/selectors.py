"""Reads for the quality pages and their users: submitted ranks as label frames (ranking_labels), the stored
agreement figures (labeling.quality.aggregates) and everything the agreement page shows."""
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from django.contrib.auth import get_user_model

from ..models import (
    AnswerLabel,
    Assignment,
    LabelerAgreement,
    LabelerPairAgreement,
    Prompt,
    Queue,
    QueueAgreementTotals,
)
from .gold import gold_scores
from .report import LABEL_COLUMNS, QueueAgreement


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
        queue=stored_queue_figure(totals),
        pairs=pairs,
        labelers=labelers,
        work=work.reset_index(drop=True),
        counted_at=totals.counted_at if totals else None,
        intervals_at=totals.intervals_at if totals else None,
    )


def _rates(agree: pd.Series, n: pd.Series) -> list[float | None]:
    return [a / b if b else None for a, b in zip(agree, n, strict=True)]


def stored_queue_figure(totals: QueueAgreementTotals | None) -> QueueAgreement:
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
