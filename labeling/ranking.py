"""Rankings as tie groups: checking a submitted one, its ranks, and its pairs. Plain Python, numpy and pandas.

A ranking is a list of tie groups of answer ids, best first: [[3], [5, 7], [4]]. This module is the one
place that reads them; every other module (assignment, review, gold, agreement, exports, the pair
datasets of rewardtrain) calls it.

- The clean_* functions are total: whatever JSON value they are given (any shape, any size of number,
  any text), they return clean data or raise RankingError with a short message for the labeler.
- Ranks are competition ranks (1, 2, 2, 4): tied answers share a rank and the next rank skips.
- Pairs: every two answers in different tie groups make one pair (chosen = the better one), as in
  InstructGPT, where a ranking of K answers gives up to C(K, 2) comparisons; tied answers give none.
  Pair order, everywhere: by ranking (ranking_id), then chosen tie group, chosen id, rejected tie group,
  rejected id. Ids inside a tie group are taken in ascending order, because the order in which a
  labeler lists tied answers means nothing. These pairs are the input of reward-model training
  (rewardtrain.ml.pairs splits them and writes the Parquet file).
"""
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import NamedTuple, TypeVar

import numpy as np
import pandas as pd

Id = TypeVar("Id", bound=Hashable)

# An answer id is a bigint; no id has more digits, and int() refuses strings of more than 4,300.
MAX_ID_DIGITS = 19


class RankingError(ValueError):
    """The submitted ranking, ratings or flags are not acceptable; the message says why."""


def _whole_number(value: object) -> int | None:
    """`value` as a whole number >= 0 of at most MAX_ID_DIGITS digits, given as an int or in decimal digits;
    None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < 10**MAX_ID_DIGITS else None
    # isdecimal, not isdigit: "²" is a digit that int() refuses.
    if isinstance(value, str) and value.isdecimal() and len(value) <= MAX_ID_DIGITS:
        return int(value)
    return None


def _shown(value: object) -> str:
    """`value` for a message: short, whatever its size or shape (a repr could be megabytes, or recurse)."""
    if isinstance(value, (list, dict)):
        return "a list" if isinstance(value, list) else "an object"
    if isinstance(value, int) and not isinstance(value, bool) and not -(10**30) < value < 10**30:
        return "a very large number"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def clean_groups(groups: object, answer_ids: Iterable[int]) -> list[list[int]]:
    """Return `groups` as lists of ints if they place every answer exactly once, else raise."""
    expected = set(answer_ids)
    if not isinstance(groups, list) or not all(isinstance(g, list) for g in groups):
        raise RankingError("The ranking must be a list of groups of answer ids.")
    cleaned: list[list[int]] = []
    seen: set[int] = set()
    for group in groups:
        if not group:
            raise RankingError("The ranking has an empty group.")
        ids = []
        for item in group:
            answer_id = _whole_number(item)
            if answer_id is None:
                raise RankingError(f"{_shown(item)} is not an answer id.")
            if answer_id not in expected:
                raise RankingError(f"Answer {answer_id} does not belong to this prompt.")
            if answer_id in seen:
                raise RankingError(f"Answer {answer_id} is placed twice.")
            seen.add(answer_id)
            ids.append(answer_id)
        cleaned.append(ids)
    missing = expected - seen
    if missing:
        raise RankingError(f"Place every answer before submitting ({len(missing)} not placed yet).")
    return cleaned


def ranks_by_answer(groups: Iterable[Iterable[Id]]) -> dict[Id, int]:
    """Competition ranks (1 is best; tied answers share a rank; the next rank skips): 1, 2, 2, 4."""
    ranks: dict = {}
    placed = 0
    for group in groups:
        group = list(group)
        for answer_id in group:
            ranks[answer_id] = placed + 1
        placed += len(group)
    return ranks


def ranks_from_groups(groups: Sequence[Iterable[Id]], answer_ids: Sequence[Id]) -> list[int]:
    """Competition ranks (1, 2, 2, 4) of `answer_ids` from tie groups, best first, as a vector aligned
    with `answer_ids` (the form the agreement measures take).

    Raises ValueError when an answer is missing from the groups, placed twice, or not in `answer_ids`.
    """
    expected = set(answer_ids)
    groups = [list(group) for group in groups]
    seen: set[Id] = set()
    for group in groups:
        for answer in group:
            if answer not in expected:
                raise ValueError(f"Answer {answer!r} is not one of the answers being ranked.")
            if answer in seen:
                raise ValueError(f"Answer {answer!r} is placed twice.")
            seen.add(answer)
    missing = [answer for answer in answer_ids if answer not in seen]
    if missing:
        raise ValueError(f"Answers missing from the ranking: {missing!r}.")
    ranks = ranks_by_answer(groups)
    return [ranks[answer] for answer in answer_ids]


def clean_ratings(ratings: Mapping, answer_ids: Iterable[int]) -> dict[int, int | None]:
    """Ratings 1-7 keyed by answer id; a missing or empty rating is None."""
    expected = set(answer_ids)
    cleaned: dict[int, int | None] = dict.fromkeys(expected)
    if not isinstance(ratings or {}, Mapping):
        raise RankingError("Ratings must map answer ids to ratings.")
    for key, value in (ratings or {}).items():
        answer_id = _whole_number(key)
        if answer_id not in expected:
            raise RankingError(f"A rating names answer {_shown(key)}, which is not an answer of this prompt.")
        if value is None or value == "":
            continue
        rating = _whole_number(value)
        if rating is None or not 1 <= rating <= 7:
            raise RankingError(f"Ratings go from 1 to 7, not {_shown(value)}.")
        cleaned[answer_id] = rating
    return cleaned


def clean_flags(flags: Mapping, answer_ids: Iterable[int], known_flags: Iterable[str]) -> dict[int, list[str]]:
    """Flag codes keyed by answer id, each list sorted and without repeats."""
    expected = set(answer_ids)
    known = set(known_flags)
    cleaned: dict[int, list[str]] = {answer_id: [] for answer_id in expected}
    if not isinstance(flags or {}, Mapping):
        raise RankingError("Flags must map answer ids to lists of flags.")
    for key, values in (flags or {}).items():
        answer_id = _whole_number(key)
        if answer_id not in expected:
            raise RankingError(f"A flag names answer {_shown(key)}, which is not an answer of this prompt.")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise RankingError("Flags must be given as a list of flag codes per answer.")
        unknown = [v for v in values if v not in known]
        if unknown:
            raise RankingError(f"Unknown flag {_shown(unknown[0])}.")
        cleaned[answer_id] = sorted(set(values))
    return cleaned


# --- pairs ---------------------------------------------------------------------------------------

class Pair(NamedTuple):
    """One comparison from one ranking: `chosen` was ranked above `rejected`."""

    chosen: int
    rejected: int
    margin: int  # how many tie groups apart (>= 1)
    rating_diff: float | None  # rating of chosen minus rating of rejected; None unless both were rated

# --- pairs of one ranking -----------------------------------------------------------------------------------


def expand_ranking(
    groups: Sequence[Sequence[int]], ratings: Mapping[int, int | None] | None = None
) -> list[Pair]:
    """Every pair of answers in different tie groups of one ranking, better answer first.

    A full ranking of K answers gives K*(K-1)/2 pairs; tied answers give none. Raises ValueError for a
    ranking with no groups, an empty group, something that is not an answer id, or an id placed twice.
    """
    if isinstance(groups, (str, bytes)) or not isinstance(groups, Sequence):
        raise ValueError("A ranking must be a sequence of tie groups of answer ids.")
    if not groups:
        raise ValueError("The ranking has no tie groups.")
    seen: set[int] = set()
    sorted_groups: list[list[int]] = []
    for index, group in enumerate(groups):
        if isinstance(group, (str, bytes)) or not isinstance(group, Sequence):
            raise ValueError(f"Tie group {index} is not a sequence of answer ids.")
        if not group:
            raise ValueError(f"Tie group {index} is empty.")
        for answer_id in group:
            if isinstance(answer_id, bool) or not isinstance(answer_id, (int, np.integer)):
                raise ValueError(f"{answer_id!r} in tie group {index} is not an answer id.")
            if answer_id in seen:
                raise ValueError(f"Answer {answer_id} is placed twice in the ranking.")
            seen.add(answer_id)
        sorted_groups.append(sorted(int(answer_id) for answer_id in group))

    ratings = ratings or {}
    pairs: list[Pair] = []
    for better, chosen_group in enumerate(sorted_groups):
        for chosen in chosen_group:
            for worse in range(better + 1, len(sorted_groups)):
                for rejected in sorted_groups[worse]:
                    chosen_rating, rejected_rating = ratings.get(chosen), ratings.get(rejected)
                    diff = None if chosen_rating is None or rejected_rating is None else float(
                        chosen_rating - rejected_rating
                    )
                    pairs.append(Pair(chosen, rejected, worse - better, diff))
    return pairs


# --- pairs of many rankings at once -------------------------------------------------------------------------

_LABEL_COLUMNS = ["ranking_id", "labeler_id", "prompt_id", "answer_id", "group"]


def expand_rankings(labels: pd.DataFrame) -> pd.DataFrame:
    """The pairs of many rankings, vectorised; row for row what `expand_ranking` gives per ranking.

    `labels` has one row per (ranking, answer): ranking_id, labeler_id, prompt_id, answer_id, group (the
    0-based tie-group index, 0 = best, no gaps) and optionally rating (nullable Int). Returns ranking_id,
    labeler_id, prompt_id, chosen_id, rejected_id (int64), margin (int16) and rating_diff (float64, NaN
    unless both answers were rated), in the module's pair order (rankings by ranking_id).
    """
    missing = [column for column in _LABEL_COLUMNS if column not in labels.columns]
    if missing:
        raise ValueError(f"The labels lack the column(s) {', '.join(missing)}.")
    if labels[_LABEL_COLUMNS].isna().any().any():
        raise ValueError("The labels have empty ids or tie groups.")
    twice = labels.duplicated(["ranking_id", "answer_id"])
    if twice.any():
        row = labels[twice].iloc[0]
        raise ValueError(f"Answer {row['answer_id']} is placed twice in ranking {row['ranking_id']}.")

    # Sorted by (ranking, group, answer), a ranking is one block of rows, and its pairs are exactly the
    # row pairs i < j of the block whose groups differ, in the module's pair order.
    ordered = labels.sort_values(["ranking_id", "group", "answer_id"], kind="stable")
    ranking = ordered["ranking_id"].to_numpy(np.int64)
    group = ordered["group"].to_numpy(np.int64)
    answer = ordered["answer_id"].to_numpy(np.int64)
    labeler = ordered["labeler_id"].to_numpy(np.int64)
    prompt = ordered["prompt_id"].to_numpy(np.int64)
    if "rating" in ordered.columns:
        rating = ordered["rating"].to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        rating = np.full(len(ordered), np.nan)

    starts_block = np.ones(len(ordered), dtype=bool)
    starts_block[1:] = ranking[1:] != ranking[:-1]
    starts = np.flatnonzero(starts_block)
    sizes = np.diff(np.append(starts, len(ordered)))
    # Tie groups must count 0, 1, 2, ... in each ranking, so that margins mean rank distance.
    step = np.diff(group, prepend=0)
    bad = (starts_block & (group != 0)) | (~starts_block & (step != 0) & (step != 1))
    if bad.any():
        raise ValueError(f"Ranking {ranking[bad.argmax()]} has tie groups that do not count 0, 1, 2, ...")
    same_ranking = ~starts_block
    if ((labeler[1:] != labeler[:-1]) | (prompt[1:] != prompt[:-1]))[same_ranking[1:]].any():
        raise ValueError("A ranking's rows disagree about its labeler or prompt.")
    if len(sizes) and sizes.max() > np.iinfo(np.int16).max:
        raise ValueError("A ranking has more answers than an int16 margin can count.")

    # One upper-triangle template per ranking size: the loop runs over distinct sizes (2..9), not pairs.
    chosen_parts, rejected_parts = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    for size in np.unique(sizes):
        first, second = np.triu_indices(size, k=1)
        block = starts[sizes == size][:, None]
        chosen_rows, rejected_rows = (block + first).ravel(), (block + second).ravel()
        differ = group[chosen_rows] != group[rejected_rows]
        chosen_parts.append(chosen_rows[differ])
        rejected_parts.append(rejected_rows[differ])
    chosen_rows, rejected_rows = np.concatenate(chosen_parts), np.concatenate(rejected_parts)
    # Rows are in pair order already, so ordering by (chosen row, rejected row) is the pair order.
    order = np.lexsort((rejected_rows, chosen_rows))
    chosen_rows, rejected_rows = chosen_rows[order], rejected_rows[order]

    return pd.DataFrame(
        {
            "ranking_id": ranking[chosen_rows],
            "labeler_id": labeler[chosen_rows],
            "prompt_id": prompt[chosen_rows],
            "chosen_id": answer[chosen_rows],
            "rejected_id": answer[rejected_rows],
            "margin": (group[rejected_rows] - group[chosen_rows]).astype(np.int16),
            "rating_diff": rating[chosen_rows] - rating[rejected_rows],
        }
    )

