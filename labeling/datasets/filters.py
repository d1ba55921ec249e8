"""The dataset filters: one rule for what a filter means and which values it takes.

Exports (labeling.datasets.exports), pair datasets (rewardtrain.datasets), their pages and forms and the REST API
all check filters here, and labeling.datasets.selectors.filtered_labels applies them, so a filter means the same
everywhere. Checked filters are stored on the snapshot or dataset record as JSON.

- Label filters (both kinds of dataset): date_from and date_to (the label's submission date, inclusive),
  labeler_ids, exclude_skipped, exclude_flagged, min_agreement and min_gold_accuracy.
- Pair datasets also take source ("labelers", or "consensus": one ranked-pairs consensus per prompt)
  and, for a consensus, min_rankings.
"""
from collections.abc import Iterable, Mapping
from datetime import date

from django.contrib.auth import get_user_model

LABEL_FILTER_KEYS = (
    "date_from", "date_to", "labeler_ids", "exclude_skipped", "exclude_flagged", "min_agreement", "min_gold_accuracy",
)
PAIR_FILTER_KEYS = (*LABEL_FILTER_KEYS, "source", "min_rankings")
SOURCES = ("labelers", "consensus")
DEFAULT_MIN_RANKINGS = 2


class FilterError(ValueError):
    """A filter or its value is refused; `key` names the filter (None when it is the combination)."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


def _given(value) -> bool:
    return value is not None and value != ""


def _fraction(key: str, value) -> float:
    try:
        number = float(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        number = None
    if number is None or not 0 <= number <= 1:  # NaN fails this too
        raise FilterError(f"{key} must be a number from 0 to 1, not {value!r}.", key)
    return number


def clean_filters(filters: dict) -> dict:
    """A pair dataset's filters: the known ones with checked values and their defaults; FilterError names a bad one."""
    unknown = set(filters) - set(PAIR_FILTER_KEYS)
    if unknown:
        raise FilterError(f"Unknown filter {sorted(unknown)[0]!r}.")
    cleaned: dict = {}
    for key in ("date_from", "date_to"):
        if filters.get(key):
            try:
                cleaned[key] = date.fromisoformat(str(filters[key])).isoformat()
            except ValueError:
                raise FilterError(f"{key} must be a date (YYYY-MM-DD), not {filters[key]!r}.", key) from None
    if cleaned.get("date_from", "") > cleaned.get("date_to", "9999"):
        raise FilterError("The date range ends before it starts (date_to is before date_from).", "date_to")
    if filters.get("labeler_ids"):
        try:
            cleaned["labeler_ids"] = sorted({int(pk) for pk in filters["labeler_ids"]})
        except (TypeError, ValueError):
            raise FilterError(
                f"labeler_ids must be a list of user ids, not {filters['labeler_ids']!r}.", "labeler_ids"
            ) from None
    for key in ("exclude_skipped", "exclude_flagged"):
        cleaned[key] = bool(filters.get(key, False))
    source = filters.get("source") or "labelers"
    if source not in SOURCES:
        raise FilterError(f"source must be one of {', '.join(map(repr, SOURCES))}, not {source!r}.", "source")
    cleaned["source"] = source
    min_rankings = filters.get("min_rankings")
    if source == "consensus":
        if not _given(min_rankings):
            min_rankings = DEFAULT_MIN_RANKINGS
        if isinstance(min_rankings, bool) or not str(min_rankings).isdecimal() or int(min_rankings) < 1:
            raise FilterError(
                f"min_rankings must be a whole number of at least 1, not {min_rankings!r}.", "min_rankings"
            )
        cleaned["min_rankings"] = int(min_rankings)
    elif _given(min_rankings):
        raise FilterError(
            "Only a consensus source takes a minimum number of rankings (min_rankings needs source 'consensus').",
            "min_rankings",
        )
    for key in ("min_agreement", "min_gold_accuracy"):
        if _given(filters.get(key)):
            cleaned[key] = _fraction(key, filters[key])
    return cleaned


def clean_export_filters(filters: dict | None) -> dict:
    """An export's filters (LABEL_FILTER_KEYS), checked as clean_filters checks them; FilterError names a bad one."""
    unknown = set(filters or {}) - set(LABEL_FILTER_KEYS)
    if unknown:
        raise FilterError(
            f"Exports take no filter {sorted(unknown)[0]!r}; they take {', '.join(LABEL_FILTER_KEYS)}."
        )
    # clean_filters also settles pair datasets' `source`, which an export does not have.
    return {key: value for key, value in clean_filters(filters or {}).items() if key in LABEL_FILTER_KEYS}


def labeler_names(filters_of_many: Iterable[dict]) -> dict[int, str]:
    """The usernames of every labeler the filters name, in one query (a page lists many exports)."""
    ids = {pk for filters in filters_of_many for pk in filters.get("labeler_ids") or ()}
    return dict(get_user_model().objects.filter(pk__in=ids).values_list("pk", "username")) if ids else {}


def describe_filters(filters: dict, names: Mapping[int, str] | None = None) -> list[str]:
    """The label filters in words, one phrase per filter given (for the cards and the pages); `names` are the
    labelers' usernames when the caller has them (labeler_names), else they are read here."""
    phrases = []
    if filters.get("date_from"):
        phrases.append(f"submitted on or after {filters['date_from']}")
    if filters.get("date_to"):
        phrases.append(f"submitted on or before {filters['date_to']}")
    if filters.get("labeler_ids"):
        names = labeler_names([filters]) if names is None else names
        chosen = [names[pk] for pk in filters["labeler_ids"] if pk in names]
        phrases.append(f"only labelers {', '.join(sorted(chosen))}")
    if filters.get("exclude_skipped"):
        phrases.append("prompts someone skipped left out")
    if filters.get("exclude_flagged"):
        phrases.append("prompts with a flagged answer left out")
    if "min_agreement" in filters:
        phrases.append(f"labelers with agreement below {filters['min_agreement']} in a queue left out")
    if "min_gold_accuracy" in filters:
        phrases.append(f"labelers with gold accuracy below {filters['min_gold_accuracy']} in a queue left out")
    return phrases
