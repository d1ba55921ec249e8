"""Evaluation against hand-computed values."""
import math

import numpy as np
import pytest

from rewardtrain.ml.evaluate import (
    accuracy_with_interval,
    bootstrap_accuracies,
    difference_with_interval,
    evaluate_groups,
    evaluate_pairs,
    pair_outcomes,
    pairwise_loss,
    random_rewards,
)
from rewardtrain.ml.grouping import PromptGroup


def test_pair_outcomes_count_ties_half():
    assert pair_outcomes(np.array([2.0, 1.0, 3.0]), np.array([1.0, 2.0, 3.0])).tolist() == [1.0, 0.0, 0.5]


def test_bootstrap_resamples_prompts_not_pairs():
    # Prompt A: three correct pairs; prompt B: one wrong pair. Two prompts drawn with replacement can only
    # give AA = 1, AB = 3/4 or BB = 0; resampling pairs would also give 1/2, 1/4, ...
    outcomes = np.array([1.0, 1.0, 1.0, 0.0])
    prompts = np.array(["A", "A", "A", "B"])
    samples = bootstrap_accuracies(outcomes, prompts, resamples=2000, seed=0)
    assert set(np.unique(samples)) == {0.0, 0.75, 1.0}
    assert abs(np.mean(samples == 0.75) - 0.5) < 0.05 and abs(np.mean(samples == 0.0) - 0.25) < 0.05
    result = accuracy_with_interval(outcomes, prompts, resamples=2000, seed=0)
    assert result == {"accuracy": 0.75, "ci_low": 0.0, "ci_high": 1.0}


def test_interval_is_seeded_and_degenerate_when_every_pair_is_right():
    assert accuracy_with_interval(np.ones(10), np.arange(10)) == {"accuracy": 1.0, "ci_low": 1.0, "ci_high": 1.0}
    outcomes = np.random.default_rng(0).integers(0, 2, 300).astype(float)
    prompts = np.repeat(np.arange(100), 3)
    first = accuracy_with_interval(outcomes, prompts, seed=7)
    assert first == accuracy_with_interval(outcomes, prompts, seed=7)
    assert first["ci_low"] < first["accuracy"] < first["ci_high"]
    # About +-2 standard errors of a mean of 100 prompt means of 3 coin flips: 1.96 * 0.5 / sqrt(300) ~ 0.057.
    assert 0.08 < first["ci_high"] - first["ci_low"] < 0.15


def test_difference_interval_is_paired():
    # The model is right exactly where the baseline is, plus one more prompt: every paired resample
    # gives a difference >= 0, which two independent intervals would not show.
    prompts = np.arange(20)
    baseline = (prompts % 2).astype(float)
    model = baseline.copy()
    model[0] = 1.0
    result = difference_with_interval(model, baseline, prompts, seed=1)
    assert result["difference"] == pytest.approx(0.05)
    assert result["ci_low"] >= 0.0 and result["ci_high"] <= 0.15 + 1e-9


def test_pairwise_loss_averages_per_prompt_first():
    # Prompt 0: diffs 0 and 0 (loss log 2 each); prompt 1: diff 1 (loss log(1 + e^-1)).
    loss = pairwise_loss(np.array([0.0, 1.0, 1.0]), np.array([0.0, 1.0, 0.0]), np.array([0, 0, 1]))
    assert math.isclose(loss, (math.log(2) + math.log(1 + math.exp(-1))) / 2)


def test_random_model_gives_an_answer_one_reward_in_all_its_pairs():
    rewards = random_rewards(np.array([5, 7, 5, 9]), seed=3)
    assert rewards[0] == rewards[2] and len(set(rewards.tolist())) == 3
    assert rewards.tolist() == random_rewards(np.array([5, 7, 5, 9]), seed=3).tolist()


def test_evaluate_pairs_by_hand():
    report = evaluate_pairs(
        prompt_ids=np.array([1, 1, 2, 3]),
        chosen_ids=np.array([10, 10, 20, 30]),
        rejected_ids=np.array([11, 12, 21, 31]),
        r_chosen=np.array([2.0, 0.0, 1.0, 3.0]),
        r_rejected=np.array([1.0, 1.0, 1.0, 0.0]),
        chosen_lengths=np.array([50, 50, 10, 7]),
        rejected_lengths=np.array([40, 60, 10, 9]),
        seed=0,
    )
    assert (report["pairs"], report["prompts"]) == (4, 3)
    assert report["accuracy"] == (1 + 0 + 0.5 + 1) / 4
    assert report["mean_margin"] == (1 - 1 + 0 + 3) / 4
    per_prompt = [(math.log(1 + math.exp(-1)) + math.log(1 + math.exp(1))) / 2, math.log(2), math.log(1 + math.exp(-3))]
    assert math.isclose(report["loss"], sum(per_prompt) / 3)
    assert report["length_baseline"]["accuracy"] == (1 + 0 + 0.5 + 0) / 4
    assert report["ci_low"] <= report["accuracy"] <= report["ci_high"]
    assert report["vs_length_baseline"]["difference"] == report["accuracy"] - report["length_baseline"]["accuracy"]
    random = random_rewards(np.array([10, 10, 20, 30, 11, 12, 21, 31]), seed=0)
    expected_random = pair_outcomes(random[:4], random[4:]).mean()
    assert report["random_baseline"]["accuracy"] == expected_random


def test_evaluate_groups_flattens_every_comparison():
    group = PromptGroup(
        prompt_id=4, prompt="p", split="validation", answer_ids=(1, 2, 3), answers=("aaa", "b", "cc"),
        chosen=np.array([0, 0, 2]), rejected=np.array([1, 2, 1]), margins=np.ones(3, dtype=np.float32),
    )
    report = evaluate_groups([group], [np.array([0.5, -1.0, 1.0])])
    # Pairs (aaa > b), (aaa > cc), (cc > b): rewards 0.5 > -1 yes, 0.5 > 1 no, 1 > -1 yes.
    assert report["accuracy"] == pytest.approx(2 / 3)
    assert report["length_baseline"]["accuracy"] == 1.0  # the chosen answer is the longer one each time
    assert report["mean_margin"] == pytest.approx((1.5 - 0.5 + 2.0) / 3)
