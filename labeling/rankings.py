"""Checking and reading a submitted ranking. Plain functions on plain data (no Django).

A ranking is a list of tie groups of answer ids, best first: [[3], [5, 7], [4]].
The clean_* functions are total: whatever JSON value they are given (any shape, any size of number,
any text), they return clean data or raise RankingError with a short message for the labeler.
"""
from collections.abc import Iterable, Mapping

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


def ranks_by_answer(groups: list[list[int]]) -> dict[int, int]:
    """Competition ranks (1 is best; tied answers share a rank; the next rank skips): 1, 2, 2, 4."""
    ranks: dict[int, int] = {}
    placed = 0
    for group in groups:
        for answer_id in group:
            ranks[answer_id] = placed + 1
        placed += len(group)
    return ranks


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
