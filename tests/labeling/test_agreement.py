"""labeling.quality.agreement against published worked examples, reference implementations and properties.

No database: the functions take plain data.
"""
import math
import random

import krippendorff
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import kendalltau
from statsmodels.stats import inter_rater

from labeling.quality.agreement import (
    bradley_terry,
    cohen_kappa,
    consensus_ranking,
    fleiss_kappa,
    kendall_tau_b,
    kendall_w,
    krippendorff_alpha,
    leave_one_out_agreement,
    pairwise_agreement,
)
from labeling.ranking import ranks_from_groups

LEVELS = ["nominal", "ordinal", "interval", "ratio"]

# Rank vectors of 2..9 answers with ties (rank values 1..4).
rank_vectors = st.integers(2, 9).flatmap(
    lambda k: st.tuples(st.lists(st.integers(1, 4), min_size=k, max_size=k),
                        st.lists(st.integers(1, 4), min_size=k, max_size=k))
)


def groups_strategy(ids: list[str]) -> st.SearchStrategy[list[list[str]]]:
    """Any tie-group ranking of `ids`: a permutation cut into non-empty groups."""
    return st.tuples(st.permutations(ids), st.lists(st.booleans(), min_size=len(ids), max_size=len(ids))).map(
        lambda pc: _cut(list(pc[0]), pc[1])
    )


def _cut(order: list[str], cuts: list[bool]) -> list[list[str]]:
    groups = [[order[0]]]
    for answer, new_group in zip(order[1:], cuts[1:], strict=True):
        if new_group:
            groups.append([answer])
        else:
            groups[-1].append(answer)
    return groups


# --- pairwise agreement --------------------------------------------------------------------------

def test_pairwise_agreement_leaves_out_pairs_either_labeler_tied():
    # Pairs (0,1) tied by r1, (2,3) tied by r2; of the 4 remaining, (0,2) (0,3) agree, (1,2) (1,3) not.
    assert pairwise_agreement([1, 1, 3, 4], [1, 3, 2, 2]) == (0.5, 4)


def test_pairwise_agreement_without_strict_pairs_is_none():
    assert pairwise_agreement([1, 1, 1], [1, 2, 3]) == (None, 0)
    assert pairwise_agreement([], []) == (None, 0)
    assert pairwise_agreement([1], [1]) == (None, 0)


def test_pairwise_agreement_single_pair():
    assert pairwise_agreement([1, 2], [2, 1]) == (0.0, 1)
    assert pairwise_agreement([1, 2], [1, 2]) == (1.0, 1)


@given(rank_vectors)
def test_pairwise_agreement_is_symmetric_and_a_fraction(pair):
    r1, r2 = pair
    rate, n = pairwise_agreement(r1, r2)
    assert pairwise_agreement(r2, r1) == (rate, n)
    assert (rate is None) == (n == 0)
    assert rate is None or 0.0 <= rate <= 1.0


@given(st.permutations(range(1, 8)))
def test_identical_strict_rankings_agree_and_reversed_ones_disagree(order):
    reversed_ = [8 - r for r in order]
    assert pairwise_agreement(order, order) == (1.0, 21)
    assert pairwise_agreement(order, reversed_) == (0.0, 21)
    assert kendall_tau_b(order, order) == pytest.approx(1.0)
    assert kendall_tau_b(order, reversed_) == pytest.approx(-1.0)


# --- Kendall's tau-b -----------------------------------------------------------------------------

def test_kendall_tau_b_matches_scipy_on_random_rankings_with_ties():
    rng = random.Random(1)
    for _ in range(300):
        k = rng.randint(2, 12)
        r1 = [rng.randint(1, 4) for _ in range(k)]
        r2 = [rng.randint(1, 4) for _ in range(k)]
        ours = kendall_tau_b(r1, r2)
        theirs = kendalltau(r1, r2, variant="b").statistic
        if math.isnan(theirs):
            assert ours is None
        else:
            assert ours == pytest.approx(theirs, abs=1e-12)


def test_kendall_tau_b_is_none_when_undefined():
    assert kendall_tau_b([1, 1, 1], [1, 2, 3]) is None
    assert kendall_tau_b([1], [1]) is None
    assert kendall_tau_b([], []) is None


@given(rank_vectors)
def test_kendall_tau_b_is_symmetric_and_bounded(pair):
    r1, r2 = pair
    tau = kendall_tau_b(r1, r2)
    assert tau == kendall_tau_b(r2, r1)
    assert tau is None or -1.0 - 1e-12 <= tau <= 1.0 + 1e-12


# --- Kendall's W ---------------------------------------------------------------------------------

def test_kendall_w_published_example():
    # ProofWiki, "Kendall's Coefficient of Concordance/Examples/Arbitrary Example 1": 4 judges rank
    # competitors X, Y, Z; rank sums 7, 9, 8; S = 2; W = 1/16.
    judges = [[1, 3, 2], [1, 2, 3], [2, 3, 1], [3, 1, 2]]
    assert kendall_w(judges) == pytest.approx(1 / 16)


def _w_direct(rankings, tie_correction):
    """W from the textbook formula, written out separately: 12 S / (m² (n³ - n) - m Σ T)."""
    from scipy.stats import rankdata

    r = np.array([rankdata(row) for row in rankings])
    m, n = r.shape
    s = ((r.sum(axis=0) - m * (n + 1) / 2) ** 2).sum()
    t = 0
    if tie_correction:
        for row in rankings:
            _, counts = np.unique(row, return_counts=True)
            t += (counts**3 - counts).sum()
    return 12 * s / (m**2 * (n**3 - n) - m * t)


def test_kendall_w_matches_the_direct_formula_on_random_rankings_with_ties():
    rng = random.Random(2)
    for _ in range(200):
        m, n = rng.randint(2, 6), rng.randint(2, 9)
        rankings = [[rng.randint(1, 4) for _ in range(n)] for _ in range(m)]
        for correction in (True, False):
            ours = kendall_w(rankings, tie_correction=correction)
            if all(len(set(row)) == 1 for row in rankings):
                assert ours is None if correction else ours == pytest.approx(0.0)
            else:
                assert ours == pytest.approx(_w_direct(rankings, correction))


def test_kendall_w_edge_cases():
    assert kendall_w([]) is None
    assert kendall_w([[1, 2, 3]]) is None  # one labeler
    assert kendall_w([[1], [1]]) is None  # one answer
    assert kendall_w([[1, 1], [2, 2]]) is None  # all tied
    assert kendall_w([[1, 2, 3], [1, 2, 3], [1, 2, 3]]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        kendall_w([[1, 2], [1, 2, 3]])


# --- Krippendorff's alpha ------------------------------------------------------------------------

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 coders x 12 units.
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]


@pytest.mark.parametrize(("level", "published"), [
    ("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797),
])
def test_krippendorff_alpha_published_example(level, published):
    assert round(krippendorff_alpha(KRIPPENDORFF_2011, level), 3) == published


def test_krippendorff_alpha_matches_the_krippendorff_package_on_random_data_with_gaps():
    rng = random.Random(3)
    checked = 0
    for _ in range(150):
        coders, units = rng.randint(2, 5), rng.randint(2, 15)
        data = [[rng.randint(1, 5) if rng.random() > 0.3 else None for _ in range(units)] for _ in range(coders)]
        array = np.array([[np.nan if v is None else v for v in row] for row in data], dtype=float)
        for level in LEVELS:
            ours = krippendorff_alpha(data, level)
            try:
                with np.errstate(divide="ignore", invalid="ignore"):
                    theirs = krippendorff.alpha(reliability_data=array, level_of_measurement=level)
            except ValueError:  # the package refuses data with fewer than two values in all
                assert ours is None
                continue
            if ours is None:
                assert not np.isfinite(theirs)
            else:
                assert ours == pytest.approx(theirs, abs=1e-9)
                checked += 1
    assert checked > 400


def test_krippendorff_alpha_takes_string_categories_at_nominal_level():
    data = [["ok", "unsafe", "ok", None], ["ok", "unsafe", "off-topic", "ok"]]
    array = np.array([[1, 2, 1, np.nan], [1, 2, 3, 1]])
    assert krippendorff_alpha(data, "nominal") == pytest.approx(
        krippendorff.alpha(reliability_data=array, level_of_measurement="nominal")
    )


def test_krippendorff_alpha_edge_cases():
    assert krippendorff_alpha([], "nominal") is None
    assert krippendorff_alpha([[1, None], [None, 2]], "nominal") is None  # nothing pairable
    assert krippendorff_alpha([[3, 3], [3, 3]], "interval") is None  # one value only
    assert krippendorff_alpha([[1, 2, 3]], "ordinal") is None  # one coder
    with pytest.raises(ValueError):
        krippendorff_alpha([[1, 2]], "cardinal")


# --- Fleiss' and Cohen's kappa -------------------------------------------------------------------

# Fleiss' kappa worked example on Wikipedia ("Fleiss' kappa", Worked example): 10 subjects,
# 14 raters, 5 categories, kappa = 0.210. statsmodels' tests use the same table.
FLEISS_EXAMPLE = [
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
]


def test_fleiss_kappa_published_example():
    assert round(fleiss_kappa(FLEISS_EXAMPLE), 3) == 0.210


def test_fleiss_kappa_matches_statsmodels_on_random_tables():
    rng = np.random.default_rng(4)
    for _ in range(100):
        subjects, categories, raters = rng.integers(1, 20), rng.integers(2, 6), rng.integers(2, 8)
        table = np.array([rng.multinomial(raters, np.ones(categories) / categories) for _ in range(subjects)])
        ours = fleiss_kappa(table.tolist())
        with np.errstate(divide="ignore", invalid="ignore"):
            theirs = inter_rater.fleiss_kappa(table, method="fleiss")
        if ours is None:
            assert not np.isfinite(theirs)
        else:
            assert ours == pytest.approx(theirs, abs=1e-12)


def test_fleiss_kappa_edge_cases():
    assert fleiss_kappa([]) is None
    assert fleiss_kappa([[3, 0], [3, 0]]) is None  # everyone chose one category
    assert fleiss_kappa([[1, 0], [0, 1]]) is None  # one rater per subject
    with pytest.raises(ValueError):
        fleiss_kappa([[2, 1], [1, 1]])


def test_cohen_kappa_classic_example():
    # Wikipedia, "Cohen's kappa", first example: 50 proposals, both yes 20, A yes B no 5,
    # A no B yes 10, both no 15; p_o = 0.7, p_e = 0.5, kappa = 0.4.
    a = ["yes"] * 20 + ["yes"] * 5 + ["no"] * 10 + ["no"] * 15
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_cohen_kappa_matches_statsmodels_on_random_labels(weights):
    rng = random.Random(5)
    for _ in range(100):
        n = rng.randint(1, 40)
        a = [rng.randint(0, 4) for _ in range(n)]
        b = [min(4, max(0, x + rng.randint(-1, 1))) if rng.random() < 0.7 else rng.randint(0, 4) for x in a]
        table = np.zeros((5, 5))
        for x, y in zip(a, b, strict=True):
            table[x, y] += 1
        with np.errstate(divide="ignore", invalid="ignore"):
            theirs = inter_rater.cohens_kappa(table, wt=weights, return_results=False)
        ours = cohen_kappa(a, b, weights=weights)
        if ours is None:
            assert not np.isfinite(theirs)
        else:
            assert ours == pytest.approx(theirs, abs=1e-12)


def test_cohen_kappa_edge_cases():
    assert cohen_kappa([], []) is None
    assert cohen_kappa([None, 1], [2, None]) is None
    assert cohen_kappa(["a", "a"], ["a", "a"]) is None  # chance agreement already perfect
    assert cohen_kappa([1, 2, None], [1, 2, 3]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        cohen_kappa([1], [1, 2])


# --- consensus ranking ---------------------------------------------------------------------------

IDS = ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize("method", ["ranked_pairs", "borda"])
@given(ranking=groups_strategy(IDS), copies=st.integers(1, 4))
def test_consensus_of_identical_rankings_is_that_ranking(method, ranking, copies):
    expected = [sorted(group) for group in ranking]
    assert consensus_ranking([ranking] * copies, method=method) == expected


def test_ranked_pairs_condorcet_cycle_is_broken_by_the_weakest_majority():
    # a beats b 3-0, b beats c 2-1, c beats a 2-1. Lock a>b (margin 3), then b>c
    # (margin 1, tie-break: winner a/b before c by id order), then c>a would close a cycle.
    rankings = [[["a"], ["b"], ["c"]], [["a"], ["b"], ["c"]], [["c"], ["a"], ["b"]]]
    assert consensus_ranking(rankings) == [["a"], ["b"], ["c"]]
    cycle = [[["a"], ["b"], ["c"]], [["b"], ["c"], ["a"]], [["c"], ["a"], ["b"]]]
    # Every margin is 1 with 2 winning votes: id order locks a>b, then b>c; c>a is skipped.
    assert consensus_ranking(cycle) == [["a"], ["b"], ["c"]]


def test_ranked_pairs_ties_answers_with_equal_support_both_ways():
    rankings = [[["a"], ["b"], ["c"]], [["b"], ["a"], ["c"]]]
    assert consensus_ranking(rankings) == [["a", "b"], ["c"]]


def test_borda_uses_mid_ranks_and_ties_equal_scores():
    rankings = [[["a"], ["b", "c"]], [["c"], ["a"], ["b"]]]
    # Mid-ranks: a 1 + 2 = 3; b 2.5 + 3 = 5.5; c 2.5 + 1 = 3.5.
    assert consensus_ranking(rankings, method="borda") == [["a"], ["c"], ["b"]]
    assert consensus_ranking([[["a"], ["b"]], [["b"], ["a"]]], method="borda") == [["a", "b"]]


def test_consensus_edge_cases():
    assert consensus_ranking([]) == []
    assert consensus_ranking([[]]) == []
    with pytest.raises(ValueError):
        consensus_ranking([[["a"], ["b"]], [["a"], ["c"]]])
    with pytest.raises(ValueError):
        consensus_ranking([[["a"]]], method="plurality")


@given(st.lists(groups_strategy(IDS), min_size=1, max_size=6))
def test_ranked_pairs_groups_hold_no_majority_inside(rankings):
    consensus = consensus_ranking(rankings)
    assert sorted(a for g in consensus for a in g) == IDS
    for group in consensus:
        for x in group:
            for y in group:
                if x < y:
                    vectors = [_pair_ranks(r, x, y) for r in rankings]
                    above = sum(vx < vy for vx, vy in vectors)
                    below = sum(vx > vy for vx, vy in vectors)
                    assert above == below


def _pair_ranks(ranking, x, y):
    ranks = ranks_from_groups(ranking, IDS)
    return ranks[IDS.index(x)], ranks[IDS.index(y)]


# --- Bradley-Terry -------------------------------------------------------------------------------

def test_bradley_terry_recovers_the_order_of_known_strengths():
    rng = np.random.default_rng(6)
    true = {f"ans{i}": s for i, s in enumerate([-2.0, -1.0, 0.0, 1.0, 2.0, 3.0])}
    ids = list(true)
    comparisons = []
    for _ in range(3000):
        x, y = rng.choice(len(ids), size=2, replace=False)
        p_x = 1 / (1 + math.exp(true[ids[y]] - true[ids[x]]))
        comparisons.append((ids[x], ids[y]) if rng.random() < p_x else (ids[y], ids[x]))
    scores = bradley_terry(comparisons)
    assert sorted(scores, key=scores.get) == ids
    assert sum(scores.values()) == pytest.approx(0.0, abs=1e-9)
    # Log-strengths are identified up to a shift; with much data they land near the truth.
    true_mean = sum(true.values()) / len(true)
    for item, value in true.items():
        assert scores[item] == pytest.approx(value - true_mean, abs=0.35)


def test_bradley_terry_gives_finite_scores_to_undefeated_and_winless_items():
    scores = bradley_terry([("a", "b"), ("a", "b"), ("b", "c"), ("a", "c")])
    assert all(math.isfinite(v) for v in scores.values())
    assert scores["a"] > scores["b"] > scores["c"]


def test_bradley_terry_edge_cases():
    assert bradley_terry([]) == {}
    assert bradley_terry([("a", "b")])["a"] > 0
    with pytest.raises(ValueError):
        bradley_terry([("a", "a")])


# --- leave-one-out agreement ---------------------------------------------------------------------

def test_leave_one_out_spots_the_outlier_labeler():
    answers = ["a", "b", "c", "d"]
    straight = [["a"], ["b"], ["c"], ["d"]]
    rankings = {"ann": straight, "bob": straight, "eve": straight, "cat": [["a"], ["b"], ["d"], ["c"]],
                "dan": [["d"], ["c"], ["b"], ["a"]]}
    result = leave_one_out_agreement(rankings, answers)
    # Without ann, c and d split 2-2, so the consensus ties them and that pair is left out.
    assert result["ann"] == (1.0, 5)
    assert result["cat"] == (pytest.approx(5 / 6), 6)
    assert result["dan"] == (0.0, 6)


@pytest.mark.parametrize("method", ["ranked_pairs", "borda"])
def test_leave_one_out_edge_cases(method):
    assert leave_one_out_agreement({}, ["a", "b"], method=method) == {}
    assert leave_one_out_agreement({"ann": [["a"], ["b"]]}, ["a", "b"], method=method) == {"ann": (None, 0)}
    tied = leave_one_out_agreement({"ann": [["a", "b"]], "bob": [["a"], ["b"]]}, ["a", "b"], method=method)
    assert tied == {"ann": (None, 0), "bob": (None, 0)}


# --- never NaN -----------------------------------------------------------------------------------

_cells = st.one_of(st.none(), st.integers(0, 3))


@given(st.lists(st.lists(_cells, min_size=0, max_size=5), min_size=0, max_size=4).filter(
    lambda rows: len({len(r) for r in rows}) <= 1))
def test_no_measure_returns_nan(rows):
    results = [krippendorff_alpha(rows, level) for level in LEVELS]
    complete = [[0 if v is None else v for v in row] for row in rows]
    results += [kendall_w(complete), kendall_w(complete, tie_correction=False)]
    if len(complete) >= 2:
        results += [kendall_tau_b(complete[0], complete[1]), pairwise_agreement(complete[0], complete[1])[0]]
        results += [cohen_kappa(rows[0], rows[1], weights=w) for w in (None, "linear", "quadratic")]
    for value in results:
        assert value is None or math.isfinite(value)
