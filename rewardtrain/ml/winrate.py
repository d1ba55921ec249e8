"""Win rates from blinded human evaluation rounds, and what the reward model predicts of them.

In a round, labelers rank a prompt's answers from several policies, not told which policy wrote which,
in tie groups (best first). Policy P's wins against baseline B on a prompt count, over every ranking of
the prompt and every (answer of P, answer of B) pair in it, 1 when P's answer is ranked higher, 0.5 on
a tie and 0 when lower; the win rate is wins / comparisons pooled over the prompts. Its interval is a
percentile bootstrap over *prompts* (the comparisons of one prompt share answers and labelers and are
not independent), as `evaluate.accuracy_with_interval` does. Plain numpy: the Django side reads the
rankings and the policy of each answer.
"""
from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .evaluate import bootstrap_pooled_rates, pair_outcomes

Ranking = Sequence[Sequence[Hashable]]  # tie groups of answer ids, best first


@dataclass(frozen=True)
class WinRecord:
    """How `policy`'s answers fared against `baseline`'s on one prompt, over all its rankings."""

    prompt_id: Hashable
    policy: str
    baseline: str
    wins: float  # 1 per comparison won, 0.5 per tie
    comparisons: int


class WinRate(NamedTuple):
    """A pooled win rate and its bootstrap interval; rate, low and high are None without any comparison."""

    rate: float | None
    low: float | None
    high: float | None
    prompts: int
    comparisons: int


def pairwise_wins(
    rankings: Mapping[Hashable, Iterable[Ranking]], policy_of: Mapping[Hashable, str]
) -> list[WinRecord]:
    """One record per prompt and ordered pair of policies ranked together on it (so both directions).

    `rankings` maps a prompt id to its rankings (one per labeler); `policy_of` maps an answer id to the
    policy that wrote it. Answers of no policy (a human's, say) and pairs of one policy's answers count
    for nothing.
    """
    records: list[WinRecord] = []
    for prompt_id, prompt_rankings in rankings.items():
        wins: dict[tuple[str, str], float] = defaultdict(float)
        comparisons: dict[tuple[str, str], int] = defaultdict(int)
        for ranking in prompt_rankings:
            places: dict[str, list[int]] = defaultdict(list)  # policy -> the tie group of each of its answers
            for place, group in enumerate(ranking):
                for answer_id in group:
                    if answer_id in policy_of:
                        places[policy_of[answer_id]].append(place)
            for policy, baseline in itertools.permutations(places, 2):
                mine, theirs = np.array(places[policy])[:, None], np.array(places[baseline])[None, :]
                wins[policy, baseline] += float((mine < theirs).sum() + 0.5 * (mine == theirs).sum())
                comparisons[policy, baseline] += mine.size * theirs.size
        records.extend(
            WinRecord(prompt_id, policy, baseline, wins[policy, baseline], comparisons[policy, baseline])
            for policy, baseline in sorted(comparisons)
        )
    return records


def win_rate_with_interval(
    records: Iterable[WinRecord],
    policy: str,
    baseline: str,
    *,
    resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> WinRate:
    """`policy`'s pooled win rate against `baseline` and its prompt-bootstrap percentile interval.

    The same records and seed give the same interval. With no comparisons, rate, low and high are None;
    with one prompt the interval has no width (the bootstrap cannot see how prompts differ).
    """
    wins: dict[Hashable, float] = defaultdict(float)
    comparisons: dict[Hashable, int] = defaultdict(int)
    for record in records:
        if (record.policy, record.baseline) == (policy, baseline) and record.comparisons:
            wins[record.prompt_id] += record.wins
            comparisons[record.prompt_id] += record.comparisons
    if not comparisons:
        return WinRate(None, None, None, 0, 0)
    hits = np.array([wins[prompt_id] for prompt_id in comparisons])
    totals = np.array(list(comparisons.values()), dtype=np.float64)
    samples = bootstrap_pooled_rates(hits, totals, resamples=resamples, seed=seed)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return WinRate(float(hits.sum() / totals.sum()), float(low), float(high), len(totals), int(totals.sum()))


def predicted_win_rate(rewards_policy: Sequence[float], rewards_baseline: Sequence[float]) -> float | None:
    """The win rate the reward model predicts: mean sigmoid(r_policy - r_baseline) over matched pairs (None if none).

    Under the Bradley-Terry model the reward model was trained with, sigmoid of the reward difference is
    the chance a labeler prefers the first answer.
    """
    policy, baseline = np.asarray(rewards_policy, dtype=np.float64), np.asarray(rewards_baseline, dtype=np.float64)
    if policy.shape != baseline.shape:
        raise ValueError(f"{policy.size} policy rewards cannot be matched with {baseline.size} baseline rewards.")
    if policy.size == 0:
        return None
    return float(np.mean(0.5 * (1 + np.tanh((policy - baseline) / 2))))  # sigmoid, without overflow


def reward_model_accuracy(
    rankings: Mapping[Hashable, Iterable[Ranking]], rewards: Mapping[Hashable, float]
) -> float | None:
    """Share of the human-ordered answer pairs (ties left out) that the reward model orders the same way.

    A pair the reward model scores equal counts half. None when the rankings order no pair.
    """
    better_rewards, worse_rewards = [], []
    for prompt_rankings in rankings.values():
        for ranking in prompt_rankings:
            missing = [answer_id for group in ranking for answer_id in group if answer_id not in rewards]
            if missing:
                raise ValueError(f"No reward for answer(s) {missing!r}: score every ranked answer.")
            for better, worse in itertools.combinations(range(len(ranking)), 2):
                for better_id, worse_id in itertools.product(ranking[better], ranking[worse]):
                    better_rewards.append(rewards[better_id])
                    worse_rewards.append(rewards[worse_id])
    if not better_rewards:
        return None
    return float(pair_outcomes(np.array(better_rewards), np.array(worse_rewards)).mean())
