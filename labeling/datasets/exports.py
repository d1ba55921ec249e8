"""Dataset exports: demonstrations (sft), rankings per prompt (comparisons) and reward-model pairs (pairs).

An export streams: the prompts of the chosen queues are read a chunk at a time by id (keyset
pagination), their labels (through labeling.datasets.selectors.filtered_labels, the pair datasets' filters)
loaded and turned into rows by plain functions, and the rows written chunk by chunk as JSONL, CSV or
Parquet (an explicit schema). Excluded prompts and gold items' labels are always left out, as in pair
datasets. A dataset card (README.md) goes next to the data file. Each export is an ExportSnapshot, a
versioned record: request_export records one and the worker builds it (build_export). The fields and
the choices behind them: docs/exports.md.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from itertools import groupby
from operator import attrgetter
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.validators import slug_re
from django.db import transaction
from django.db.models import QuerySet
from django.template.loader import render_to_string
from django.utils import timezone

from core import audit
from core.text import csv_cell
from core.versions import create_next_version

from ..models import Answer, AnswerLabel, Demonstration, ExportSnapshot, Prompt, Queue, Ranking
from ..quality.agreement import consensus_ranking
from ..quality.report import pooled_queue_agreement
from ..quality.selectors import ranking_label_chunks
from ..ranking import expand_rankings
from .filters import clean_export_filters, describe_filters
from .selectors import filtered_labels

DATASETS = ("sft", "comparisons", "pairs")
FORMATS = ("jsonl", "csv", "parquet")
# Prompts read per database round; each chunk's rows are written before the next is read.
CHUNK_PROMPTS = 2_000
_ZSTD_LEVEL = 3  # pinned, as in rewardtrain.ml.pairs: the default level could change between pyarrow versions


class PromptRecord(NamedTuple):
    id: int
    text: str
    external_id: str
    queue: str


class AnswerRecord(NamedTuple):
    id: int
    prompt_id: int
    text: str
    model: str


class DemonstrationRecord(NamedTuple):
    prompt_id: int
    text: str
    labeler: str
    created_at: datetime
    instructions_version: int | None


class RankingRecord(NamedTuple):
    id: int
    prompt_id: int
    labeler: str
    groups: list[list[int]]  # tie groups of answer ids, best first
    time_spent_ms: int | None
    instructions_version: int | None
    ratings: dict[int, int | None]  # by answer id
    flags: dict[int, list[str]]  # by answer id, only the flagged answers


class Field(NamedTuple):
    name: str
    type: pa.DataType
    meaning: str


_GROUPS = pa.list_(pa.list_(pa.int64()))
_IDS = [
    Field("prompt_id", pa.int64(), "The prompt's id in this platform."),
    Field("external_id", pa.string(), "The prompt's id in the imported file (empty when it had none)."),
]
_VERSION = Field(
    "instructions_version", pa.int64(), "The queue's instructions version the labeler was shown (null: none recorded)."
)
FIELDS: dict[str, list[Field]] = {
    "sft": [
        Field("prompt", pa.string(), "The prompt text."),
        Field("completion", pa.string(), "The labeler's demonstration: the ideal answer."),
        Field(
            "messages",
            pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())])),
            "The same in chat format: a user message (the prompt), then an assistant message (the completion).",
        ),
        Field("labeler", pa.string(), "The labeler's username."),
        Field("queue", pa.string(), "The queue's name."),
        Field("created_at", pa.timestamp("us", tz="UTC"), "When the demonstration was submitted (UTC)."),
        _VERSION,
        *_IDS,
    ],
    "comparisons": [
        Field("prompt", pa.string(), "The prompt text."),
        Field(
            "answers",
            pa.list_(pa.struct([("id", pa.int64()), ("text", pa.string()), ("model", pa.string())])),
            "The prompt's answers in import order: id, text and the model that wrote it.",
        ),
        Field(
            "rankings",
            pa.list_(pa.struct([
                ("labeler", pa.string()),
                ("groups", _GROUPS),
                ("ratings", pa.list_(pa.struct([("answer_id", pa.int64()), ("rating", pa.int64())]))),
                ("flags", pa.list_(pa.struct([("answer_id", pa.int64()), ("flags", pa.list_(pa.string()))]))),
                ("time_spent_ms", pa.int64()),
                ("instructions_version", pa.int64()),
            ])),  # fmt: skip
            "One per labeler: groups (tie groups of answer ids, best first), ratings (one per answer, 1-7 or null),"
            " flags (one per answer, a list of flag names), time_spent_ms, instructions_version.",
        ),
        Field(
            "consensus", _GROUPS, "The ranked-pairs consensus of the rankings as tie groups; null with one ranking."
        ),
        Field("queue", pa.string(), "The queue's name."),
        *_IDS,
    ],
    "pairs": [
        Field("prompt", pa.string(), "The prompt text."),
        Field("chosen", pa.string(), "The answer ranked higher."),
        Field("rejected", pa.string(), "The answer ranked lower."),
        Field("margin", pa.int64(), "How many tie groups apart the two answers were (1 or more)."),
        Field("rating_diff", pa.float64(), "Rating of chosen minus rating of rejected; null unless both were rated."),
        Field("labeler", pa.string(), "The labeler's username."),
        Field("queue", pa.string(), "The queue's name."),
        _VERSION,
        *_IDS,
        Field("ranking_id", pa.int64(), "The ranking the pair comes from."),
        Field("chosen_id", pa.int64(), "The chosen answer's id."),
        Field("rejected_id", pa.int64(), "The rejected answer's id."),
        Field(
            "dataset_version", pa.string(),
            "The export snapshot the row is part of, as name-vN (e.g. support-pairs-v3); null outside a snapshot.",
        ),
    ],
}
SCHEMAS = {dataset: pa.schema([(field.name, field.type) for field in fields]) for dataset, fields in FIELDS.items()}
# Parquet row groups hold a fixed number of rows, whatever the chunk size, so chunking never changes the
# file; comparison rows hold up to nine answers each, hence fewer of them.
ROW_GROUP_ROWS = {"sft": 10_000, "comparisons": 1_000, "pairs": 20_000}


# --- rows, from plain records ----------------------------------------------------------------------


def sft_row(prompt: PromptRecord, demonstration: DemonstrationRecord) -> dict:
    return {
        "prompt": prompt.text,
        "completion": demonstration.text,
        "messages": [{"role": "user", "content": prompt.text}, {"role": "assistant", "content": demonstration.text}],
        "labeler": demonstration.labeler,
        "queue": prompt.queue,
        "created_at": demonstration.created_at.astimezone(UTC),
        "instructions_version": demonstration.instructions_version,
        "prompt_id": prompt.id,
        "external_id": prompt.external_id,
    }


def comparison_row(prompt: PromptRecord, answers: Sequence[AnswerRecord], rankings: Sequence[RankingRecord]) -> dict:
    """One prompt with its answers, every ranking of it, and their consensus when there are two or more."""
    return {
        "prompt": prompt.text,
        "answers": [{"id": answer.id, "text": answer.text, "model": answer.model} for answer in answers],
        "rankings": [
            {
                "labeler": ranking.labeler,
                "groups": ranking.groups,
                # Lists of entries, not objects keyed by answer id: Arrow and `datasets` would make every id a column.
                "ratings": [{"answer_id": answer.id, "rating": ranking.ratings.get(answer.id)} for answer in answers],
                "flags": [{"answer_id": answer.id, "flags": ranking.flags.get(answer.id, [])} for answer in answers],
                "time_spent_ms": ranking.time_spent_ms,
                "instructions_version": ranking.instructions_version,
            }
            for ranking in rankings
        ],
        "consensus": consensus_ranking([r.groups for r in rankings], "ranked_pairs") if len(rankings) >= 2 else None,
        "queue": prompt.queue,
        "prompt_id": prompt.id,
        "external_id": prompt.external_id,
    }


def pair_table(
    prompts: Mapping[int, PromptRecord], answers: Mapping[int, AnswerRecord], rankings: Sequence[RankingRecord],
    dataset_version: str | None,
) -> pa.Table:
    """The rankings' pairs, expanded by labeling.ranking.expand_rankings; by prompt, then pair order.

    Columns as SCHEMAS["pairs"], but the texts dictionary-encoded: a prompt's text appears in each of its
    ~100 pairs and an answer's in up to 24, so a chunk holds each text once and an index per row; the
    writer decodes a row group at a time (_plain_tables).
    """
    labels = pd.DataFrame.from_records(
        [
            # labeler_id 0 everywhere: expand_rankings only carries it along; names come from the ranking.
            (ranking.id, 0, ranking.prompt_id, answer_id, group, ranking.ratings.get(answer_id))
            for ranking in rankings
            for group, tie in enumerate(ranking.groups)
            for answer_id in tie
        ],
        columns=["ranking_id", "labeler_id", "prompt_id", "answer_id", "group", "rating"],
    ).astype({"ranking_id": "int64", "labeler_id": "int64", "prompt_id": "int64", "answer_id": "int64",
              "group": "int64", "rating": "Int64"})  # fmt: skip
    # expand_rankings orders by ranking; by prompt first, the rows do not depend on how prompts are chunked.
    pairs = expand_rankings(labels).sort_values("prompt_id", kind="stable")
    prompt_ids, ranking_ids = pairs["prompt_id"].to_numpy(), pairs["ranking_id"].to_numpy()
    chosen_ids, rejected_ids = pairs["chosen_id"].to_numpy(), pairs["rejected_id"].to_numpy()
    rating_diff = pairs["rating_diff"].to_numpy()
    by_prompt, by_ranking = _positions(prompts, prompt_ids), _positions({r.id: r for r in rankings}, ranking_ids)
    answer_texts = pa.array([answer.text for answer in answers.values()], pa.string())
    prompt_column = pa.array([prompt.text for prompt in prompts.values()], pa.string())
    columns = {
        "prompt": pa.DictionaryArray.from_arrays(by_prompt, prompt_column),
        "chosen": pa.DictionaryArray.from_arrays(_positions(answers, chosen_ids), answer_texts),
        "rejected": pa.DictionaryArray.from_arrays(_positions(answers, rejected_ids), answer_texts),
        "margin": pa.array(pairs["margin"].to_numpy(), pa.int64()),
        "rating_diff": pa.array(rating_diff, pa.float64(), mask=np.isnan(rating_diff)),
        "labeler": pa.DictionaryArray.from_arrays(by_ranking, pa.array([r.labeler for r in rankings], pa.string())),
        "queue": pa.DictionaryArray.from_arrays(by_prompt, pa.array([p.queue for p in prompts.values()], pa.string())),
        "instructions_version": pa.array([r.instructions_version for r in rankings], pa.int64()).take(by_ranking),
        "prompt_id": pa.array(prompt_ids, pa.int64()),
        "external_id": pa.DictionaryArray.from_arrays(
            by_prompt, pa.array([p.external_id for p in prompts.values()], pa.string())
        ),
        "ranking_id": pa.array(ranking_ids, pa.int64()),
        "chosen_id": pa.array(chosen_ids, pa.int64()),
        "rejected_id": pa.array(rejected_ids, pa.int64()),
        "dataset_version": pa.DictionaryArray.from_arrays(
            pa.array(np.zeros(len(pairs), np.int32)), pa.array([dataset_version], pa.string())
        ),
    }
    return pa.Table.from_pydict(columns)


def _positions(records: Mapping[int, object], ids: np.ndarray) -> pa.Array:
    """Each id's position in `records` (in its order): the indices of a dictionary-encoded column."""
    keys = np.fromiter(records, dtype=np.int64, count=len(records))
    order = np.argsort(keys, kind="stable")
    return pa.array(order[np.searchsorted(keys, ids, sorter=order)].astype(np.int32))


# --- loading, a chunk of prompts at a time ---------------------------------------------------------


def _prompt_chunks(queues: Sequence[Queue], chunk_size: int) -> Iterator[dict[int, PromptRecord]]:
    """The queues' prompts by id, `chunk_size` at a time (keyset pagination); the labels carry the filters."""
    columns = Prompt.objects.filter(queue__in=queues).order_by("pk")
    columns = columns.values_list("pk", "text", "external_id", "queue__name")
    last = 0
    while chunk := [PromptRecord(*row) for row in columns.filter(pk__gt=last)[:chunk_size]]:
        yield {prompt.id: prompt for prompt in chunk}
        last = chunk[-1].id


def _of_prompts(labels: QuerySet, prompt_ids: Iterable[int]) -> QuerySet:
    """The filtered labels (labeling.datasets.selectors.filtered_labels) of these prompts, by prompt."""
    return labels.filter(assignment__task__prompt_id__in=list(prompt_ids)).order_by("assignment__task__prompt_id", "pk")


def _rankings(rankings: QuerySet, prompt_ids: Iterable[int]) -> list[RankingRecord]:
    rows = list(
        _of_prompts(rankings, prompt_ids).values_list(
            "pk", "assignment__task__prompt_id", "assignment__labeler__username", "groups",
            "assignment__time_spent_ms", "assignment__instructions_version",
        )
    )  # fmt: skip
    ratings: dict[int, dict] = defaultdict(dict)
    flags: dict[int, dict] = defaultdict(dict)
    per_answer = AnswerLabel.objects.filter(ranking_id__in=[row[0] for row in rows])
    for ranking_id, answer_id, rating in per_answer.values_list("ranking_id", "answer_id", "rating"):
        ratings[ranking_id][answer_id] = rating
    # Only the flagged answers' flags: decoding an empty JSON list for every answer was a third of an export's time.
    flagged = per_answer.exclude(flags=[]).values_list("ranking_id", "answer_id", "flags")
    for ranking_id, answer_id, answer_flags in flagged:
        if answer_flags:  # not a JSON null
            flags[ranking_id][answer_id] = answer_flags
    return [RankingRecord(*row, ratings[row[0]], flags[row[0]]) for row in rows]


def _answers(prompt_ids: Iterable[int]) -> list[AnswerRecord]:
    rows = Answer.objects.filter(prompt_id__in=list(prompt_ids)).order_by("prompt_id", "position")
    return [AnswerRecord(*row) for row in rows.values_list("pk", "prompt_id", "text", "model")]


def _sft_chunks(chunks: Iterable[dict[int, PromptRecord]], labels: QuerySet, versions: Counter) -> Iterator[list[dict]]:
    for prompts in chunks:
        rows = _of_prompts(labels, prompts).values_list(
            "assignment__task__prompt_id", "text", "assignment__labeler__username", "created_at",
            "assignment__instructions_version",
        )  # fmt: skip
        demonstrations = [DemonstrationRecord(*row) for row in rows]
        versions.update((prompts[d.prompt_id].queue, d.instructions_version) for d in demonstrations)
        yield [sft_row(prompts[d.prompt_id], d) for d in demonstrations]


def _comparison_chunks(
    chunks: Iterable[dict[int, PromptRecord]], labels: QuerySet, versions: Counter
) -> Iterator[list[dict]]:
    for prompts in chunks:
        rankings = _rankings(labels, prompts)
        versions.update((prompts[r.prompt_id].queue, r.instructions_version) for r in rankings)
        answers = {
            prompt_id: list(rows)
            for prompt_id, rows in groupby(_answers({r.prompt_id for r in rankings}), key=attrgetter("prompt_id"))
        }
        yield [
            comparison_row(prompts[prompt_id], answers.get(prompt_id, []), list(of_prompt))
            for prompt_id, of_prompt in groupby(rankings, key=attrgetter("prompt_id"))
        ]


def _pair_chunks(
    chunks: Iterable[dict[int, PromptRecord]], labels: QuerySet, versions: Counter, dataset_version: str | None
) -> Iterator[pa.Table]:
    for prompts in chunks:
        rankings = _rankings(labels, prompts)
        if not rankings:
            continue
        versions.update((prompts[r.prompt_id].queue, r.instructions_version) for r in rankings)
        answers = {answer.id: answer for answer in _answers({r.prompt_id for r in rankings})}
        yield pair_table(prompts, answers, rankings, dataset_version)


# --- writing ---------------------------------------------------------------------------------------


def _plain(value):
    """A JSON or CSV value: timestamps as ISO 8601."""
    return value.isoformat() if isinstance(value, datetime) else value


def _csv_value(value) -> str:
    # Nested fields are JSON text in a cell; every text cell is kept from running as a formula.
    if isinstance(value, (list, dict)):
        value = json.dumps(value, ensure_ascii=False)
    return csv_cell(_plain(value))


def _plain_tables(chunk: list[dict] | pa.Table, schema: pa.Schema, rows: int) -> Iterator[pa.Table]:
    """A chunk as tables of `schema`, `rows` rows at a time: Arrow then holds one row group's texts, not a chunk's
    (a 2,000-prompt pairs chunk is ~200,000 rows, hundreds of MiB of text once decoded)."""
    for start in range(0, len(chunk), rows):
        if isinstance(chunk, pa.Table):
            yield chunk.slice(start, rows).cast(schema)  # decodes the dictionary-encoded texts
        else:
            yield pa.Table.from_pylist(chunk[start : start + rows], schema=schema)


def _row_lists(table: pa.Table, schema: pa.Schema, rows: int) -> Iterator[list[dict]]:
    """A pair_table chunk as rows (dicts in the schema's order), `rows` at a time."""
    for part in _plain_tables(table, schema, rows):
        yield part.to_pylist()


def write_rows(path: Path, fmt: str, dataset: str, chunks: Iterable[list[dict] | pa.Table]) -> int:
    """Write the chunks (lists of rows, or pair_table's tables) as `fmt`; returns how many rows. The bytes do not
    depend on the chunking.

    Each chunk's list is emptied once written: the generator that made it may hold it while it builds
    the next one, and two chunks of rows at once would be the export's peak memory.
    """
    schema = SCHEMAS[dataset]
    group_rows = ROW_GROUP_ROWS[dataset]
    rows = 0
    if fmt == "parquet":
        with pq.ParquetWriter(path, schema, compression="zstd", compression_level=_ZSTD_LEVEL) as writer:
            pending = schema.empty_table()
            for chunk in chunks:
                rows += len(chunk)
                for part in _plain_tables(chunk, schema, group_rows):
                    pending = pa.concat_tables([pending, part])
                    while pending.num_rows >= group_rows:
                        # combine_chunks: pages then split the same way whatever chunks the rows came in.
                        writer.write_table(pending.slice(0, group_rows).combine_chunks(), row_group_size=group_rows)
                        pending = pending.slice(group_rows)
                if isinstance(chunk, list):
                    chunk.clear()
            if pending.num_rows:
                writer.write_table(pending.combine_chunks(), row_group_size=group_rows)
        return rows
    # One encoder for every line: json.dumps with options builds a new encoder per call.
    encode = json.JSONEncoder(ensure_ascii=False, default=_plain).encode
    with path.open("w", encoding="utf-8", newline="") as file:
        if fmt == "csv":
            writer = csv.writer(file)
            writer.writerow(schema.names)
        for chunk in chunks:
            rows += len(chunk)
            for part in [chunk] if isinstance(chunk, list) else _row_lists(chunk, schema, group_rows):
                if fmt == "csv":
                    writer.writerows([_csv_value(row[name]) for name in schema.names] for row in part)
                else:
                    file.writelines(encode(row) + "\n" for row in part)
            if isinstance(chunk, list):
                chunk.clear()
    return rows


# --- the export ------------------------------------------------------------------------------------


class ExportResult(NamedTuple):
    path: Path
    card: Path
    rows: int
    sha256: str
    left_out: list[dict]  # labelers min_agreement / min_gold_accuracy left out (filtered_labels)




def _check(dataset: str, fmt: str, queues: Sequence[Queue]) -> None:
    if dataset not in DATASETS:
        raise ValueError(f"Unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}.")
    if fmt not in FORMATS:
        raise ValueError(f"Unknown format {fmt!r}: choose one of {', '.join(FORMATS)}.")
    if not queues:
        raise ValueError("Choose at least one queue.")


def export_dataset(
    *,
    dataset: str,
    queues: Sequence[Queue],
    fmt: str,
    path: Path,
    filters: dict | None = None,
    chunk_size: int = CHUNK_PROMPTS,
    snapshot: ExportSnapshot | None = None,
) -> ExportResult:
    """Write one dataset of the queues' labels to `path`, and its card README.md beside it.

    `filters`: date_from and date_to (YYYY-MM-DD, on the label's submission date), labeler_ids,
    exclude_skipped (prompts someone skipped), exclude_flagged (prompts with a flagged answer),
    min_agreement and min_gold_accuracy (labelers below them in a queue are left out), checked by
    clean_export_filters and applied by labeling.datasets.selectors.filtered_labels. `snapshot`: the record this
    export is, named by the card and by the pairs' dataset_version. Raises ValueError naming what is wrong.
    """
    _check(dataset, fmt, queues)
    filters = clean_export_filters(filters)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Ranking figures, but a labeler's demonstrations in a queue where they fall below them go too (docs/exports.md).
    labels, left_out = filtered_labels(Demonstration if dataset == "sft" else Ranking, queues=queues, filters=filters)
    prompts = _prompt_chunks(queues, chunk_size)
    versions: Counter = Counter()
    if dataset == "sft":
        chunks = _sft_chunks(prompts, labels, versions)
    elif dataset == "comparisons":
        chunks = _comparison_chunks(prompts, labels, versions)
    else:
        chunks = _pair_chunks(prompts, labels, versions, str(snapshot) if snapshot else None)
    # Written aside, then renamed: the file appears complete or not at all.
    partial = path.with_name(path.name + ".partial")
    try:
        rows = write_rows(partial, fmt, dataset, chunks)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)
    with path.open("rb") as file:
        sha256 = hashlib.file_digest(file, "sha256").hexdigest()
    card = path.with_name("README.md")
    card.write_text(
        dataset_card(dataset=dataset, fmt=fmt, path=path, rows=rows, sha256=sha256, queues=queues, filters=filters,
                     versions=versions, left_out=left_out, snapshot=snapshot),
        encoding="utf-8",
    )  # fmt: skip
    return ExportResult(path, card, rows, sha256, left_out)




def dataset_card(
    *, dataset: str, fmt: str, path: Path, rows: int, sha256: str, queues: Sequence[Queue], filters: dict,
    versions: Counter, left_out: Sequence[dict] = (), snapshot: ExportSnapshot | None = None,
) -> str:
    """A Hugging Face dataset card: YAML front matter naming the data file, then fields, filters and figures.

    The layout is templates/labeling/datasets/card.md; this gathers its figures.
    """
    minimums = "min_agreement" in filters or "min_gold_accuracy" in filters
    names = dict(
        get_user_model().objects.filter(pk__in=[row["labeler_id"] for row in left_out]).values_list("pk", "username")
    ) if minimums and left_out else {}  # fmt: skip
    queue_names = {queue.pk: queue.name for queue in queues}
    agreement_rows = None
    if dataset != "sft":
        agreement_rows = []
        for queue in queues:
            figure = pooled_queue_agreement(ranking_label_chunks(queue))  # bounded memory, whatever the queue
            agreement_rows.append({
                "queue": queue, "n": figure.n, "prompts": figure.prompts,
                "rate": "n/a" if figure.rate is None else f"{figure.rate:.3f}",
                "interval": "n/a" if figure.ci_low is None else f"{figure.ci_low:.3f} to {figure.ci_high:.3f}",
            })  # fmt: skip
    context = {
        "dataset": dataset, "fmt": fmt, "rows": rows, "sha256": sha256, "snapshot": snapshot,
        "title": f"{dataset} export" if snapshot is None else str(snapshot),
        "who": snapshot.created_by.username if snapshot and snapshot.created_by else "`manage.py export`",
        "asked_at": snapshot.created_at.astimezone(UTC).isoformat() if snapshot else None,
        "written_at": timezone.now().astimezone(UTC).isoformat(),
        "path_yaml": json.dumps(path.name),  # a JSON string is a YAML string
        "file_name": path.name, "file_name_repr": repr(path.name),
        "loader": {"jsonl": "json", "csv": "csv", "parquet": "parquet"}[fmt],
        "fields": FIELDS[dataset], "filter_phrases": describe_filters(filters), "minimums": minimums,
        "left_out": [
            {"queue": queue_names[row["queue_id"]], "labeler": names.get(row["labeler_id"], "?"),
             "filter": row["filter"], "rate": f"{row['rate']:.3f}"}
            for row in left_out
        ],
        "queue_rows": [
            {"queue": queue, "made": ", ".join(
                f"v{version}: {count}"
                for (name, version), count in sorted(versions.items(), key=str) if name == queue.name
            )}
            for queue in queues
        ],
        "agreement_rows": agreement_rows,
    }  # fmt: skip
    return render_to_string("labeling/datasets/card.md", context)




# --- snapshots: versioned exports, built by the worker ---------------------------------------------

# The media type of each format, for downloads.
CONTENT_TYPES = {
    "jsonl": "application/jsonl", "csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet",
}  # fmt: skip


def record_export(
    *, name: str, dataset: str, fmt: str, queues: Sequence[Queue], filters: dict | None, user=None
) -> ExportSnapshot:
    """Check everything, then record the next version of `name` (queued). Raises ValueError naming what is wrong."""
    if not isinstance(name, str) or not slug_re.fullmatch(name) or len(name) > 100:
        raise ValueError(f"name must be a slug (letters, digits, - and _; at most 100), not {name!r}.")
    _check(dataset, fmt, queues)
    filters = clean_export_filters(filters)
    with transaction.atomic():
        snapshot = create_next_version(
            ExportSnapshot, name=name, dataset=dataset, format=fmt, filters=filters, created_by=user
        )
        snapshot.queues.set(queues)
    return snapshot


def request_export(
    *, name: str, dataset: str, fmt: str, queues: Sequence[Queue], filters: dict | None, user=None
) -> ExportSnapshot:
    """Record the next version of `name` and have the worker build it once the record is committed."""
    from ..tasks import build_export_task  # here: the tasks module imports this one

    with transaction.atomic():
        snapshot = record_export(name=name, dataset=dataset, fmt=fmt, queues=queues, filters=filters, user=user)
        audit.record(actor=user, action="export.request", target=snapshot, detail={
            "dataset": dataset, "format": fmt, "queues": [queue.pk for queue in queues], "filters": snapshot.filters,
        })  # fmt: skip
        snapshot.send_task(build_export_task)
    return snapshot


def snapshot_path(snapshot: ExportSnapshot) -> Path:
    """Where the worker writes a snapshot: ARTIFACTS_DIR/exports/<name>-v<version>/<name>-v<version>.<ext>."""
    return Path(settings.ARTIFACTS_DIR) / "exports" / str(snapshot) / f"{snapshot}.{snapshot.format}"


def artifact(stored: str) -> Path:
    """The file a snapshot's `file` or `card` names: relative to ARTIFACTS_DIR, or absolute (the command's --out)."""
    return Path(settings.ARTIFACTS_DIR) / stored


def build_export(snapshot: ExportSnapshot, *, path: Path | None = None) -> ExportSnapshot:
    """Write the snapshot's file and card (to `path`, else snapshot_path) and record rows, bytes and SHA-256.

    A failure is recorded on the snapshot (status failed, the error) and raised again.
    """
    started = timezone.now()
    ExportSnapshot.objects.filter(pk=snapshot.pk).update(status=ExportSnapshot.Status.RUNNING, started_at=started)
    try:
        result = export_dataset(
            dataset=snapshot.dataset, queues=list(snapshot.queues.order_by("pk")), fmt=snapshot.format,
            path=path or snapshot_path(snapshot), filters=snapshot.filters, snapshot=snapshot,
        )  # fmt: skip
    except Exception as error:
        ExportSnapshot.fail(snapshot.pk, f"{type(error).__name__}: {error}")
        raise
    root = Path(settings.ARTIFACTS_DIR).resolve()

    def stored(file: Path) -> str:
        file = file.resolve()
        return str(file.relative_to(root)) if file.is_relative_to(root) else str(file)

    snapshot.file, snapshot.card = stored(result.path), stored(result.card)
    snapshot.rows, snapshot.sha256, snapshot.bytes = result.rows, result.sha256, result.path.stat().st_size
    snapshot.status, snapshot.error = ExportSnapshot.Status.SUCCEEDED, ""
    snapshot.started_at, snapshot.finished_at = started, timezone.now()
    snapshot.save()
    return snapshot


# --- retention: old snapshots' files are deleted, their records kept ------------------------------


def prune_exports(*, days: int | None = None, now: datetime | None = None) -> list[ExportSnapshot]:
    """Delete the file and card of every snapshot written more than `days` days ago (EXPORT_RETENTION_DAYS unless
    given; 0 keeps everything) and mark it expired, with when and the days kept; returns those snapshots.

    The record stays (who, what, rows, SHA-256) so that a pairs row's dataset_version still names something,
    and the pages and API say why there is nothing to download. Files outside ARTIFACTS_DIR (`manage.py export
    --out`) are where the operator put them, theirs to keep: those snapshots are left alone. Pair datasets are
    never pruned: training runs and reward models name them. Each snapshot is one transaction, with its audit
    event; a file that cannot be deleted rolls it back, so the next run tries again.
    """
    days = settings.EXPORT_RETENTION_DAYS if days is None else days
    if days <= 0:
        return []
    now = now or timezone.now()
    old = ExportSnapshot.objects.filter(
        status=ExportSnapshot.Status.SUCCEEDED, finished_at__lt=now - timedelta(days=days)
    ).order_by("pk")
    pruned = []
    for snapshot in old:
        if any(Path(stored).is_absolute() for stored in (snapshot.file, snapshot.card) if stored):
            continue
        with transaction.atomic():
            # Locked and checked again: another beat, or the command, may be pruning it too.
            if not ExportSnapshot.objects.select_for_update().filter(
                pk=snapshot.pk, status=ExportSnapshot.Status.SUCCEEDED
            ).exists():
                continue
            snapshot.status, snapshot.expired_at, snapshot.retention_days = ExportSnapshot.Status.EXPIRED, now, days
            snapshot.save(update_fields=["status", "expired_at", "retention_days"])
            audit.record(actor=None, action="export.expire", target=snapshot, detail={
                "retention_days": days, "file": snapshot.file, "bytes": snapshot.bytes, "sha256": snapshot.sha256,
            })  # fmt: skip
            for stored in (snapshot.file, snapshot.card):
                if stored:
                    artifact(stored).unlink(missing_ok=True)
        folder = artifact(snapshot.file).parent
        if folder.parent == Path(settings.ARTIFACTS_DIR) / "exports" and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()  # the snapshot's own directory, now empty
        pruned.append(snapshot)
    return pruned


def expired_message(snapshot: ExportSnapshot) -> str:
    """Why an expired snapshot has no file, for the pages and the API."""
    when = timezone.localtime(snapshot.expired_at).strftime("%Y-%m-%d %H:%M")
    return (f"The file of {snapshot} was removed on {when} by the retention rule (exports are kept"
            f" {snapshot.retention_days} days); export it again for a new copy.")  # fmt: skip
