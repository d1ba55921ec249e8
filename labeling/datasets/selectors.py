"""The submitted labels that pair datasets and exports take, through their filters (filtered_labels)."""
import operator
from collections.abc import Sequence
from functools import reduce
from typing import NamedTuple

import pandas as pd
from django.db.models import Model, Q, QuerySet

from ..models import AnswerLabel, Assignment, Queue
from ..quality.gold import gold_scores
from ..quality.report import queue_agreement
from ..quality.selectors import ranking_labels


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
