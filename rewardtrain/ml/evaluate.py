"""How good a reward model is on held-out comparisons, always next to two baselines.

Pairwise accuracy is the share of comparisons where the chosen answer gets the higher reward (a
tie counts half). Its 95% interval is a percentile bootstrap that resamples *prompts*, because the
comparisons of one prompt share answers and are not independent. The same pairs are scored by
"the longer answer wins" (labelers often prefer longer answers) and by a random model, so a number
like 0.58 can be read against what costs nothing. Plain numpy: the trainer supplies the rewards.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .grouping import PromptGroup


def pair_outcomes(score_chosen: np.ndarray, score_rejected: np.ndarray) -> np.ndarray:
    """1 where the chosen answer scores higher, 0 where lower, 0.5 on a tie."""
    diff = np.asarray(score_chosen, dtype=np.float64) - np.asarray(score_rejected, dtype=np.float64)
    return np.where(diff > 0, 1.0, np.where(diff < 0, 0.0, 0.5))


def bootstrap_accuracies(
    outcomes: np.ndarray, prompt_ids: np.ndarray, *, resamples: int = 1000, seed: int = 0
) -> np.ndarray:
    """Accuracy over all comparisons of `resamples` bootstrap samples of the prompts (with replacement)."""
    outcomes = np.asarray(outcomes, dtype=np.float64)
    _, prompt_index = np.unique(np.asarray(prompt_ids), return_inverse=True)
    n_prompts = int(prompt_index.max()) + 1 if len(outcomes) else 0
    hits = np.bincount(prompt_index, weights=outcomes, minlength=n_prompts)
    pairs = np.bincount(prompt_index, minlength=n_prompts).astype(np.float64)
    return bootstrap_pooled_rates(hits, pairs, resamples=resamples, seed=seed)


def bootstrap_pooled_rates(
    hits: np.ndarray, totals: np.ndarray, *, resamples: int = 1000, seed: int = 0
) -> np.ndarray:
    """sum(hits) / sum(totals) of `resamples` bootstrap samples of the prompts (one entry of each per prompt)."""
    hits, totals = np.asarray(hits, dtype=np.float64), np.asarray(totals, dtype=np.float64)
    n_prompts = len(hits)
    if n_prompts == 0:
        return np.full(resamples, np.nan)
    rng = np.random.default_rng(seed)
    result = np.empty(resamples)
    step = max(1, 2_000_000 // n_prompts)  # bounded memory for the (resamples x prompts) count matrix
    for start in range(0, resamples, step):
        size = min(step, resamples - start)
        counts = rng.multinomial(n_prompts, np.full(n_prompts, 1.0 / n_prompts), size=size)
        result[start : start + size] = (counts @ hits) / (counts @ totals)
    return result


def accuracy_with_interval(
    outcomes: np.ndarray, prompt_ids: np.ndarray, *, resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> dict:
    """{"accuracy", "ci_low", "ci_high"}: the mean outcome and its prompt-bootstrap interval."""
    outcomes = np.asarray(outcomes, dtype=np.float64)
    samples = bootstrap_accuracies(outcomes, prompt_ids, resamples=resamples, seed=seed)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return {"accuracy": float(outcomes.mean()), "ci_low": float(low), "ci_high": float(high)}


def difference_with_interval(
    outcomes: np.ndarray, baseline: np.ndarray, prompt_ids: np.ndarray, *, resamples: int = 1000, seed: int = 0,
    level: float = 0.95,
) -> dict:
    """{"difference", "ci_low", "ci_high"}: accuracy minus a baseline's on the same pairs, with a paired
    prompt-bootstrap interval (both are scored on the same resampled prompts)."""
    # The same seed and prompts give the same resamples, so the two sample arrays are paired.
    samples = bootstrap_accuracies(outcomes, prompt_ids, resamples=resamples, seed=seed) - bootstrap_accuracies(
        baseline, prompt_ids, resamples=resamples, seed=seed
    )
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    difference = float(np.mean(outcomes) - np.mean(baseline))
    return {"difference": difference, "ci_low": float(low), "ci_high": float(high)}


def pairwise_loss(r_chosen: np.ndarray, r_rejected: np.ndarray, prompt_ids: np.ndarray) -> float:
    """-log sigmoid(r_chosen - r_rejected), averaged per prompt then over prompts (as in training, no margin)."""
    diff = np.asarray(r_chosen, dtype=np.float64) - np.asarray(r_rejected, dtype=np.float64)
    losses = np.logaddexp(0.0, -diff)  # = -log sigmoid(diff), stable for large |diff|
    _, prompt_index = np.unique(np.asarray(prompt_ids), return_inverse=True)
    per_prompt = np.bincount(prompt_index, weights=losses) / np.bincount(prompt_index)
    return float(per_prompt.mean())


def random_rewards(answer_ids: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """A random model: one seeded normal reward per distinct answer id, returned per element of `answer_ids`."""
    unique, index = np.unique(np.asarray(answer_ids), return_inverse=True)
    return np.random.default_rng(seed).standard_normal(len(unique))[index]


def evaluate_pairs(
    prompt_ids: np.ndarray,
    chosen_ids: np.ndarray,
    rejected_ids: np.ndarray,
    r_chosen: np.ndarray,
    r_rejected: np.ndarray,
    chosen_lengths: np.ndarray,
    rejected_lengths: np.ndarray,
    *,
    seed: int = 0,
    resamples: int = 1000,
) -> dict:
    """The model's accuracy (with interval), mean margin and loss, and both baselines on the same pairs.

    Answer ids identify answers for the random model (an answer gets one reward in all its pairs);
    lengths are the answers' lengths in characters.
    """
    prompt_ids = np.asarray(prompt_ids)
    if len(prompt_ids) == 0:
        return {"pairs": 0, "prompts": 0}
    r_chosen, r_rejected = np.asarray(r_chosen, np.float64), np.asarray(r_rejected, np.float64)
    chosen_ids, rejected_ids = np.asarray(chosen_ids), np.asarray(rejected_ids)
    random = random_rewards(np.concatenate([chosen_ids, rejected_ids]), seed=seed)

    def scored(outcomes: np.ndarray) -> dict:
        return accuracy_with_interval(outcomes, prompt_ids, resamples=resamples, seed=seed)

    model = pair_outcomes(r_chosen, r_rejected)
    length = pair_outcomes(chosen_lengths, rejected_lengths)
    return {
        "pairs": int(len(prompt_ids)),
        "prompts": int(len(np.unique(prompt_ids))),
        **scored(model),
        "mean_margin": float(np.mean(r_chosen - r_rejected)),
        "loss": pairwise_loss(r_chosen, r_rejected, prompt_ids),
        "length_baseline": scored(length),
        "random_baseline": scored(pair_outcomes(random[: len(chosen_ids)], random[len(chosen_ids) :])),
        "vs_length_baseline": difference_with_interval(model, length, prompt_ids, resamples=resamples, seed=seed),
    }


def group_pairs(groups: Sequence[PromptGroup], rewards: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Every comparison of `groups` as flat arrays, in the argument order of `evaluate_pairs`."""
    columns: dict[str, list[np.ndarray]] = {}

    def add(key: str, values: np.ndarray) -> None:
        columns.setdefault(key, []).append(values)

    for group, group_rewards in zip(groups, rewards, strict=True):
        answer_ids = np.asarray(group.answer_ids)
        group_rewards = np.asarray(group_rewards, dtype=np.float64)
        lengths = np.array([len(a) for a in group.answers])
        add("prompt_ids", np.full(group.comparisons, group.prompt_id))
        add("chosen_ids", answer_ids[group.chosen])
        add("rejected_ids", answer_ids[group.rejected])
        add("r_chosen", group_rewards[group.chosen])
        add("r_rejected", group_rewards[group.rejected])
        add("chosen_lengths", lengths[group.chosen])
        add("rejected_lengths", lengths[group.rejected])
    return {key: np.concatenate(parts) for key, parts in columns.items()}


def evaluate_groups(
    groups: Sequence[PromptGroup], rewards: Sequence[np.ndarray], *, seed: int = 0, resamples: int = 1000
) -> dict:
    """`evaluate_pairs` on every comparison of `groups`, given each group's answer rewards."""
    if not groups:
        return {"pairs": 0, "prompts": 0}
    return evaluate_pairs(**group_pairs(groups, rewards), seed=seed, resamples=resamples)
