"""The grouped loss equals the naive per-pair loss averaged per prompt, then over prompts."""
import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rewardtrain.ml.loss import grouped_loss


def naive_loss(rewards, pairs_per_prompt, margins_per_prompt=None):
    """Pair by pair in plain Python: mean per prompt, then mean of the prompts."""
    prompt_means = []
    for p, pairs in enumerate(pairs_per_prompt):
        losses = []
        for c, (chosen, rejected) in enumerate(pairs):
            diff = float(rewards[chosen]) - float(rewards[rejected])
            if margins_per_prompt is not None:
                diff -= margins_per_prompt[p][c]
            losses.append(-math.log(1 / (1 + math.exp(-diff))))
        prompt_means.append(sum(losses) / len(losses))
    return sum(prompt_means) / len(prompt_means)


def as_tensors(pairs_per_prompt, margins_per_prompt=None):
    pair_index = torch.tensor([pair for pairs in pairs_per_prompt for pair in pairs])
    counts = torch.tensor([len(pairs) for pairs in pairs_per_prompt])
    margins = None
    if margins_per_prompt is not None:
        margins = torch.tensor([m for ms in margins_per_prompt for m in ms], dtype=torch.float32)
    return pair_index, counts, margins


def test_single_pair_by_hand():
    loss = grouped_loss(torch.tensor([1.0, 0.0]), torch.tensor([[0, 1]]), comparisons_per_prompt=torch.tensor([1]))
    assert math.isclose(loss.item(), math.log(1 + math.exp(-1)), rel_tol=1e-6)  # 0.3133


def test_prompts_weigh_equally_whatever_their_number_of_comparisons():
    # Prompt A (rows 0-2): three comparisons, each with loss log 2 (equal rewards);
    # prompt B (rows 3-4): one, with loss log(1 + e^-2).
    rewards = torch.tensor([0.0, 0.0, 0.0, 2.0, 0.0])
    pairs = [[(0, 1), (0, 2), (1, 2)], [(3, 4)]]
    pair_index, counts, _ = as_tensors(pairs)
    expected = (math.log(2) + math.log(1 + math.exp(-2))) / 2  # not (3 log 2 + ...) / 4
    assert math.isclose(grouped_loss(rewards, pair_index, comparisons_per_prompt=counts).item(), expected, rel_tol=1e-6)


def test_margin_is_subtracted_inside_the_sigmoid():
    rewards = torch.tensor([3.0, 1.0])
    loss = grouped_loss(
        rewards, torch.tensor([[0, 1]]), comparisons_per_prompt=torch.tensor([1]), margins=torch.tensor([2.0])
    )
    assert math.isclose(loss.item(), math.log(2), rel_tol=1e-6)  # diff 2 - margin 2 = 0


@st.composite
def batches(draw):
    """A batch of prompts, each with 2-9 answers and some of their comparisons, and random rewards."""
    pairs_per_prompt, margins_per_prompt, offset = [], [], 0
    for _ in range(draw(st.integers(1, 5))):
        k = draw(st.integers(2, 9))
        all_pairs = [(offset + i, offset + j) for i in range(k) for j in range(k) if i != j]
        chosen = draw(st.lists(st.sampled_from(all_pairs), min_size=1, max_size=12))
        pairs_per_prompt.append(chosen)
        margins_per_prompt.append([draw(st.integers(1, 8)) for _ in chosen])
        offset += k
    rewards = draw(st.lists(st.floats(-5, 5), min_size=offset, max_size=offset))
    return torch.tensor(rewards, dtype=torch.float64), pairs_per_prompt, margins_per_prompt


@settings(max_examples=60, deadline=None)
@given(batches(), st.booleans())
def test_grouped_loss_equals_naive_per_pair_loss(batch, use_margin):
    rewards, pairs_per_prompt, margins_per_prompt = batch
    margins_per_prompt = margins_per_prompt if use_margin else None
    pair_index, counts, margins = as_tensors(pairs_per_prompt, margins_per_prompt)
    loss = grouped_loss(rewards, pair_index, comparisons_per_prompt=counts, margins=margins)
    expected = naive_loss(rewards, pairs_per_prompt, margins_per_prompt)
    assert math.isclose(loss.item(), expected, rel_tol=1e-9, abs_tol=1e-9)


def test_gradient_pushes_chosen_up_and_rejected_down():
    rewards = torch.zeros(3, requires_grad=True)
    grouped_loss(rewards, torch.tensor([[0, 1]]), comparisons_per_prompt=torch.tensor([1])).backward()
    assert rewards.grad[0] < 0 < rewards.grad[1] and rewards.grad[2] == 0
