"""labeling.ranking's pair expansion and rewardtrain.ml.pairs: the split by prompt, the pair frame, the Parquet file
(plain data, no database)."""
import hashlib
import itertools
import math

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labeling.ranking import Pair, expand_ranking, expand_rankings
from rewardtrain.ml.pairs import (
    PAIR_COLUMNS,
    PAIR_DTYPES,
    build_pair_frame,
    read_pair_dataset,
    split_by_prompt,
    write_pair_dataset,
)

# --- strategies and helpers ------------------------------------------------------------------------


@st.composite
def rankings(draw, max_answers: int = 9) -> list[list[int]]:
    """Tie groups of 1..max_answers distinct answer ids, cut at random places."""
    ids = draw(st.lists(st.integers(1, 10_000), min_size=1, max_size=max_answers, unique=True))
    cuts = draw(st.lists(st.booleans(), min_size=len(ids) - 1, max_size=len(ids) - 1))
    groups = [[ids[0]]]
    for answer_id, cut in zip(ids[1:], cuts, strict=True):
        if cut:
            groups.append([answer_id])
        else:
            groups[-1].append(answer_id)
    return groups


ratings_of = st.one_of(st.none(), st.integers(1, 7))


@st.composite
def labeled_rankings(draw) -> list[dict]:
    """Several rankings with ids, labelers, prompts and (some) ratings, as the database gives them."""
    ranking_ids = draw(st.lists(st.integers(1, 10**6), min_size=1, max_size=8, unique=True))
    result = []
    for ranking_id in ranking_ids:
        groups = draw(rankings())
        answers = [a for group in groups for a in group]
        result.append(
            {
                "ranking_id": ranking_id,
                "labeler_id": draw(st.integers(1, 5)),
                "prompt_id": draw(st.integers(1, 6)),
                "groups": groups,
                "ratings": {a: draw(ratings_of) for a in answers},
            }
        )
    return result


def labels_frame(items: list[dict]) -> pd.DataFrame:
    """One row per (ranking, answer), as expand_rankings takes them."""
    rows = [
        (item["ranking_id"], item["labeler_id"], item["prompt_id"], answer_id, index, item["ratings"].get(answer_id))
        for item in items
        for index, group in enumerate(item["groups"])
        for answer_id in group
    ]
    frame = pd.DataFrame(rows, columns=["ranking_id", "labeler_id", "prompt_id", "answer_id", "group", "rating"])
    return frame.astype({"rating": "Int64"})


def per_ranking_frame(items: list[dict]) -> pd.DataFrame:
    """The reference: expand_ranking over each ranking, in ranking_id order."""
    rows = [
        (item["ranking_id"], item["labeler_id"], item["prompt_id"], *pair)
        for item in sorted(items, key=lambda item: item["ranking_id"])
        for pair in expand_ranking(item["groups"], item["ratings"])
    ]
    columns = ["ranking_id", "labeler_id", "prompt_id", "chosen_id", "rejected_id", "margin", "rating_diff"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({**dict.fromkeys(columns[:5], "int64"), "margin": "int16", "rating_diff": "float64"})


def texts_for(items: list[dict]) -> tuple[dict[int, str], dict[int, str]]:
    answers = {a: f"answer {a % 7}" for item in items for group in item["groups"] for a in group}  # repeats
    prompts = {item["prompt_id"]: f"prompt {item['prompt_id']}" for item in items}
    return answers, prompts


# --- expand_ranking --------------------------------------------------------------------------------


def test_expand_ranking_example_with_ties_and_ratings():
    pairs = expand_ranking([[3], [7, 5], [4]], {3: 7, 5: None, 7: 2, 4: 1})
    assert pairs == [
        Pair(3, 5, 1, None),
        Pair(3, 7, 1, 5.0),
        Pair(3, 4, 2, 6.0),
        Pair(5, 4, 1, None),
        Pair(7, 4, 1, 1.0),
    ]


def test_full_ranking_of_nine_gives_36_pairs():
    pairs = expand_ranking([[i] for i in range(9)])
    assert len(pairs) == math.comb(9, 2) == 36
    assert all(p.rating_diff is None for p in pairs)
    assert [p.margin for p in pairs[:8]] == list(range(1, 9))


def test_tied_answers_give_no_pair():
    assert expand_ranking([[1, 2, 3]]) == []


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ([], "no tie groups"),
        ([[1], []], "group 1 is empty"),
        ([[1, 2], [2]], "Answer 2 is placed twice"),
        ([[1], ["2"]], "not an answer id"),
        ([[True], [2]], "not an answer id"),
        ("12", "sequence of tie groups"),
        ([[1], 2], "not a sequence"),
    ],
)
def test_expand_ranking_refuses_bad_rankings(groups, message):
    with pytest.raises(ValueError, match=message):
        expand_ranking(groups)


@given(rankings(), st.data())
def test_expand_ranking_properties(groups, data):
    ratings = {a: data.draw(ratings_of) for group in groups for a in group}
    pairs = expand_ranking(groups, ratings)
    group_of = {a: index for index, group in enumerate(groups) for a in group}

    sizes = [len(group) for group in groups]
    assert len(pairs) == sum(a * b for a, b in itertools.combinations(sizes, 2))
    edges = {(p.chosen, p.rejected) for p in pairs}
    assert len(edges) == len(pairs), "a pair twice"
    assert not any((r, c) in edges for c, r in edges), "a pair in both directions"
    for (a, b), (b2, c) in itertools.product(edges, edges):
        if b == b2:
            assert (a, c) in edges, "not transitive"
    for p in pairs:
        assert p.margin == group_of[p.rejected] - group_of[p.chosen] >= 1
        both = ratings[p.chosen] is not None and ratings[p.rejected] is not None
        assert p.rating_diff == (ratings[p.chosen] - ratings[p.rejected] if both else None)
    keys = [(group_of[p.chosen], p.chosen, group_of[p.rejected], p.rejected) for p in pairs]
    assert keys == sorted(keys), "not in the documented order"


# --- expand_rankings -------------------------------------------------------------------------------


@settings(max_examples=200)
@given(labeled_rankings(), st.randoms(use_true_random=False))
def test_vectorised_equals_per_ranking(items, random):
    labels = labels_frame(items)
    shuffled = labels.iloc[random.sample(range(len(labels)), len(labels))]  # input order must not matter
    pd.testing.assert_frame_equal(expand_rankings(shuffled), per_ranking_frame(items))


def test_expand_rankings_without_ratings_and_dtypes():
    labels = labels_frame([{"ranking_id": 1, "labeler_id": 2, "prompt_id": 3, "groups": [[5], [6]], "ratings": {}}])
    pairs = expand_rankings(labels.drop(columns="rating"))
    assert pairs.to_dict("list") == {
        "ranking_id": [1], "labeler_id": [2], "prompt_id": [3], "chosen_id": [5], "rejected_id": [6],
        "margin": [1], "rating_diff": [pytest.approx(np.nan, nan_ok=True)],
    }
    assert pairs.dtypes.to_dict() == {
        "ranking_id": "int64", "labeler_id": "int64", "prompt_id": "int64", "chosen_id": "int64",
        "rejected_id": "int64", "margin": "int16", "rating_diff": "float64",
    }


def test_expand_rankings_of_no_rows_is_empty():
    ids = ["ranking_id", "labeler_id", "prompt_id", "answer_id", "group"]
    labels = labels_frame([]).astype(dict.fromkeys(ids, "int64"))
    pairs = expand_rankings(labels)
    assert pairs.empty and pairs["margin"].dtype == "int16"


def _one_ranking(**changes) -> pd.DataFrame:
    labels = pd.DataFrame(
        {"ranking_id": 1, "labeler_id": 2, "prompt_id": 3, "answer_id": [10, 11, 12], "group": [0, 1, 2]}
    )
    for column, values in changes.items():
        labels[column] = values
    return labels


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (_one_ranking(answer_id=[10, 11, 10]), "Answer 10 is placed twice in ranking 1"),
        (_one_ranking(group=[0, 2, 3]), "do not count 0, 1, 2"),
        (_one_ranking(group=[1, 2, 3]), "do not count 0, 1, 2"),
        (_one_ranking(group=[-1, 0, 1]), "do not count 0, 1, 2"),
        (_one_ranking(labeler_id=[2, 2, 4]), "disagree about its labeler or prompt"),
        (_one_ranking(group=[0, None, 1]), "empty ids or tie groups"),
        (_one_ranking().drop(columns="group"), "lack the column"),
    ],
)
def test_expand_rankings_refuses_bad_labels(labels, message):
    with pytest.raises(ValueError, match=message):
        expand_rankings(labels)


# --- split_by_prompt -------------------------------------------------------------------------------


def test_split_is_reproducible_and_near_the_fraction():
    prompts = np.arange(20_000)
    first = split_by_prompt(prompts, validation_fraction=0.1, seed=7)
    assert first.dtype == bool
    assert np.array_equal(first, split_by_prompt(prompts.tolist(), validation_fraction=0.1, seed=7))
    assert 0.09 < first.mean() < 0.11
    assert not np.array_equal(first, split_by_prompt(prompts, validation_fraction=0.1, seed=8))


@given(
    st.lists(st.integers(0, 50), min_size=1, max_size=200),
    st.integers(0, 2**31),
    st.floats(0.05, 0.95),
    st.randoms(use_true_random=False),
)
def test_split_keeps_prompts_whole_and_ignores_row_order(prompt_ids, seed, fraction, random):
    ids = np.array(prompt_ids)
    validation = split_by_prompt(ids, validation_fraction=fraction, seed=seed)
    sides = {p: set(validation[ids == p]) for p in set(prompt_ids)}
    assert all(len(side) == 1 for side in sides.values()), "a prompt on both sides"
    if len(sides) >= 2:
        assert validation.any() and not validation.all()
    order = random.sample(range(len(ids)), len(ids))
    assert np.array_equal(split_by_prompt(ids[order], validation_fraction=fraction, seed=seed), validation[order])


@given(st.lists(st.integers(0, 10**9), min_size=2, max_size=50, unique=True), st.integers(0, 1000))
def test_split_of_a_prompt_does_not_depend_on_the_others(prompt_ids, seed):
    everything = split_by_prompt(prompt_ids, validation_fraction=0.5, seed=seed)
    # Alone, a prompt gets its own draw's side (the both-sides guarantee needs two prompts).
    alone = np.array([split_by_prompt([p], validation_fraction=0.5, seed=seed)[0] for p in prompt_ids])
    if alone.any() and not alone.all():
        assert np.array_equal(everything, alone)
    else:  # one side would be empty: exactly one prompt moves
        assert (everything != alone).sum() == 1


@pytest.mark.parametrize("seed", range(50))
def test_two_prompts_are_always_split(seed):
    assert sorted(split_by_prompt([4, 9, 4], validation_fraction=0.01, seed=seed)[:2].tolist()) == [False, True]
    assert sorted(split_by_prompt([4, 9], validation_fraction=0.99, seed=seed).tolist()) == [False, True]


def test_single_prompt_and_bad_fraction():
    assert split_by_prompt([5, 5], validation_fraction=0.5, seed=1).tolist() in ([True, True], [False, False])
    for fraction in (0, 1, -0.1, 1.5):
        with pytest.raises(ValueError, match="between 0 and 1"):
            split_by_prompt([1, 2], validation_fraction=fraction, seed=1)


# --- build_pair_frame ------------------------------------------------------------------------------

ITEMS = [
    {"ranking_id": 10, "labeler_id": 1, "prompt_id": 100, "groups": [[1], [2, 3], [4]], "ratings": {1: 6, 4: 2}},
    {"ranking_id": 11, "labeler_id": 2, "prompt_id": 100, "groups": [[4], [1], [3], [2]], "ratings": {}},
    {"ranking_id": 12, "labeler_id": 1, "prompt_id": 200, "groups": [[5, 6]], "ratings": {}},
    {"ranking_id": 13, "labeler_id": 1, "prompt_id": 300, "groups": [[7], [8]], "ratings": {7: 1, 8: 1}},
]
ANSWER_TEXTS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "one", 8: "eight"}
PROMPT_TEXTS = {100: "First prompt?", 200: "Second prompt?", 300: "Third prompt?"}


def build(items=ITEMS, seed=3) -> pd.DataFrame:
    return build_pair_frame(
        expand_rankings(labels_frame(items)), ANSWER_TEXTS, PROMPT_TEXTS, validation_fraction=0.3, seed=seed
    )


def test_build_pair_frame_columns_dtypes_and_texts():
    frame = build()
    assert list(frame.columns) == PAIR_COLUMNS
    assert frame.dtypes.astype(str).to_dict() == PAIR_DTYPES
    assert len(frame) == 5 + 6 + 0 + 1
    assert frame["prompt"].astype(str).tolist() == ["First prompt?"] * 11 + ["Third prompt?"]
    assert list(zip(frame["chosen"].astype(str), frame["rejected"].astype(str), strict=True))[:3] == [
        ("one", "two"), ("one", "three"), ("one", "four"),
    ]
    assert frame["rating_diff"].iloc[2] == 4.0 and frame["rating_diff"].iloc[-1] == 0.0
    assert frame["rating_diff"].isna().sum() == 4 + 6
    validation = split_by_prompt(frame["prompt_id"], validation_fraction=0.3, seed=3)
    assert (frame["split"] == "validation").tolist() == validation.tolist()
    assert set(frame["split"]) == {"train", "validation"}


def test_build_pair_frame_takes_text_frames():
    answers = pd.DataFrame({"answer_id": list(ANSWER_TEXTS), "text": list(ANSWER_TEXTS.values())})
    prompts = pd.DataFrame({"prompt_id": list(PROMPT_TEXTS), "text": list(PROMPT_TEXTS.values())})
    frame = build_pair_frame(
        expand_rankings(labels_frame(ITEMS)), answers, prompts, validation_fraction=0.3, seed=3
    )
    pd.testing.assert_frame_equal(frame, build())


def test_build_pair_frame_needs_every_text():
    without_eight = {k: v for k, v in ANSWER_TEXTS.items() if k != 8}
    with pytest.raises(ValueError, match="No text for answer 8"):
        build_pair_frame(
        expand_rankings(labels_frame(ITEMS)), without_eight, PROMPT_TEXTS, validation_fraction=0.3, seed=3
    )
    answers = pd.DataFrame({"answer_id": [1, 1], "text": ["one", "uno"]})
    with pytest.raises(ValueError, match="Answer 1 has two texts"):
        build_pair_frame(
        expand_rankings(labels_frame(ITEMS)), answers, PROMPT_TEXTS, validation_fraction=0.3, seed=3
    )
    with pytest.raises(ValueError, match="Prompt 100 has no text"):
        build_pair_frame(
            expand_rankings(labels_frame(ITEMS)), ANSWER_TEXTS, {**PROMPT_TEXTS, 100: None},
            validation_fraction=0.3, seed=3,
        )


# --- the Parquet file ------------------------------------------------------------------------------


def sorted_like_file(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["prompt_id", "labeler_id", "ranking_id", "chosen_id", "rejected_id"]).reset_index(
        drop=True
    )


def test_write_twice_gives_the_same_bytes_and_checksum(tmp_path):
    frame = build()
    first = write_pair_dataset(frame, tmp_path / "a.parquet")
    second = write_pair_dataset(frame, tmp_path / "b.parquet")
    shuffled = write_pair_dataset(frame.sample(frac=1, random_state=1), tmp_path / "c.parquet")
    assert first == second == shuffled
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "c.parquet").read_bytes()
    assert first.rows == len(frame)
    assert first.bytes == (tmp_path / "a.parquet").stat().st_size
    assert first.sha256 == hashlib.sha256((tmp_path / "a.parquet").read_bytes()).hexdigest()
    changed = frame.assign(rating_diff=frame["rating_diff"].fillna(0))
    assert write_pair_dataset(changed, tmp_path / "d.parquet").sha256 != first.sha256
    assert not list(tmp_path.glob("*.partial"))


def test_read_back_gives_the_same_frame_with_declared_dtypes(tmp_path):
    frame = build()
    write_pair_dataset(frame, tmp_path / "pairs.parquet")
    back = read_pair_dataset(tmp_path / "pairs.parquet")
    assert back.dtypes.astype(str).to_dict() == PAIR_DTYPES
    pd.testing.assert_frame_equal(back, sorted_like_file(frame), check_categorical=False)
    assert back["split"].cat.categories.tolist() == ["train", "validation"]


def test_file_is_plain_for_other_readers(tmp_path):
    write_pair_dataset(build(), tmp_path / "pairs.parquet")
    parquet = pq.ParquetFile(tmp_path / "pairs.parquet")
    assert parquet.metadata.metadata is None  # no pandas or Arrow schema metadata
    assert [str(field.type) for field in parquet.schema_arrow] == [
        "int64", "int64", "int64", "int64", "int64", "int16", "double", "string", "string", "string", "string",
    ]
    row_group = parquet.metadata.row_group(0)
    for index in range(7, 11):  # split, prompt, chosen, rejected
        assert row_group.column(index).compression == "ZSTD"
        assert "RLE_DICTIONARY" in row_group.column(index).encodings


def test_write_refuses_missing_columns_and_empty_texts(tmp_path):
    frame = build()
    with pytest.raises(ValueError, match="lack the column"):
        write_pair_dataset(frame.drop(columns="split"), tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="empty values in chosen"):
        write_pair_dataset(frame.assign(chosen=None), tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="split column may only hold"):
        write_pair_dataset(frame.assign(split="test"), tmp_path / "x.parquet")
    assert not list(tmp_path.iterdir())


def test_write_and_read_no_pairs(tmp_path):
    frame = build(items=[ITEMS[2]])
    assert frame.empty
    assert write_pair_dataset(frame, tmp_path / "empty.parquet").rows == 0
    back = read_pair_dataset(tmp_path / "empty.parquet")
    assert list(back.columns) == PAIR_COLUMNS and back.empty


@settings(max_examples=30, deadline=None)
@given(labeled_rankings(), st.integers(0, 99))
def test_round_trip_of_random_rankings(tmp_path_factory, items, seed):
    answers, prompts = texts_for(items)
    frame = build_pair_frame(
        expand_rankings(labels_frame(items)), answers, prompts, validation_fraction=0.4, seed=seed
    )
    folder = tmp_path_factory.mktemp("pairs")
    written = write_pair_dataset(frame, folder / "a.parquet")
    assert write_pair_dataset(frame.iloc[::-1], folder / "b.parquet") == written
    back = read_pair_dataset(folder / "a.parquet")
    assert back.dtypes.astype(str).to_dict() == PAIR_DTYPES
    pd.testing.assert_frame_equal(back, sorted_like_file(frame), check_categorical=False)
