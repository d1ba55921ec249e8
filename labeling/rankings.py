"""Checking and reading a submitted ranking. Plain functions on plain data (no Django).

A ranking is a list of tie groups of answer ids, best first: [[3], [5, 7], [4]].
"""
from collections.abc import Iterable, Mapping


class RankingError(ValueError):
    """The submitted ranking, ratings or flags are not acceptable; the message says why."""


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
            # isdecimal, not isdigit: "²" is a digit that int() refuses.
            if isinstance(item, bool) or not isinstance(item, (int, str)) or not str(item).isdecimal():
                raise RankingError(f"{item!r} is not an answer id.")
            answer_id = int(item)
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
        answer_id = int(key) if str(key).isdecimal() else None
        if answer_id not in expected:
            raise RankingError(f"A rating names answer {key!r}, which is not an answer of this prompt.")
        if value in (None, ""):
            continue
        if isinstance(value, bool) or not str(value).isdecimal() or not 1 <= int(value) <= 7:
            raise RankingError(f"Ratings go from 1 to 7, not {value!r}.")
        cleaned[answer_id] = int(value)
    return cleaned


def clean_flags(flags: Mapping, answer_ids: Iterable[int], known_flags: Iterable[str]) -> dict[int, list[str]]:
    """Flag codes keyed by answer id, each list sorted and without repeats."""
    expected = set(answer_ids)
    known = set(known_flags)
    cleaned: dict[int, list[str]] = {answer_id: [] for answer_id in expected}
    if not isinstance(flags or {}, Mapping):
        raise RankingError("Flags must map answer ids to lists of flags.")
    for key, values in (flags or {}).items():
        answer_id = int(key) if str(key).isdecimal() else None
        if answer_id not in expected:
            raise RankingError(f"A flag names answer {key!r}, which is not an answer of this prompt.")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise RankingError("Flags must be given as a list of flag codes per answer.")
        unknown = [v for v in values if v not in known]
        if unknown:
            raise RankingError(f"Unknown flag {unknown[0]!r}.")
        cleaned[answer_id] = sorted(set(values))
    return cleaned
