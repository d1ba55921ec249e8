"""Pairwise reward-model data: train/validation split, the pair frame with its texts, a deterministic Parquet file.

The pairs themselves come from labeling.ranking.expand_rankings (every two answers in different tie
groups of a ranking, in its pair order). Plain Python, numpy, pandas and pyarrow only (no Django): the
Celery task loads rows from the database, expands them and calls `build_pair_frame` and
`write_pair_dataset`. The Parquet file has its own order (see `write_pair_dataset`).
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


class DatasetFile(NamedTuple):
    rows: int
    sha256: str
    bytes: int


# The pair dataset's columns, in order: the Parquet schema. TRL's RewardTrainer reads prompt/chosen/rejected.
PAIR_COLUMNS = [
    "prompt_id", "labeler_id", "ranking_id", "chosen_id", "rejected_id", "margin", "rating_diff",
    "split", "prompt", "chosen", "rejected",
]
# Dtypes of build_pair_frame's and read_pair_dataset's frames. Texts are categoricals: an answer text
# appears in up to K-1 pairs per ranking and a prompt text in up to C(K, 2); copying them per row would
# take gigabytes at InstructGPT scale.
PAIR_DTYPES = {
    "prompt_id": "int64", "labeler_id": "int64", "ranking_id": "int64", "chosen_id": "int64",
    "rejected_id": "int64", "margin": "int16", "rating_diff": "float64",
    "split": "category", "prompt": "category", "chosen": "category", "rejected": "category",
}
TRAIN, VALIDATION = "train", "validation"

_DICTIONARY_COLUMNS = ["split", "prompt", "chosen", "rejected"]
_SORT_KEY = ["prompt_id", "labeler_id", "ranking_id", "chosen_id", "rejected_id"]
# Dictionary types in the writer's schema are only how the data is handed over; with store_schema=False
# the file declares plain UTF-8 strings (dictionary-encoded pages), which every Parquet reader takes.
_FILE_SCHEMA = pa.schema(
    [pa.field(name, pa.int64(), nullable=False) for name in _SORT_KEY]
    + [pa.field("margin", pa.int16(), nullable=False), pa.field("rating_diff", pa.float64())]
    + [pa.field(name, pa.dictionary(pa.int32(), pa.string()), nullable=False) for name in _DICTIONARY_COLUMNS]
)
# Written one row group at a time, each with its own dictionary of the texts it holds: a row group of
# 64Ki pairs holds ~1,800 rankings, so its dictionaries stay a few MB, under the page limit below (past
# that limit Parquet falls back to plain encoding: still correct, just larger).
_ROW_GROUP_ROWS = 65_536
_DICTIONARY_PAGE_LIMIT = 64 << 20
_ZSTD_LEVEL = 3  # pinned: pyarrow's default level could change between versions and so change the bytes



# --- train / validation split ----------------------------------------------------------------------


def _draw(seed: int, prompt_id: int) -> float:
    """A number in [0, 1) fixed by (seed, prompt id) alone, the same on every machine and run."""
    digest = hashlib.blake2b(f"{seed}:{prompt_id}".encode(), digest_size=8).digest()
    # 53 bits: exactly representable as a float, so the result is never rounded up to 1.0.
    return (int.from_bytes(digest, "big") >> 11) / (1 << 53)


def split_by_prompt(
    prompt_ids: np.ndarray | Sequence[int], *, validation_fraction: float, seed: int
) -> np.ndarray:
    """True for rows whose prompt goes to validation; all rows of a prompt go to the same side.

    Each prompt is decided by its own draw from (seed, prompt id), so the split is reproducible and does
    not depend on row order or on which other prompts are present. The one exception keeps both sides
    non-empty when there are at least two prompts: if no draw falls below `validation_fraction`, the
    prompt with the lowest draw goes to validation; if every draw does, the one with the highest goes to
    training. (Only then does the presence of other prompts matter.)
    """
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must lie strictly between 0 and 1, not {validation_fraction}.")
    ids = np.asarray(prompt_ids, dtype=np.int64).ravel()
    unique, row_prompt = np.unique(ids, return_inverse=True)
    # A Python loop over distinct prompts (tens of thousands), not over rows or pairs.
    draws = np.array([_draw(seed, prompt_id) for prompt_id in unique.tolist()], dtype=np.float64)
    validation = draws < validation_fraction
    if len(unique) >= 2:
        if not validation.any():
            validation[draws.argmin()] = True
        if validation.all():
            validation[draws.argmax()] = False
    return validation[row_prompt]


# --- the pair frame --------------------------------------------------------------------------------


class _Texts(NamedTuple):
    ids: pd.Index  # the ids that have a text
    codes: np.ndarray  # per id, the position of its text in dtype.categories
    dtype: pd.CategoricalDtype  # the distinct texts; shared by every column that holds them


def _texts(texts: pd.DataFrame | Mapping[int, str], id_column: str, what: str) -> _Texts:
    """Texts keyed by id (a mapping, or a frame with id_column and text), as codes into distinct texts."""
    if isinstance(texts, pd.DataFrame):
        ids, values = texts[id_column].to_numpy(np.int64), texts["text"].to_numpy(object)
    else:
        ids = np.fromiter(texts.keys(), np.int64, len(texts))
        values = np.fromiter(texts.values(), object, len(texts))
    index = pd.Index(ids)
    if index.has_duplicates:
        raise ValueError(f"{what.capitalize()} {index[index.duplicated()][0]} has two texts.")
    codes, distinct = pd.factorize(values)  # equal texts share one code; a missing text gets -1
    if (codes < 0).any():
        raise ValueError(f"{what.capitalize()} {ids[codes.argmin()]} has no text.")
    # Object categories hold the caller's own str objects: no copy of the texts is made.
    return _Texts(index, codes, pd.CategoricalDtype(pd.Index(distinct, dtype=object)))


def _attach(ids: np.ndarray, texts: _Texts, what: str) -> pd.Categorical:
    """The texts of `ids` as a categorical on the shared dtype: no text is copied per row."""
    position = texts.ids.get_indexer(ids)
    if (position < 0).any():
        raise ValueError(f"No text for {what} {ids[position.argmin()]}.")
    return pd.Categorical.from_codes(texts.codes[position], dtype=texts.dtype)


def build_pair_frame(
    pairs: pd.DataFrame,
    texts: pd.DataFrame | Mapping[int, str],
    prompt_texts: pd.DataFrame | Mapping[int, str],
    *,
    validation_fraction: float,
    seed: int,
) -> pd.DataFrame:
    """The pair dataset of many rankings: their pairs split by prompt, texts attached (PAIR_COLUMNS).

    `pairs` as labeling.ranking.expand_rankings returns them; `texts` maps answer id to answer text (a
    mapping, or a frame with answer_id and text); `prompt_texts` maps prompt id to prompt text (a mapping,
    or prompt_id and text).
    Rows in the module's pair order; dtypes as PAIR_DTYPES.
    """
    validation = split_by_prompt(
        pairs["prompt_id"].to_numpy(), validation_fraction=validation_fraction, seed=seed
    )
    answers = _texts(texts, "answer_id", "answer")
    prompts = _texts(prompt_texts, "prompt_id", "prompt")
    frame = pairs[["prompt_id", "labeler_id", "ranking_id", "chosen_id", "rejected_id", "margin", "rating_diff"]]
    return frame.assign(
        split=pd.Categorical.from_codes(validation.astype(np.int8), categories=[TRAIN, VALIDATION]),
        prompt=_attach(pairs["prompt_id"].to_numpy(), prompts, "prompt"),
        chosen=_attach(pairs["chosen_id"].to_numpy(), answers, "answer"),
        rejected=_attach(pairs["rejected_id"].to_numpy(), answers, "answer"),
    )


# --- the Parquet file ------------------------------------------------------------------------------


def _dictionary_array(values: pd.Series) -> pa.DictionaryArray:
    """Strings or a categorical slice as a dictionary in order of first appearance.

    Rebuilding the dictionary from the rows makes the bytes depend only on the row values, not on the
    categories' order or on unused categories, and keeps each row group's dictionary to its own texts.
    """
    codes, uniques = pd.factorize(values)
    return pa.DictionaryArray.from_arrays(
        pa.array(codes.astype(np.int32)), pa.array(np.asarray(uniques, dtype=object), type=pa.string())
    )


def write_pair_dataset(pairs: pd.DataFrame, path: Path) -> DatasetFile:
    """Write the pair frame (PAIR_COLUMNS) as Parquet; the same pairs always give the same bytes.

    Rows are sorted by (prompt_id, labeler_id, ranking_id, chosen_id, rejected_id), whatever order they
    come in; zstd at a pinned level; no pandas or Arrow schema metadata (which carry versions and dtype
    details); the writer's version is still recorded ("created_by"), so identical bytes hold for one
    pyarrow version. The file appears complete or not at all (written aside, then renamed).
    """
    missing = [column for column in PAIR_COLUMNS if column not in pairs.columns]
    if missing:
        raise ValueError(f"The pairs lack the column(s) {', '.join(missing)}.")
    required = [column for column in PAIR_COLUMNS if column != "rating_diff"]
    empty = [column for column in required if pairs[column].isna().any()]
    if empty:
        raise ValueError(f"The pairs have empty values in {', '.join(empty)}.")
    if not pairs["split"].isin([TRAIN, VALIDATION]).all():
        raise ValueError(f"The split column may only hold {TRAIN!r} and {VALIDATION!r}.")

    order = np.lexsort([pairs[column].to_numpy(np.int64) for column in reversed(_SORT_KEY)])
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    with pq.ParquetWriter(
        partial,
        _FILE_SCHEMA,
        compression="zstd",
        compression_level=_ZSTD_LEVEL,
        use_dictionary=_DICTIONARY_COLUMNS,
        dictionary_pagesize_limit=_DICTIONARY_PAGE_LIMIT,
        store_schema=False,
    ) as writer:
        # A loop over row groups (tens), each converted in bulk.
        for start in range(0, len(order), _ROW_GROUP_ROWS):
            rows = pairs.take(order[start : start + _ROW_GROUP_ROWS])
            columns = [pa.array(rows[name].to_numpy(np.int64)) for name in _SORT_KEY]
            columns.append(pa.array(rows["margin"].to_numpy(), type=pa.int16()))
            columns.append(pa.array(rows["rating_diff"].to_numpy(np.float64, na_value=np.nan), from_pandas=True))
            columns.extend(_dictionary_array(rows[name]) for name in _DICTIONARY_COLUMNS)
            writer.write_table(pa.Table.from_arrays(columns, schema=_FILE_SCHEMA), row_group_size=_ROW_GROUP_ROWS)
    os.replace(partial, path)

    with path.open("rb") as file:
        digest = hashlib.file_digest(file, "sha256")  # streams in blocks; the file is never read whole
    return DatasetFile(rows=len(order), sha256=digest.hexdigest(), bytes=path.stat().st_size)


def read_pair_dataset(path: Path) -> pd.DataFrame:
    """A pair file as a frame with PAIR_COLUMNS and PAIR_DTYPES (texts as categoricals), in file order."""
    table = pq.read_table(path, columns=PAIR_COLUMNS, read_dictionary=_DICTIONARY_COLUMNS)
    frame = table.to_pandas().astype(PAIR_DTYPES)
    # The file's dictionaries follow first appearance; give split the same categories as build_pair_frame.
    frame["split"] = frame["split"].cat.set_categories([TRAIN, VALIDATION])
    return frame
