"""Pair datasets: asking for one (a versioned record) and building it (in the worker).

Building loads the submitted rankings of the chosen queues through the filters, hands plain frames
to rewardtrain.pairs (expansion, split by prompt, Parquet), and records the file's rows and SHA-256.
"""
from datetime import date
from pathlib import Path

import pandas as pd
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from annotate.celery import delay_on_commit
from labeling.models import Answer, AnswerLabel, Assignment, Prompt, Queue

from . import pairs
from .models import JobStatus, PairDataset

FILTER_KEYS = {"date_from", "date_to", "labeler_ids", "exclude_skipped", "exclude_flagged"}


def clean_filters(filters: dict) -> dict:
    """Keep known filters with checked values; raise ValueError naming a bad one."""
    unknown = set(filters) - FILTER_KEYS
    if unknown:
        raise ValueError(f"Unknown filter {sorted(unknown)[0]!r}.")
    cleaned: dict = {}
    for key in ("date_from", "date_to"):
        if filters.get(key):
            cleaned[key] = date.fromisoformat(str(filters[key])).isoformat()
    if filters.get("labeler_ids"):
        cleaned["labeler_ids"] = sorted({int(pk) for pk in filters["labeler_ids"]})
    for key in ("exclude_skipped", "exclude_flagged"):
        cleaned[key] = bool(filters.get(key, False))
    return cleaned


def request_pair_dataset(
    *,
    name: str,
    queues: list[Queue],
    filters: dict,
    validation_fraction: float = 0.1,
    seed: int = 0,
    user=None,
) -> PairDataset:
    """Record the next version of `name` and have the worker build it once the record is committed."""
    from .tasks import build_pair_dataset_task  # here: the tasks module imports this one

    if not queues:
        raise ValueError("Choose at least one queue.")
    with transaction.atomic():
        # Lock the name's versions so two requests cannot take the same number.
        latest = (
            PairDataset.objects.select_for_update().filter(name=name).aggregate(v=Max("version"))["v"] or 0
        )
        dataset = PairDataset.objects.create(
            name=name,
            version=latest + 1,
            filters=clean_filters(filters),
            validation_fraction=validation_fraction,
            seed=seed,
            created_by=user,
        )
        dataset.queues.set(queues)
        delay_on_commit(
            build_pair_dataset_task,
            dataset.pk,
            on_failure=lambda reason: PairDataset.objects.filter(pk=dataset.pk).update(
                status=JobStatus.FAILED, error=reason, finished_at=timezone.now()
            ),
        )
    return dataset


def load_rankings(dataset: PairDataset) -> tuple[pd.DataFrame, dict[int, str], dict[int, str]]:
    """The dataset's ranking labels (one row per ranking x answer) and the texts they refer to."""
    labels = AnswerLabel.objects.filter(
        ranking__assignment__status=Assignment.Status.SUBMITTED,
        ranking__assignment__task__prompt__queue__in=dataset.queues.all(),
    )
    filters = dataset.filters
    if filters.get("date_from"):
        labels = labels.filter(ranking__created_at__date__gte=filters["date_from"])
    if filters.get("date_to"):
        labels = labels.filter(ranking__created_at__date__lte=filters["date_to"])
    if filters.get("labeler_ids"):
        labels = labels.filter(ranking__assignment__labeler_id__in=filters["labeler_ids"])
    if filters.get("exclude_skipped"):
        skipped = Assignment.objects.filter(status=Assignment.Status.SKIPPED).values("task__prompt_id")
        labels = labels.exclude(answer__prompt_id__in=skipped)
    if filters.get("exclude_flagged"):
        flagged = AnswerLabel.objects.exclude(flags=[]).values("answer__prompt_id")
        labels = labels.exclude(answer__prompt_id__in=flagged)
    rows = labels.values_list(
        "ranking_id", "ranking__assignment__labeler_id", "answer__prompt_id", "answer_id", "rank", "rating"
    )
    frame = pd.DataFrame.from_records(
        rows.iterator(chunk_size=10_000),
        columns=["ranking_id", "labeler_id", "prompt_id", "answer_id", "rank", "rating"],
    )
    if frame.empty:
        return frame, {}, {}
    # Stored ranks are competition ranks (1, 2, 2, 4); the tie-group index is their dense rank.
    frame["group"] = frame.groupby("ranking_id")["rank"].rank(method="dense").astype("int64") - 1
    frame = frame.drop(columns="rank").astype({"rating": "Int64"})
    answer_ids = frame["answer_id"].unique().tolist()
    prompt_ids = frame["prompt_id"].unique().tolist()
    answer_texts = dict(Answer.objects.filter(pk__in=answer_ids).values_list("pk", "text").iterator(chunk_size=10_000))
    prompt_texts = dict(Prompt.objects.filter(pk__in=prompt_ids).values_list("pk", "text").iterator(chunk_size=10_000))
    return frame, answer_texts, prompt_texts


def dataset_path(dataset: PairDataset) -> Path:
    return Path(settings.ARTIFACTS_DIR) / "datasets" / f"{dataset.name}-v{dataset.version}.parquet"


def build_pair_dataset(dataset: PairDataset) -> PairDataset:
    """Expand, split and write the dataset's pairs; record counts and checksum on the record."""
    PairDataset.objects.filter(pk=dataset.pk).update(status=JobStatus.RUNNING)
    labels, answer_texts, prompt_texts = load_rankings(dataset)
    if labels.empty:
        raise ValueError("No submitted rankings match these queues and filters.")
    frame = pairs.build_pair_frame(
        labels, answer_texts, prompt_texts, validation_fraction=dataset.validation_fraction, seed=dataset.seed
    )
    if frame.empty:
        raise ValueError("The matching rankings give no pairs (every answer tied).")
    path = dataset_path(dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = pairs.write_pair_dataset(frame, path)
    dataset.file = str(path.relative_to(settings.ARTIFACTS_DIR))
    dataset.rows, dataset.sha256 = written.rows, written.sha256
    dataset.train_rows = int((frame["split"] == "train").sum())
    dataset.validation_rows = dataset.rows - dataset.train_rows
    dataset.prompts = int(frame["prompt_id"].nunique())
    dataset.rankings = int(frame["ranking_id"].nunique())
    dataset.status, dataset.error, dataset.finished_at = JobStatus.SUCCEEDED, "", timezone.now()
    dataset.save()
    return dataset
