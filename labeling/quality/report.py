"""Queue-level agreement report for the admin dashboard: whole-queue, per labeler pair, per labeler.

Plain functions on a label frame, vectorised with numpy/pandas so a queue of 10,000 prompts takes well
under a second or two. The measures are the ones in labeling.quality.agreement, pooled: InstructGPT pairwise
agreement (over the answer pairs both sides ordered strictly, the fraction ordered the same way) and
leave-one-out agreement with the Borda consensus of the other labelers. tests/labeling/test_agreement_report.py
checks every figure against a plain loop over labeling.quality.agreement.

Missing values: scalar rates and intervals are None when undefined; in the frames they are pd.NA (nullable
Float64 columns), never NaN.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

LABEL_COLUMNS = ["prompt_id", "labeler_id", "answer_id", "rank"]
PAIR_COLUMNS = ["labeler_a", "labeler_b", "agree", "n", "rate"]
PROMPT_COLUMNS = ["prompt_id", "rankings", "agree", "n", "rate"]
LABELER_COLUMNS = [
    "labeler_id", "rankings", "agree", "n", "rate", "rate_ci_low", "rate_ci_high", "consensus_rate", "consensus_n",
]
REFERENCE_COLUMNS = ["prompt_id", "answer_id", "rank"]
GOLD_COLUMNS = ["labeler_id", "prompts", "agree", "n", "rate"]
# Bootstrap draws held in memory at once (resamples x contributing prompts).
_BOOTSTRAP_CHUNK = 4_000_000


@dataclass(frozen=True)
class QueueAgreement:
    """Pooled pairwise agreement over every labeler pair and prompt of the queue.

    rate is None when n == 0. ci_low/ci_high: percentile bootstrap 95% interval, resampling the prompts
    that contribute at least one pair; None when fewer than 2 contribute. prompts: prompts with at least
    2 labelers.
    """

    rate: float | None
    n: int
    ci_low: float | None
    ci_high: float | None
    prompts: int


@dataclass(frozen=True)
class AgreementReport:
    """queue: the whole queue. pairs: one row per labeler pair that shared a prompt (labeler_a < labeler_b).
    labelers: one row per labeler in the input. prompts: one row per prompt in the input, its agreement
    pooled over its labeler pairs (for the disagreement review). Undefined rates in the frames are pd.NA.
    """

    queue: QueueAgreement
    pairs: pd.DataFrame
    labelers: pd.DataFrame
    prompts: pd.DataFrame


def queue_agreement(labels: pd.DataFrame, *, resamples: int = 1000, seed: int = 0) -> AgreementReport:
    """Agreement report of a queue from one row per (prompt, labeler, answer) with its rank (lower is better).

    Each (prompt, labeler) is one ranking; every ranking of a prompt must rank the same answers. Labeler ids
    must be sortable (labeler_a < labeler_b). Pairs tied by either side are left out, as in
    labeling.quality.agreement.pairwise_agreement. Per labeler: `agree`/`n`/`rate` pool the agreement with every
    other labeler on every shared prompt, `rate_ci_*` bootstrap it over the labeler's contributing prompts,
    `consensus_*` pool the agreement with the Borda consensus (mean mid-rank, ties equal) of the other
    labelers of each prompt. The bootstrap is seeded by `seed`; `resamples=0` gives no intervals.
    Raises ValueError on missing columns, missing ranks, an answer ranked twice in one ranking, or rankings
    of one prompt covering different answers.
    """
    if resamples < 0:
        raise ValueError(f"resamples must be >= 0, not {resamples}.")
    missing = [c for c in LABEL_COLUMNS if c not in labels.columns]
    if missing:
        raise ValueError(f"Label frame lacks columns {missing!r}.")
    rng = np.random.default_rng(seed)
    labeler_ids = np.sort(pd.unique(labels["labeler_id"]))
    if len(labels) == 0:
        return AgreementReport(QueueAgreement(None, 0, None, None, 0), _pair_frame(labeler_ids, *[[]] * 4),
                               _labeler_frame(labeler_ids, *[np.zeros(0, np.int64)] * 5, None, None),
                               _prompt_frame([], [], [], []))

    a = _contribution_arrays(labels, labeler_ids)
    n_labelers = len(labeler_ids)
    q_low, q_high, low, high = _intervals(a.prompt_agree, a.prompt_n, a.ranking_labeler, a.ranking_agree, a.ranking_n,
                                          n_labelers, resamples, rng)
    queue = _queue_result(a.prompt_agree, a.prompt_n, int((a.labelers_per_prompt >= 2).sum()), q_low, q_high)

    pair_key = a.pair_a * n_labelers + a.pair_b
    keys, pair_index = np.unique(pair_key, return_inverse=True)
    pairs = _pair_frame(labeler_ids, keys // n_labelers, keys % n_labelers,
                        np.bincount(pair_index, weights=a.pair_agree, minlength=len(keys)),
                        np.bincount(pair_index, weights=a.pair_n, minlength=len(keys)))

    def per_labeler(weights=None):
        return np.bincount(a.ranking_labeler, weights=weights, minlength=n_labelers)

    labelers = _labeler_frame(
        labeler_ids, per_labeler(), per_labeler(a.ranking_agree), per_labeler(a.ranking_n),
        per_labeler(a.consensus_agree), per_labeler(a.consensus_n), low, high,
    )
    prompts = _prompt_frame(a.prompt_ids, a.labelers_per_prompt, a.prompt_agree, a.prompt_n)
    return AgreementReport(queue, pairs, labelers, prompts)


@dataclass(frozen=True)
class Contributions:
    """What each prompt adds to the sums of queue_agreement (labeling.quality.aggregates stores them per prompt).

    prompts: prompt_id, rankings, agree, n (in input order). prompt_pairs: prompt_id, labeler_a, labeler_b, agree,
    n, one row per labeler pair that ranked the prompt (labeler_a < labeler_b). prompt_labelers: prompt_id,
    labeler_id, agree, n (with the prompt's other labelers), consensus_agree, consensus_n (with the others'
    consensus), one row per ranking.
    """

    prompts: pd.DataFrame
    prompt_pairs: pd.DataFrame
    prompt_labelers: pd.DataFrame


def prompt_contributions(labels: pd.DataFrame) -> Contributions:
    """Each prompt's counts in queue_agreement(labels): summed over prompts they give its figures exactly.

    Raises ValueError as queue_agreement does.
    """
    missing = [c for c in LABEL_COLUMNS if c not in labels.columns]
    if missing:
        raise ValueError(f"Label frame lacks columns {missing!r}.")
    labeler_ids = np.sort(pd.unique(labels["labeler_id"]))
    if len(labels) == 0:
        empty = np.zeros(0, np.int64)
        return Contributions(
            pd.DataFrame({"prompt_id": empty, "rankings": empty, "agree": empty, "n": empty}),
            pd.DataFrame({c: empty for c in ["prompt_id", "labeler_a", "labeler_b", "agree", "n"]}),
            pd.DataFrame({c: empty for c in [
                "prompt_id", "labeler_id", "agree", "n", "consensus_agree", "consensus_n"]}),
        )
    a = _contribution_arrays(labels, labeler_ids)
    prompt_ids = np.asarray(a.prompt_ids)
    return Contributions(
        pd.DataFrame({"prompt_id": prompt_ids, "rankings": a.labelers_per_prompt, "agree": a.prompt_agree,
                      "n": a.prompt_n}),
        pd.DataFrame({"prompt_id": prompt_ids[a.pair_prompt], "labeler_a": labeler_ids[a.pair_a],
                      "labeler_b": labeler_ids[a.pair_b], "agree": a.pair_agree, "n": a.pair_n}),
        pd.DataFrame({"prompt_id": prompt_ids[a.ranking_prompt], "labeler_id": labeler_ids[a.ranking_labeler],
                      "agree": a.ranking_agree, "n": a.ranking_n, "consensus_agree": a.consensus_agree,
                      "consensus_n": a.consensus_n}),
    )


def agreement_intervals(prompts: pd.DataFrame, prompt_labelers: pd.DataFrame, *, resamples: int = 1000,
                        seed: int = 0) -> tuple[float | None, float | None, pd.DataFrame]:
    """The bootstrap intervals of queue_agreement from per-prompt counts (prompt_contributions' frames).

    prompts: prompt_id, agree, n; prompt_labelers: prompt_id, labeler_id, agree, n. Both sorted by prompt_id,
    as queue_agreement sees the labels of ranking_labels. Returns the queue's (ci_low, ci_high) and a frame
    labeler_id, rate_ci_low, rate_ci_high (pd.NA when undefined) for the labelers of prompt_labelers, sorted:
    with the same seed, the very intervals queue_agreement draws.
    """
    if resamples < 0:
        raise ValueError(f"resamples must be >= 0, not {resamples}.")
    labeler_ids = np.sort(pd.unique(prompt_labelers["labeler_id"]))
    labeler = np.searchsorted(labeler_ids, prompt_labelers["labeler_id"].to_numpy()).astype(np.int64)
    order = np.argsort(labeler, kind="stable")  # by labeler, then prompt: the rows come in prompt order
    q_low, q_high, low, high = _intervals(
        prompts["agree"].to_numpy(np.int64), prompts["n"].to_numpy(np.int64), labeler[order],
        prompt_labelers["agree"].to_numpy(np.int64)[order], prompt_labelers["n"].to_numpy(np.int64)[order],
        len(labeler_ids), resamples, np.random.default_rng(seed), sorted_by_labeler=True,
    )
    frame = pd.DataFrame({"labeler_id": labeler_ids, "rate_ci_low": _nullable(low), "rate_ci_high": _nullable(high)})
    return q_low, q_high, frame


@dataclass(frozen=True)
class _Arrays:
    """Per prompt (by prompt code), per prompt x labeler pair and per ranking counts; labelers as codes."""

    prompt_ids: np.ndarray
    labelers_per_prompt: np.ndarray
    prompt_agree: np.ndarray
    prompt_n: np.ndarray
    pair_prompt: np.ndarray
    pair_a: np.ndarray
    pair_b: np.ndarray
    pair_agree: np.ndarray
    pair_n: np.ndarray
    ranking_prompt: np.ndarray  # rankings in (prompt, labeler) order
    ranking_labeler: np.ndarray
    ranking_agree: np.ndarray
    ranking_n: np.ndarray
    consensus_agree: np.ndarray
    consensus_n: np.ndarray


def _contribution_arrays(labels: pd.DataFrame, labeler_ids: np.ndarray) -> _Arrays:
    prompt_codes, prompt_ids = pd.factorize(labels["prompt_id"])
    prompt = prompt_codes.astype(np.int64)
    labeler = np.searchsorted(labeler_ids, labels["labeler_id"].to_numpy()).astype(np.int64)
    answer = pd.factorize(labels["answer_id"])[0].astype(np.int64)
    rank = labels["rank"].to_numpy(dtype=float, na_value=np.nan)
    if np.isnan(rank).any():
        raise ValueError("Every label needs a rank.")
    n_labelers = len(labeler_ids)
    ranking = prompt * n_labelers + labeler

    # Rows by (prompt, labeler, answer): each ranking is a run of rows.
    order = np.lexsort((answer, labeler, prompt))
    prompt, labeler, answer, rank, ranking = prompt[order], labeler[order], answer[order], rank[order], ranking[order]
    if ((np.diff(ranking) == 0) & (np.diff(answer) == 0)).any():
        raise ValueError("An answer is ranked twice in one ranking.")
    ranking_size = _run_sizes(ranking)
    ranking_start = np.cumsum(ranking_size) - ranking_size
    ranking_prompt = prompt[ranking_start]
    ranking_labeler = labeler[ranking_start]
    n_prompts = int(prompt.max()) + 1
    # One compact code per (prompt, answer), in (prompt, answer) order. Compact: `cell` indexes bincounts,
    # and prompt x answer codes would make those as large as prompts times all answers (59 GiB at 30,000).
    stride = int(answer.max()) + 1
    cell_keys, cell = np.unique(prompt * stride + answer, return_inverse=True)
    answers_per_prompt = np.bincount(cell_keys // stride, minlength=n_prompts)
    if (ranking_size != answers_per_prompt[ranking_prompt]).any():
        raise ValueError("The rankings of a prompt must all rank the same answers.")
    labelers_per_prompt = np.bincount(ranking_prompt, minlength=n_prompts)
    # Twice the mid-rank (ties share the mean position) is an integer, so sums compare exactly.
    mid2 = (2 * pd.Series(rank).groupby(ranking).rank(method="average").to_numpy()).astype(np.int64)

    # --- labeler pairs: join the rows of one (prompt, answer) across labelers, then pair the answers.
    by_answer = np.lexsort((labeler, answer, prompt))
    left, right = _pairs_within(_run_sizes(cell[by_answer]))
    left, right = by_answer[left], by_answer[right]  # labeler[left] < labeler[right]
    joint_prompt, joint_a, joint_b = prompt[left], labeler[left], labeler[right]
    joint_order = np.lexsort((answer[left], joint_b, joint_a, joint_prompt))
    rank_a, rank_b = rank[left][joint_order], rank[right][joint_order]
    joint_prompt, joint_a, joint_b = joint_prompt[joint_order], joint_a[joint_order], joint_b[joint_order]
    joint_key = (joint_prompt * n_labelers + joint_a) * n_labelers + joint_b
    group_size = _run_sizes(joint_key)
    group_start = np.cumsum(group_size) - group_size
    pp_agree, pp_n = _agreement_within(group_size, rank_a, rank_b)
    pp_prompt, pp_a, pp_b = joint_prompt[group_start], joint_a[group_start], joint_b[group_start]

    # --- rankings: each prompt x pair row counts for both of its labelers.
    ranking_key = ranking[ranking_start]  # sorted
    both = np.r_[np.searchsorted(ranking_key, pp_prompt * n_labelers + pp_a),
                 np.searchsorted(ranking_key, pp_prompt * n_labelers + pp_b)]
    n_rankings = len(ranking_key)
    ranking_agree = np.bincount(both, weights=np.r_[pp_agree, pp_agree], minlength=n_rankings).astype(np.int64)
    ranking_n = np.bincount(both, weights=np.r_[pp_n, pp_n], minlength=n_rankings).astype(np.int64)

    # --- leave-one-out consensus: the others' mid-rank sum per answer (the Borda score, lower is better).
    others = np.bincount(cell, weights=mid2)[cell].astype(np.int64) - mid2
    shared = labelers_per_prompt[ranking_prompt] >= 2
    keep = np.repeat(shared, ranking_size)
    consensus_agree, consensus_n = np.zeros(n_rankings, np.int64), np.zeros(n_rankings, np.int64)
    consensus_agree[shared], consensus_n[shared] = _agreement_within(ranking_size[shared], mid2[keep], others[keep])

    return _Arrays(
        prompt_ids=np.asarray(prompt_ids), labelers_per_prompt=labelers_per_prompt,
        prompt_agree=np.bincount(pp_prompt, weights=pp_agree, minlength=n_prompts).astype(np.int64),
        prompt_n=np.bincount(pp_prompt, weights=pp_n, minlength=n_prompts).astype(np.int64),
        pair_prompt=pp_prompt, pair_a=pp_a, pair_b=pp_b, pair_agree=pp_agree, pair_n=pp_n,
        ranking_prompt=ranking_prompt, ranking_labeler=ranking_labeler, ranking_agree=ranking_agree,
        ranking_n=ranking_n, consensus_agree=consensus_agree, consensus_n=consensus_n,
    )


def _intervals(prompt_agree: np.ndarray, prompt_n: np.ndarray, ranking_labeler: np.ndarray, ranking_agree: np.ndarray,
               ranking_n: np.ndarray, n_labelers: int, resamples: int, rng: np.random.Generator, *,
               sorted_by_labeler: bool = False) -> tuple[float | None, float | None, np.ndarray, np.ndarray]:
    """The queue's interval over its contributing prompts, then each labeler's over theirs, from one rng.

    Rankings come in (prompt, labeler) order, or (labeler, prompt) order with sorted_by_labeler.
    """
    contributing = prompt_n > 0
    q_low, q_high = _bootstrap_ci(prompt_agree[contributing], prompt_n[contributing],
                                  np.zeros(int(contributing.sum()), np.int64), 1, resamples, rng)
    order = np.arange(len(ranking_labeler)) if sorted_by_labeler else np.argsort(ranking_labeler, kind="stable")
    used = order[ranking_n[order] > 0]
    low, high = _bootstrap_ci(ranking_agree[used], ranking_n[used], ranking_labeler[used], n_labelers, resamples, rng)
    return (None if np.isnan(q_low[0]) else float(q_low[0]), None if np.isnan(q_high[0]) else float(q_high[0]),
            low, high)


def gold_agreement(labels: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Each labeler's pairwise agreement with the reference rankings of gold prompts.

    labels: one row per (prompt, labeler, answer) with its rank; reference: one row per (prompt, answer) with
    the reference rank (lower is better). Labels of answers or prompts the reference lacks are ignored; the
    pairs of each ranking are those of the answers both sides ranked, and pairs tied by either side are left
    out, as in labeling.quality.agreement.pairwise_agreement. One row per labeler of `labels`, sorted: `prompts` is the
    gold prompts they ranked, `agree`/`n` pool the pairs over them, `rate` is pd.NA when n == 0.
    Raises ValueError on missing columns, missing ranks, or an answer ranked twice in one ranking or in the
    reference.
    """
    missing = [c for c in LABEL_COLUMNS if c not in labels.columns]
    missing += [c for c in REFERENCE_COLUMNS if c not in reference.columns]
    if missing:
        raise ValueError(f"Label or reference frame lacks columns {missing!r}.")
    labeler_ids = np.sort(pd.unique(labels["labeler_id"]))
    joined = labels[LABEL_COLUMNS].merge(
        reference[REFERENCE_COLUMNS], on=["prompt_id", "answer_id"], suffixes=("", "_reference")
    )
    if joined.duplicated(["prompt_id", "labeler_id", "answer_id"]).any():
        raise ValueError("An answer is ranked twice in one ranking or in the reference.")
    if joined[["rank", "rank_reference"]].isna().to_numpy().any():
        raise ValueError("Every label and reference answer needs a rank.")

    labeler = np.searchsorted(labeler_ids, joined["labeler_id"].to_numpy()).astype(np.int64)
    prompt = pd.factorize(joined["prompt_id"])[0].astype(np.int64)
    ranking = labeler * (int(prompt.max(initial=0)) + 1) + prompt
    order = np.argsort(ranking, kind="stable")  # each ranking is a run of rows
    ranking_size = _run_sizes(ranking[order])
    ranking_labeler = labeler[order][np.cumsum(ranking_size) - ranking_size]
    agree, n = _agreement_within(ranking_size, joined["rank"].to_numpy(dtype=float)[order],
                                 joined["rank_reference"].to_numpy(dtype=float)[order])
    count = len(labeler_ids)
    agree = np.bincount(ranking_labeler, weights=agree, minlength=count).astype(np.int64)
    n = np.bincount(ranking_labeler, weights=n, minlength=count).astype(np.int64)
    return pd.DataFrame({
        "labeler_id": labeler_ids, "prompts": np.bincount(ranking_labeler, minlength=count),
        "agree": agree, "n": n, "rate": _rate(agree, n),
    }, columns=GOLD_COLUMNS)


def _run_sizes(keys: np.ndarray) -> np.ndarray:
    """Lengths of the runs of equal consecutive values in `keys`."""
    if len(keys) == 0:
        return np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return np.diff(np.r_[starts, len(keys)])


def _pairs_within(sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions (i, j), i < j, of every pair of rows inside each run of `sizes` consecutive rows."""
    sizes = np.asarray(sizes, dtype=np.int64)
    starts = np.cumsum(sizes) - sizes
    offset = np.arange(sizes.sum()) - np.repeat(starts, sizes)
    partners = np.repeat(sizes, sizes) - 1 - offset
    left = np.repeat(np.arange(len(offset)), partners)
    block_start = np.cumsum(partners) - partners
    right = left + 1 + np.arange(len(left)) - np.repeat(block_start, partners)
    return left, right


def _agreement_within(sizes: np.ndarray, r1: np.ndarray, r2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per run of `sizes` rows: (pairs ordered the same way, pairs both ordered strictly), as in pairwise_agreement."""
    left, right = _pairs_within(sizes)
    same = np.sign(r1[left] - r1[right]) * np.sign(r2[left] - r2[right])
    run = np.repeat(np.arange(len(sizes)), sizes * (sizes - 1) // 2)
    agree = np.bincount(run, weights=same > 0, minlength=len(sizes)).astype(np.int64)
    used = np.bincount(run, weights=same != 0, minlength=len(sizes)).astype(np.int64)
    return agree, used


def pooled_queue_agreement(chunks: Iterable[pd.DataFrame], *, resamples: int = 1000, seed: int = 0) -> QueueAgreement:
    """`queue_agreement(labels).queue` from label frames read a few prompts at a time.

    Each frame holds whole prompts (every ranking of a prompt in one frame). Memory: one frame's labels
    plus two counts per prompt, whatever the queue's size (a dataset card's figure). Equal to the figure
    of the frames concatenated, in the same order.
    """
    agree, n, prompts = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], 0
    for labels in chunks:
        per_prompt = queue_agreement(labels, resamples=0).prompts
        agree.append(per_prompt["agree"].to_numpy(np.int64))
        n.append(per_prompt["n"].to_numpy(np.int64))
        prompts += int((per_prompt["rankings"] >= 2).sum())
    return _queue_figure(np.concatenate(agree), np.concatenate(n), prompts, resamples, np.random.default_rng(seed))


def _queue_figure(prompt_agree: np.ndarray, prompt_n: np.ndarray, prompts: int, resamples: int,
                  rng: np.random.Generator) -> QueueAgreement:
    """The pooled figure from each prompt's agreeing and compared pairs, bootstrapped over prompts."""
    contributing = prompt_n > 0
    low, high = _bootstrap_ci(prompt_agree[contributing], prompt_n[contributing],
                              np.zeros(int(contributing.sum()), np.int64), 1, resamples, rng)
    return _queue_result(prompt_agree, prompt_n, prompts, None if np.isnan(low[0]) else float(low[0]),
                         None if np.isnan(high[0]) else float(high[0]))


def _queue_result(prompt_agree: np.ndarray, prompt_n: np.ndarray, prompts: int, low: float | None,
                  high: float | None) -> QueueAgreement:
    total_agree, total_n = int(prompt_agree.sum()), int(prompt_n.sum())
    return QueueAgreement(rate=total_agree / total_n if total_n else None, n=total_n, ci_low=low, ci_high=high,
                          prompts=prompts)


def _bootstrap_ci(agree: np.ndarray, n: np.ndarray, group: np.ndarray, n_groups: int, resamples: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Percentile 95% interval of each group's pooled rate sum(agree) / sum(n), resampling its items.

    Items are the rows of `agree`/`n` (one per prompt, every n > 0), sorted by `group`. Each resample draws,
    for every group of m items, m item positions uniformly with replacement (rng.integers(0, m)), all groups
    in one row of draws. NaN for groups with fewer than 2 items or when resamples == 0.
    """
    low, high = np.full(n_groups, np.nan), np.full(n_groups, np.nan)
    sizes = np.bincount(group, minlength=n_groups)
    eligible = sizes >= 2
    if resamples == 0 or not eligible.any():
        return low, high
    keep = eligible[group]
    agree, n, sizes = agree[keep], n[keep], sizes[eligible]
    starts = np.cumsum(sizes) - sizes
    item_start, item_size = np.repeat(starts, sizes), np.repeat(sizes, sizes)
    rates = np.empty((resamples, len(sizes)))
    chunk = max(1, _BOOTSTRAP_CHUNK // len(agree))
    for first in range(0, resamples, chunk):  # chunks of resamples, to bound memory
        count = min(chunk, resamples - first)
        draw = item_start + rng.integers(0, item_size, size=(count, len(agree)))
        rates[first:first + count] = np.add.reduceat(agree[draw], starts, axis=1) / np.add.reduceat(
            n[draw], starts, axis=1)
    low[eligible], high[eligible] = np.percentile(rates, [2.5, 97.5], axis=0)
    return low, high


def _rate(agree: np.ndarray, n: np.ndarray) -> pd.Series:
    agree, n = np.asarray(agree, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _nullable(np.where(n > 0, agree / n, np.nan))


def _nullable(values: np.ndarray) -> pd.Series:
    """Float64 with pd.NA where the value is undefined."""
    return pd.Series(pd.array(np.asarray(values, dtype=float), dtype="Float64")).where(~np.isnan(values), pd.NA)


def _pair_frame(labeler_ids: np.ndarray, a, b, agree, n) -> pd.DataFrame:
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    agree, n = np.asarray(agree, dtype=np.int64), np.asarray(n, dtype=np.int64)
    return pd.DataFrame({
        "labeler_a": labeler_ids[a], "labeler_b": labeler_ids[b], "agree": agree, "n": n, "rate": _rate(agree, n),
    }, columns=PAIR_COLUMNS)


def _prompt_frame(prompt_ids, rankings, agree, n) -> pd.DataFrame:
    agree, n = np.asarray(agree, dtype=np.int64), np.asarray(n, dtype=np.int64)
    return pd.DataFrame({
        "prompt_id": np.asarray(prompt_ids), "rankings": np.asarray(rankings, dtype=np.int64), "agree": agree, "n": n,
        "rate": _rate(agree, n),
    }, columns=PROMPT_COLUMNS)


def _labeler_frame(labeler_ids: np.ndarray, rankings, agree, n, consensus_agree, consensus_n, low, high
                   ) -> pd.DataFrame:
    count = len(labeler_ids)
    ints = [np.asarray(x, dtype=np.int64) for x in (rankings, agree, n, consensus_agree, consensus_n)]
    rankings, agree, n, consensus_agree, consensus_n = ints
    low = np.full(count, np.nan) if low is None else low
    high = np.full(count, np.nan) if high is None else high
    return pd.DataFrame({
        "labeler_id": labeler_ids, "rankings": rankings, "agree": agree, "n": n, "rate": _rate(agree, n),
        "rate_ci_low": _nullable(low), "rate_ci_high": _nullable(high),
        "consensus_rate": _rate(consensus_agree, consensus_n), "consensus_n": consensus_n,
    }, columns=LABELER_COLUMNS)
