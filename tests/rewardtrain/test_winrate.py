"""Win rates of blinded evaluation rounds, hand-computed, and what the reward model predicts of them."""
import math

import pytest

from rewardtrain.ml.winrate import (
    WinRate,
    WinRecord,
    pairwise_wins,
    predicted_win_rate,
    reward_model_accuracy,
    win_rate_with_interval,
)

# Answers 1x are the policy's ("rl"), 2x the baseline's ("sft"), 99 a human's.
POLICY_OF = {10: "rl", 11: "rl", 20: "sft", 21: "sft"}


def records_of(rankings) -> dict[tuple, WinRecord]:
    return {(r.prompt_id, r.policy, r.baseline): r for r in pairwise_wins(rankings, POLICY_OF)}


def test_one_answer_each_a_win_a_loss_and_a_tie_counted_half():
    records = records_of({"won": [[[10], [20]]], "lost": [[[20], [10]]], "tied": [[[10, 20]]]})
    assert [(records[p, "rl", "sft"].wins, records[p, "rl", "sft"].comparisons) for p in ("won", "lost", "tied")] == [
        (1.0, 1), (0.0, 1), (0.5, 1),
    ]  # fmt: skip
    # Both directions are recorded, and they share out the comparisons.
    assert [records[p, "sft", "rl"].wins for p in ("won", "lost", "tied")] == [0.0, 1.0, 0.5]


def test_every_pair_of_a_policys_answers_with_the_baselines_counts_and_rankings_of_a_prompt_pool():
    # rl: 10 beats 20 and 21; 11 ties 20 and beats 21: 3.5 of 4. Answers of one policy are not compared.
    first = [[10], [20, 11], [21]]
    # A second labeler: 20 on top, then 10, then 11 tied with 21: 10 beats 21 (1), 11 ties 21 (0.5): 1.5 of 4.
    second = [[20], [10], [11, 21]]
    records = records_of({"p": [first, second]})
    assert (records["p", "rl", "sft"].wins, records["p", "rl", "sft"].comparisons) == (5.0, 8)
    assert (records["p", "sft", "rl"].wins, records["p", "sft", "rl"].comparisons) == (3.0, 8)


def test_answers_of_no_policy_are_left_out_and_each_pair_of_policies_gets_its_record():
    rankings = {"p": [[[99], [20], [30], [10]]]}
    records = pairwise_wins(rankings, POLICY_OF | {30: "dpo"})
    assert {(r.policy, r.baseline): (r.wins, r.comparisons) for r in records} == {
        ("dpo", "rl"): (1.0, 1), ("dpo", "sft"): (0.0, 1), ("rl", "dpo"): (0.0, 1),
        ("rl", "sft"): (0.0, 1), ("sft", "dpo"): (1.0, 1), ("sft", "rl"): (1.0, 1),
    }  # fmt: skip
    assert pairwise_wins({"q": [[[10, 11], [99]]]}, POLICY_OF) == []  # no baseline answer: nothing to compare


def test_the_rate_pools_wins_over_prompts():
    records = pairwise_wins({"a": [[[10], [20, 11], [21]]], "b": [[[20], [10]]]}, POLICY_OF)
    result = win_rate_with_interval(records, "rl", "sft")
    assert (result.rate, result.prompts, result.comparisons) == (3.5 / 5, 2, 5)
    assert result.low <= result.rate <= result.high


def many_prompts(n: int) -> list[WinRecord]:
    """Prompts of one comparison each, won, lost, won, tied, tied, and again (a rate of 0.6)."""
    outcomes = [1.0, 0.0, 1.0, 0.5, 0.5]
    return [WinRecord(i, "rl", "sft", outcomes[i % 5], 1) for i in range(n)]


def test_the_interval_contains_the_rate_repeats_for_a_seed_and_narrows_with_more_prompts():
    few = win_rate_with_interval(many_prompts(20), "rl", "sft")
    many = win_rate_with_interval(many_prompts(500), "rl", "sft")
    assert few.rate == many.rate == 0.6
    for result in (few, many):
        assert result.low < result.rate < result.high
    assert many.high - many.low < (few.high - few.low) / 3
    assert win_rate_with_interval(many_prompts(20), "rl", "sft", seed=0) == few
    assert win_rate_with_interval(many_prompts(20), "rl", "sft", seed=1) != few
    wider = win_rate_with_interval(many_prompts(20), "rl", "sft", confidence=0.99)
    assert wider.low <= few.low and wider.high >= few.high


def test_a_policy_always_ranked_first_wins_every_time_with_no_doubt():
    rankings = {prompt: [[[10, 11], [20, 21]], [[10], [11], [20]]] for prompt in range(30)}
    assert win_rate_with_interval(pairwise_wins(rankings, POLICY_OF), "rl", "sft") == WinRate(1.0, 1.0, 1.0, 30, 180)
    assert win_rate_with_interval(pairwise_wins(rankings, POLICY_OF), "sft", "rl")[:3] == (0.0, 0.0, 0.0)


def test_no_prompts_give_no_rate_and_one_prompt_an_interval_without_width():
    assert win_rate_with_interval([], "rl", "sft") == WinRate(None, None, None, 0, 0)
    assert win_rate_with_interval(pairwise_wins({"p": [[[10], [20]]]}, POLICY_OF), "rl", "dpo").rate is None
    one = win_rate_with_interval([WinRecord("p", "rl", "sft", 1.5, 4)], "rl", "sft")
    assert one == WinRate(0.375, 0.375, 0.375, 1, 4)


def test_the_predicted_win_rate_is_the_mean_sigmoid_of_reward_differences():
    assert predicted_win_rate([0.0, math.log(3)], [0.0, 0.0]) == pytest.approx((0.5 + 0.75) / 2)
    assert predicted_win_rate([1.0, 2.0], [1.0, 2.0]) == 0.5
    assert predicted_win_rate([1000.0, -1000.0], [0.0, 0.0]) == pytest.approx(0.5)  # no overflow
    assert predicted_win_rate([], []) is None
    with pytest.raises(ValueError, match="cannot be matched"):
        predicted_win_rate([1.0, 2.0], [1.0])


def test_reward_model_accuracy_counts_the_human_ordered_pairs_it_orders_alike():
    rankings = {"p": [[[1], [2, 3], [4]]]}  # pairs 1>2, 1>3, 1>4, 2>4, 3>4; 2 and 3 tie and make no pair
    assert reward_model_accuracy(rankings, {1: 3.0, 2: 2.0, 3: 2.5, 4: 1.0}) == 1.0
    assert reward_model_accuracy(rankings, {1: 3.0, 2: 2.0, 3: 0.5, 4: 1.0}) == 4 / 5  # 3 < 4: wrong way round
    assert reward_model_accuracy(rankings, {1: 3.0, 2: 1.0, 3: 2.5, 4: 1.0}) == 4.5 / 5  # 2 = 4: half
    assert reward_model_accuracy({"q": [[[1, 2]]]}, {1: 0.0, 2: 1.0}) is None
    with pytest.raises(ValueError, match=r"No reward for answer\(s\) \[4\]"):
        reward_model_accuracy(rankings, {1: 3.0, 2: 2.0, 3: 2.5})
