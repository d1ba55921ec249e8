"""Pair datasets: asking for one (a versioned record) and building it (in the worker).

Building loads the submitted rankings of the chosen queues through the filters (excluded and gold
prompts never pass), optionally replaces each prompt's rankings by their consensus, hands plain frames
to labeling.ranking (pair expansion) and rewardtrain.ml.pairs (split by prompt, Parquet), and records the
file's rows and SHA-256 and what the filters left out (build_notes).
"""
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core import audit
from core.jobs import JobStatus
from core.versions import create_next_version
from labeling.datasets.filters import clean_filters
from labeling.datasets.selectors import filtered_labels
from labeling.models import Answer, AnswerLabel, Prompt, Queue
from labeling.quality.agreement import consensus_ranking
from labeling.ranking import expand_rankings

from .ml import pairs
from .models import PairDataset

# The labeler_id of consensus rows: user ids start at 1, so 0 names no labeler.
CONSENSUS_LABELER = 0


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
        dataset = create_next_version(
            PairDataset,
            name=name,
            filters=clean_filters(filters),
            validation_fraction=validation_fraction,
            seed=seed,
            created_by=user,
        )
        dataset.queues.set(queues)
        audit.record(actor=user, action="pair_dataset.request", target=dataset, detail={
            "queues": [queue.pk for queue in queues], "filters": dataset.filters,
            "validation_fraction": validation_fraction, "seed": seed,
        })  # fmt: skip
        dataset.send_task(build_pair_dataset_task)
    return dataset


class Rankings(NamedTuple):
    labels: pd.DataFrame  # one row per ranking x answer, as labeling.ranking.expand_rankings takes
    answer_texts: dict[int, str]
    prompt_texts: dict[int, str]
    notes: dict  # what the filters left out, for PairDataset.build_notes


def load_rankings(dataset: PairDataset) -> Rankings:
    """The dataset's ranking labels after its filters (labeling.datasets.selectors.filtered_labels), and their texts.

    Excluded prompts and gold prompts are always left out: an admin took the first out of every dataset,
    and the second are for measuring labelers, not for training.
    """
    filters = dataset.filters
    labels, left_out = filtered_labels(AnswerLabel, queues=list(dataset.queues.all()), filters=filters)
    rows = labels.values_list(
        "ranking_id", "ranking__assignment__labeler_id", "answer__prompt_id", "answer_id", "rank", "rating"
    )
    columns = ["ranking_id", "labeler_id", "prompt_id", "answer_id", "rank", "rating"]
    frame = pd.DataFrame.from_records(rows.iterator(chunk_size=10_000), columns=columns)
    notes: dict = {"left_out_labelers": left_out} if left_out else {}
    if frame.empty:
        return Rankings(frame, {}, {}, notes)
    if filters.get("source") == "consensus":
        prompts = frame["prompt_id"].nunique()
        frame = consensus_labels(frame, min_rankings=filters["min_rankings"])
        notes["prompts_with_too_few_rankings"] = prompts - frame["prompt_id"].nunique()
        if frame.empty and prompts:
            raise ValueError(f"No prompt has the {filters['min_rankings']} rankings min_rankings asks for.")
    else:
        # Stored ranks are competition ranks (1, 2, 2, 4); the tie-group index is their dense rank.
        frame["group"] = frame.groupby("ranking_id")["rank"].rank(method="dense").astype("int64") - 1
        frame = frame.drop(columns="rank").astype({"rating": "Int64"})
    if frame.empty:
        return Rankings(frame, {}, {}, notes)
    answer_ids = frame["answer_id"].unique().tolist()
    prompt_ids = frame["prompt_id"].unique().tolist()
    answer_texts = dict(Answer.objects.filter(pk__in=answer_ids).values_list("pk", "text").iterator(chunk_size=10_000))
    prompt_texts = dict(Prompt.objects.filter(pk__in=prompt_ids).values_list("pk", "text").iterator(chunk_size=10_000))
    return Rankings(frame, answer_texts, prompt_texts, notes)


def consensus_labels(labels: pd.DataFrame, *, min_rankings: int) -> pd.DataFrame:
    """One ranking per prompt ranked by at least `min_rankings` labelers: the consensus of their rankings.

    `labels`: ranking_id, labeler_id, prompt_id, answer_id and rank (competition ranks, 1 is best). The
    consensus is labeling.quality.agreement.consensus_ranking's ranked pairs; its rows have labeler_id
    CONSENSUS_LABELER, ranking_id minus the prompt id (no Ranking row has it) and no rating. Plain pandas.
    """
    counts = labels.groupby("prompt_id")["ranking_id"].nunique()
    kept = labels[labels["prompt_id"].isin(counts.index[counts >= min_rankings])]
    ordered = kept.sort_values(["prompt_id", "ranking_id", "rank", "answer_id"])
    columns = ordered[["prompt_id", "ranking_id", "rank", "answer_id"]].to_numpy("int64").tolist()
    prompt_ids, groups, answer_ids = [], [], []
    # A Python loop over prompts (tens of thousands): each ranking's rows, split where the rank changes.
    for prompt_id, prompt_rows in groupby(columns, key=itemgetter(0)):
        rankings = [
            [[row[3] for row in tie] for _, tie in groupby(ranking_rows, key=itemgetter(2))]
            for _, ranking_rows in groupby(prompt_rows, key=itemgetter(1))
        ]
        for index, tie in enumerate(consensus_ranking(rankings, method="ranked_pairs")):
            prompt_ids.extend([prompt_id] * len(tie))
            groups.extend([index] * len(tie))
            answer_ids.extend(tie)
    prompt = np.array(prompt_ids, dtype=np.int64)
    return pd.DataFrame({
        "ranking_id": -prompt, "labeler_id": np.full(len(prompt), CONSENSUS_LABELER, dtype=np.int64),
        "prompt_id": prompt, "answer_id": np.array(answer_ids, dtype=np.int64),
        "rating": pd.array([pd.NA] * len(prompt), dtype="Int64"), "group": np.array(groups, dtype=np.int64),
    })  # fmt: skip


def dataset_path(dataset: PairDataset) -> Path:
    return Path(settings.ARTIFACTS_DIR) / "datasets" / f"{dataset.name}-v{dataset.version}.parquet"


def build_pair_dataset(dataset: PairDataset) -> PairDataset:
    """Expand, split and write the dataset's pairs; record counts and checksum on the record."""
    PairDataset.objects.filter(pk=dataset.pk).update(status=JobStatus.RUNNING)
    labels, answer_texts, prompt_texts, dataset.build_notes = load_rankings(dataset)
    if labels.empty:
        raise ValueError("No submitted rankings match these queues and filters.")
    frame = pairs.build_pair_frame(
        expand_rankings(labels), answer_texts, prompt_texts,
        validation_fraction=dataset.validation_fraction, seed=dataset.seed,
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
