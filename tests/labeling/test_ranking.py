"""labeling.ranking: checking a submitted ranking, its ratings and flags, its ranks (plain data, no database).

Its pair expansion is tested in tests/rewardtrain/test_pairs.py, beside the pair files it feeds."""
import pytest

from labeling.ranking import (
    RankingError,
    clean_flags,
    clean_groups,
    clean_ratings,
    ranks_by_answer,
    ranks_from_groups,
)

ANSWERS = [3, 4, 5, 7]
FLAGS = ["harmful", "hallucination"]


def test_ranking_error_is_a_value_error():
    # submit_ranking turns ValueError into InvalidLabel; RankingError must be one.
    assert issubclass(RankingError, ValueError)


# --- clean_groups ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "groups",
    [
        [[3], [4], [5], [7]],
        [[7], [5], [4], [3]],
        [[3], [5, 7], [4]],
        [[3, 4, 5, 7]],  # everything tied is a ranking too
    ],
)
def test_clean_groups_accepts_every_answer_placed_once(groups):
    assert clean_groups(groups, ANSWERS) == groups


def test_clean_groups_reads_id_strings_as_ints_and_keeps_the_order():
    assert clean_groups([["7"], ["3", 5], [4]], ANSWERS) == [[7], [3, 5], [4]]


def test_clean_groups_accepts_any_iterable_of_answer_ids():
    assert clean_groups([[2], [1]], iter([1, 2])) == [[2], [1]]


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ([[3], [4], [5]], "not placed yet"),  # 7 missing
        ([], "not placed yet"),
        ([[3], [4], [5], [7], [8]], "does not belong"),
        ([[3, 3], [4], [5], [7]], "placed twice"),
        ([[3], [4], [5], [7, 3]], "placed twice"),
        ([[3], ["3"], [4], [5], [7]], "placed twice"),
        ([[3], [], [4], [5], [7]], "empty group"),
        ([[3], [4], [5], [True]], "not an answer id"),
        ([[3], [4], [5], [7.0]], "not an answer id"),
        ([[3], [4], [5], [-7]], "not an answer id"),
        ([[3], [4], [5], [None]], "not an answer id"),
        ([[3], [4], [5], [[7]]], "not an answer id"),
        ([[3], [4], [5], ["seven"]], "not an answer id"),
        ([[3], [4], [5], [" 7"]], "not an answer id"),
        ([[3], [4], [5], ["²"]], "not an answer id"),  # a Unicode digit that int() refuses
        ([3, 4, 5, 7], "list of groups"),
        ([[3], [4], [5], 7], "list of groups"),
        ({"3": 1}, "list of groups"),
        ("[[3],[4],[5],[7]]", "list of groups"),
        (None, "list of groups"),
    ],
)
def test_clean_groups_refuses_malformed_rankings(groups, message):
    with pytest.raises(RankingError, match=message):
        clean_groups(groups, ANSWERS)


@pytest.mark.parametrize(
    "item",
    [
        10**4000,  # str() of it works, but the message must stay short
        -(10**30),
        "9" * 5000,  # int() refuses more than 4,300 digits
        "9" * 20,  # more digits than any bigint id
        float("nan"),
        float("inf"),
        "\x00",
        "\ud800",
        {"id": 3},
        [[[[3]]]],
    ],
)
def test_clean_groups_refuses_any_other_item_with_a_short_message(item):
    with pytest.raises(RankingError) as refused:
        clean_groups([[3], [4], [5], [item]], ANSWERS)
    assert len(str(refused.value)) < 80 and "not an answer id" in str(refused.value)


def test_clean_groups_of_a_deep_list_does_not_recurse():
    deep: list = [3]
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(RankingError, match="a list is not an answer id"):
        clean_groups([deep], ANSWERS)


@pytest.mark.parametrize("key", [10**4000, "9" * 5000, "\x00" * 1000])
def test_ratings_and_flags_of_any_key_are_refused_with_a_short_message(key):
    for clean in (lambda: clean_ratings({key: 3}, ANSWERS), lambda: clean_flags({key: []}, ANSWERS, FLAGS)):
        with pytest.raises(RankingError) as refused:
            clean()
        assert len(str(refused.value)) < 120


def test_missing_answers_are_counted_in_the_message():
    with pytest.raises(RankingError, match=r"\(2 not placed yet\)"):
        clean_groups([[3], [4]], ANSWERS)


# --- ranks_by_answer ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("groups", "ranks"),
    [
        ([[3], [5, 7], [4]], {3: 1, 5: 2, 7: 2, 4: 4}),
        ([[3], [4], [5], [7]], {3: 1, 4: 2, 5: 3, 7: 4}),
        ([[3, 4], [5, 7]], {3: 1, 4: 1, 5: 3, 7: 3}),
        ([[3, 4, 5, 7]], {3: 1, 4: 1, 5: 1, 7: 1}),
        ([], {}),
    ],
)
def test_ranks_are_competition_ranks(groups, ranks):
    assert ranks_by_answer(groups) == ranks


# --- clean_ratings -----------------------------------------------------------------------------


def test_ratings_are_optional_and_keyed_by_every_answer():
    assert clean_ratings({}, ANSWERS) == {3: None, 4: None, 5: None, 7: None}
    assert clean_ratings(None, ANSWERS) == {3: None, 4: None, 5: None, 7: None}


def test_ratings_accept_one_to_seven_as_int_or_string_and_empty_values():
    cleaned = clean_ratings({3: 1, "4": "7", "5": "", 7: None}, ANSWERS)
    assert cleaned == {3: 1, 4: 7, 5: None, 7: None}


@pytest.mark.parametrize(
    "value", [0, 8, -1, "0", "8", 3.5, "3.5", "three", True, False, [3], " 3", "²", "9" * 5000, 10**4000, {"a": 1}]
)
def test_ratings_outside_one_to_seven_are_refused(value):
    with pytest.raises(RankingError, match="from 1 to 7"):
        clean_ratings({3: value}, ANSWERS)


@pytest.mark.parametrize("key", [8, "8", "x", None, -3, "²"])
def test_a_rating_of_an_answer_not_in_the_prompt_is_refused(key):
    with pytest.raises(RankingError, match="not an answer of this prompt"):
        clean_ratings({key: 4}, ANSWERS)


@pytest.mark.parametrize("ratings", [[4, 5], [[3, 4]], "3=4"])
def test_ratings_that_are_not_a_mapping_are_refused(ratings):
    with pytest.raises(RankingError, match="Ratings must map"):
        clean_ratings(ratings, ANSWERS)


# --- clean_flags -------------------------------------------------------------------------------


def test_flags_are_sorted_without_repeats_and_default_to_none():
    cleaned = clean_flags({"3": ["harmful", "hallucination", "harmful"], 5: []}, ANSWERS, FLAGS)
    assert cleaned == {3: ["hallucination", "harmful"], 4: [], 5: [], 7: []}
    assert clean_flags(None, ANSWERS, FLAGS) == {3: [], 4: [], 5: [], 7: []}


def test_unknown_flags_are_refused():
    with pytest.raises(RankingError, match="Unknown flag 'boring'"):
        clean_flags({3: ["harmful", "boring"]}, ANSWERS, FLAGS)


@pytest.mark.parametrize("values", ["harmful", {"harmful": True}, None, [["harmful"]], [{"x": 1}]])
def test_flags_must_be_a_list_of_codes(values):
    with pytest.raises(RankingError, match="Flags must be given as a list"):
        clean_flags({3: values}, ANSWERS, FLAGS)


@pytest.mark.parametrize("key", [8, "8", "x", "²"])
def test_a_flag_on_an_answer_not_in_the_prompt_is_refused(key):
    with pytest.raises(RankingError, match="not an answer of this prompt"):
        clean_flags({key: ["harmful"]}, ANSWERS, FLAGS)


@pytest.mark.parametrize("flags", [["harmful"], [[3, ["harmful"]]], "harmful"])
def test_flags_that_are_not_a_mapping_are_refused(flags):
    with pytest.raises(RankingError, match="Flags must map"):
        clean_flags(flags, ANSWERS, FLAGS)


# --- ranks_from_groups ---------------------------------------------------------------------------

def test_ranks_from_groups_uses_competition_ranks_aligned_to_answer_ids():
    assert ranks_from_groups([["a"], ["b", "c"], ["d"]], ["a", "b", "c", "d"]) == [1, 2, 2, 4]
    assert ranks_from_groups([["a"], ["b", "c"], ["d"]], ["d", "c", "a", "b"]) == [4, 2, 1, 2]


@pytest.mark.parametrize("groups", [[["a"], ["b"]], [["a"], ["b", "c", "a"]], [["a"], ["b", "c", "x"]]])
def test_ranks_from_groups_refuses_missing_repeated_or_unknown_answers(groups):
    with pytest.raises(ValueError):
        ranks_from_groups(groups, ["a", "b", "c"])
