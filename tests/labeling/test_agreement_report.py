"""labeling.quality.report against a plain loop over labeling.quality.agreement, plus edge cases.

No database: the report takes a label frame.
"""
import math
import random
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labeling.quality import report as agreement_report
from labeling.quality.agreement import leave_one_out_agreement, pairwise_agreement
from labeling.quality.report import LABELER_COLUMNS, PAIR_COLUMNS, PROMPT_COLUMNS, queue_agreement
from labeling.ranking import ranks_from_groups

COLUMNS = ["prompt_id", "labeler_id", "answer_id", "rank"]


def random_labels(rng: random.Random, prompts: int, pool: int, max_labelers: int, max_answers: int,
                  tie_levels: int) -> pd.DataFrame:
    """Competition ranks with ties (values drawn from 1..tie_levels), shuffled rows, some solo prompts."""
    rows = []
    labelers = [f"lab{i:02d}" for i in range(pool)]
    for p in range(prompts):
        answers = [f"p{p}-a{j}" for j in range(rng.randint(1, max_answers))]
        for labeler in rng.sample(labelers, rng.randint(1, min(max_labelers, pool))):
            ranks = ranks_from_groups(_groups(answers, [rng.randint(1, tie_levels) for _ in answers]), answers)
            rows += [(f"prompt{p}", labeler, a, r) for a, r in zip(answers, ranks, strict=True)]
    rng.shuffle(rows)
    return pd.DataFrame(rows, columns=COLUMNS)


def _groups(answers, values):
    """Tie groups, best first, of answers by value (lower is better)."""
    by_value = defaultdict(list)
    for answer, value in zip(answers, values, strict=True):
        by_value[value].append(answer)
    return [by_value[v] for v in sorted(by_value)]


def reference(labels: pd.DataFrame, resamples: int, seed: int):
    """The report by a plain loop over prompts and labeler pairs, built on labeling.quality.agreement."""
    rankings = defaultdict(dict)  # prompt -> labeler -> {answer: rank}, prompts in first-appearance order
    for prompt, labeler, answer, rank in labels[COLUMNS].itertuples(index=False):
        rankings[prompt].setdefault(labeler, {})[answer] = rank
    pair_totals = defaultdict(lambda: [0, 0])
    labeler_prompt = defaultdict(lambda: [0, 0])  # (labeler, prompt) -> [agree, n]
    consensus = defaultdict(lambda: [0, 0])
    prompt_totals = {}
    for prompt, by_labeler in rankings.items():
        answers = sorted(next(iter(by_labeler.values())))
        vectors = {lab: [r[a] for a in answers] for lab, r in by_labeler.items()}
        agree_p = n_p = 0
        for a in sorted(vectors):
            for b in sorted(vectors):
                if a < b:
                    rate, n = pairwise_agreement(vectors[a], vectors[b])
                    agree = round(rate * n) if n else 0
                    pair_totals[a, b][0] += agree
                    pair_totals[a, b][1] += n
                    for lab in (a, b):
                        labeler_prompt[lab, prompt][0] += agree
                        labeler_prompt[lab, prompt][1] += n
                    agree_p, n_p = agree_p + agree, n_p + n
        prompt_totals[prompt] = (agree_p, n_p)
        if len(vectors) >= 2:
            groups = {lab: _groups(answers, v) for lab, v in vectors.items()}
            for lab, (rate, n) in leave_one_out_agreement(groups, answers, method="borda").items():
                consensus[lab][0] += round(rate * n) if n else 0
                consensus[lab][1] += n
    rng = np.random.default_rng(seed)
    queue_items = [t for t in prompt_totals.values() if t[1] > 0]
    queue_ci = _reference_bootstrap([queue_items], resamples, rng)[0]
    labeler_ids = sorted(set(labels["labeler_id"]))
    prompt_order = {p: i for i, p in enumerate(rankings)}
    items = [sorted(((prompt_order[p], tuple(t)) for (lab, p), t in labeler_prompt.items() if lab == lid and t[1]))
             for lid in labeler_ids]
    labeler_ci = _reference_bootstrap([[t for _, t in group] for group in items], resamples, rng)
    return pair_totals, labeler_prompt, consensus, prompt_totals, queue_ci, labeler_ci, rankings


def _reference_bootstrap(groups, resamples, rng):
    """The documented draw: one rng.integers(0, m) per item of every group of >= 2 items, per resample."""
    eligible = [g for g in groups if len(g) >= 2]
    result = [(None, None)] * len(groups)
    if not eligible or not resamples:
        return result
    highs = np.concatenate([np.full(len(g), len(g)) for g in eligible])
    draws = rng.integers(0, highs, size=(resamples, len(highs)))
    rates = defaultdict(list)
    for row in draws:
        position = 0
        for k, g in enumerate(eligible):
            picked = [g[int(i)] for i in row[position:position + len(g)]]
            rates[k].append(sum(a for a, _ in picked) / sum(n for _, n in picked))
            position += len(g)
    cis = iter([tuple(np.percentile(rates[k], [2.5, 97.5])) for k in range(len(eligible))])
    return [next(cis) if len(g) >= 2 else (None, None) for g in groups]


def _value(x):
    return None if x is pd.NA else x


def check_against_reference(labels: pd.DataFrame, resamples: int = 50, seed: int = 0) -> None:
    report = queue_agreement(labels, resamples=resamples, seed=seed)
    pair_totals, labeler_prompt, consensus, prompt_totals, queue_ci, labeler_ci, rankings = reference(
        labels, resamples, seed)

    agree = sum(a for a, _ in prompt_totals.values())
    n = sum(n for _, n in prompt_totals.values())
    q = report.queue
    assert (q.n, q.prompts) == (n, sum(len(v) >= 2 for v in rankings.values()))
    assert q.rate == (agree / n if n else None)
    if queue_ci[0] is None:
        assert (q.ci_low, q.ci_high) == (None, None)
    else:
        assert (q.ci_low, q.ci_high) == pytest.approx(queue_ci, abs=1e-12)

    pairs = report.pairs
    assert list(pairs.columns) == PAIR_COLUMNS
    assert {(a, b): [ag, n] for a, b, ag, n in pairs[["labeler_a", "labeler_b", "agree", "n"]].itertuples(
        index=False)} == {k: v for k, v in pair_totals.items()}
    for row in pairs.itertuples(index=False):
        assert row.labeler_a < row.labeler_b
        assert _value(row.rate) == (pytest.approx(row.agree / row.n) if row.n else None)

    prompts = report.prompts
    assert list(prompts.columns) == PROMPT_COLUMNS
    assert {row.prompt_id: (row.rankings, row.agree, row.n) for row in prompts.itertuples(index=False)} == {
        p: (len(rankings[p]), *prompt_totals[p]) for p in rankings}
    for row in prompts.itertuples(index=False):
        assert _value(row.rate) == (pytest.approx(row.agree / row.n) if row.n else None)

    labelers = report.labelers
    assert list(labelers.columns) == LABELER_COLUMNS
    assert list(labelers["labeler_id"]) == sorted(set(labels["labeler_id"]))
    for row, ci in zip(labelers.itertuples(index=False), labeler_ci, strict=True):
        lid = row.labeler_id
        ag = sum(t[0] for (lab, _), t in labeler_prompt.items() if lab == lid)
        nn = sum(t[1] for (lab, _), t in labeler_prompt.items() if lab == lid)
        assert row.rankings == sum(lid in v for v in rankings.values())
        assert (row.agree, row.n) == (ag, nn)
        assert _value(row.rate) == (pytest.approx(ag / nn) if nn else None)
        c_agree, c_n = consensus.get(lid, [0, 0])
        assert row.consensus_n == c_n
        assert _value(row.consensus_rate) == (pytest.approx(c_agree / c_n) if c_n else None)
        low, high = _value(row.rate_ci_low), _value(row.rate_ci_high)
        if ci[0] is None:
            assert (low, high) == (None, None)
        else:
            assert (low, high) == pytest.approx(ci, abs=1e-12)


# --- against the reference loop ------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(8))
def test_report_matches_the_reference_loop_on_random_queues_with_ties(seed):
    rng = random.Random(seed)
    labels = random_labels(rng, prompts=rng.randint(1, 40), pool=rng.randint(1, 6), max_labelers=4,
                           max_answers=7, tie_levels=rng.choice([2, 4, 9]))
    check_against_reference(labels, resamples=40, seed=seed)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), prompts=st.integers(1, 12), pool=st.integers(1, 5), tie_levels=st.integers(1, 5))
def test_report_matches_the_reference_loop_hypothesis(seed, prompts, pool, tie_levels):
    labels = random_labels(random.Random(seed), prompts, pool, max_labelers=5, max_answers=6, tie_levels=tie_levels)
    check_against_reference(labels, resamples=20, seed=seed)


def test_bootstrap_chunks_draw_the_same_stream(monkeypatch):
    labels = random_labels(random.Random(11), prompts=60, pool=4, max_labelers=3, max_answers=6, tie_levels=4)
    whole = queue_agreement(labels, resamples=30, seed=3)
    monkeypatch.setattr(agreement_report, "_BOOTSTRAP_CHUNK", 50)  # a few resamples per chunk
    chunked = queue_agreement(labels, resamples=30, seed=3)
    assert chunked.queue == whole.queue
    pd.testing.assert_frame_equal(chunked.labelers, whole.labelers)
    check_against_reference(labels, resamples=30, seed=3)


# --- bootstrap behaviour -------------------------------------------------------------------------

def test_interval_is_seeded_and_brackets_the_rate():
    labels = random_labels(random.Random(5), prompts=300, pool=5, max_labelers=3, max_answers=6, tie_levels=5)
    a = queue_agreement(labels, resamples=300, seed=1)
    assert a.queue == queue_agreement(labels, resamples=300, seed=1).queue
    assert a.queue.ci_low != queue_agreement(labels, resamples=300, seed=2).queue.ci_low
    assert 0.0 <= a.queue.ci_low < a.queue.rate < a.queue.ci_high <= 1.0
    for row in a.labelers.itertuples(index=False):
        assert row.rate_ci_low <= row.rate <= row.rate_ci_high


def test_identical_rankings_give_a_degenerate_interval_at_one():
    rows = [(p, lab, a, r) for p in range(5) for lab in ("x", "y") for a, r in zip("abc", (1, 2, 2), strict=True)]
    report = queue_agreement(pd.DataFrame(rows, columns=COLUMNS), resamples=50)
    assert report.queue == agreement_report.QueueAgreement(1.0, 10, 1.0, 1.0, 5)
    assert list(report.labelers["consensus_rate"]) == [1.0, 1.0]


def test_no_resamples_means_no_interval():
    labels = random_labels(random.Random(6), prompts=30, pool=3, max_labelers=3, max_answers=5, tie_levels=4)
    report = queue_agreement(labels, resamples=0)
    assert (report.queue.ci_low, report.queue.ci_high) == (None, None)
    assert report.labelers["rate_ci_low"].isna().all()
    with pytest.raises(ValueError):
        queue_agreement(labels, resamples=-1)


# --- edge cases ----------------------------------------------------------------------------------

def test_empty_frame():
    report = queue_agreement(pd.DataFrame(columns=COLUMNS))
    assert report.queue == agreement_report.QueueAgreement(None, 0, None, None, 0)
    assert list(report.pairs.columns) == PAIR_COLUMNS and report.pairs.empty
    assert list(report.labelers.columns) == LABELER_COLUMNS and report.labelers.empty
    assert list(report.prompts.columns) == PROMPT_COLUMNS and report.prompts.empty


def test_one_labeler():
    rows = [(p, "solo", a, r) for p in range(3) for a, r in zip("abc", (1, 2, 3), strict=True)]
    report = queue_agreement(pd.DataFrame(rows, columns=COLUMNS))
    assert report.queue == agreement_report.QueueAgreement(None, 0, None, None, 0)
    assert report.pairs.empty
    row = report.labelers.iloc[0]
    assert (row.labeler_id, row.rankings, row.n, row.consensus_n) == ("solo", 3, 0, 0)
    assert row.rate is pd.NA and row.consensus_rate is pd.NA and row.rate_ci_low is pd.NA


def test_all_ties_leave_nothing_to_compare():
    rows = [(p, lab, a, 1) for p in range(4) for lab in ("x", "y", "z") for a in "abcd"]
    report = queue_agreement(pd.DataFrame(rows, columns=COLUMNS))
    assert report.queue == agreement_report.QueueAgreement(None, 0, None, None, 4)
    assert list(report.pairs["n"]) == [0, 0, 0]
    assert report.pairs["rate"].isna().all()
    assert report.labelers[["rate", "rate_ci_low", "rate_ci_high", "consensus_rate"]].isna().all().all()


def test_rates_are_nullable_floats_not_nan():
    labels = random_labels(random.Random(7), prompts=20, pool=6, max_labelers=2, max_answers=4, tie_levels=2)
    report = queue_agreement(labels, resamples=20)
    for frame, columns in ((report.pairs, ["rate"]),
                           (report.labelers, ["rate", "rate_ci_low", "rate_ci_high", "consensus_rate"])):
        for column in columns:
            assert frame[column].dtype == "Float64"
            assert not any(isinstance(v, float) and math.isnan(v) for v in frame[column].tolist())
    q = report.queue
    assert all(v is None or (isinstance(v, float) and math.isfinite(v)) for v in (q.rate, q.ci_low, q.ci_high))
    assert type(q.n) is int and type(q.prompts) is int


def test_single_labeler_prompts_do_not_count():
    rows = [("p1", "x", "a", 1), ("p1", "x", "b", 2), ("p1", "y", "a", 2), ("p1", "y", "b", 1),
            ("p2", "z", "a", 1), ("p2", "z", "b", 2)]
    report = queue_agreement(pd.DataFrame(rows, columns=COLUMNS))
    assert report.queue == agreement_report.QueueAgreement(0.0, 1, None, None, 1)
    z = report.labelers.set_index("labeler_id").loc["z"]
    assert (z.rankings, z.n, z.consensus_n) == (1, 0, 0)


@pytest.mark.parametrize("rows", [
    [("p", "x", "a", 1), ("p", "x", "a", 2)],  # an answer twice in one ranking
    [("p", "x", "a", 1), ("p", "x", "b", 2), ("p", "y", "a", 1)],  # rankings covering different answers
    [("p", "x", "a", None)],  # no rank
])
def test_refuses_malformed_labels(rows):
    with pytest.raises(ValueError):
        queue_agreement(pd.DataFrame(rows, columns=COLUMNS))


def test_refuses_missing_columns():
    with pytest.raises(ValueError):
        queue_agreement(pd.DataFrame(columns=["prompt_id", "labeler_id", "rank"]))


def test_memory_grows_with_the_labels_not_with_prompts_times_answers():
    """Answer ids are unique across a queue (as in the database): 4,000 prompts x 3 answers x 2 labelers.

    Codes per (prompt, answer) made as prompt x all answers would index a 4,000 x 12,000 bincount (384 MB).
    """
    import tracemalloc

    prompts, answers = 4_000, 3
    prompt = np.repeat(np.arange(prompts), 2 * answers)
    labeler = np.tile(np.repeat([1, 2], answers), prompts)
    answer = prompt * answers + np.tile(np.arange(answers), 2 * prompts)
    rank = np.tile([1, 2, 3, 1, 3, 2], prompts)
    labels = pd.DataFrame({"prompt_id": prompt, "labeler_id": labeler, "answer_id": answer, "rank": rank})
    tracemalloc.start()
    try:
        report = queue_agreement(labels, resamples=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert report.queue.rate == pytest.approx(2 / 3) and report.queue.prompts == prompts
    assert peak < 40 * 2**20, f"peak {peak / 2**20:.0f} MiB"


@given(seed=st.integers(0, 10_000), chunk=st.integers(1, 7))
@settings(max_examples=25, deadline=None)
def test_the_pooled_figure_from_chunks_of_prompts_equals_the_whole_queues(seed, chunk):
    labels = random_labels(random.Random(seed), prompts=15, pool=5, max_labelers=4, max_answers=5, tie_levels=3)
    labels = labels.sort_values("prompt_id", kind="stable")
    prompt_ids = labels["prompt_id"].unique()
    chunks = (labels[labels["prompt_id"].isin(prompt_ids[i : i + chunk])] for i in range(0, len(prompt_ids), chunk))
    assert agreement_report.pooled_queue_agreement(chunks, resamples=200, seed=3) == queue_agreement(
        labels, resamples=200, seed=3
    ).queue
