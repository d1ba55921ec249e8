"""The pairwise reward-model loss, averaged the InstructGPT way.

For a comparison (chosen, rejected): -log sigmoid(r_chosen - r_rejected [- margin]). The
comparisons of one prompt are averaged first, then the prompts of the batch, so a prompt ranked by
many labelers (or with K=9 answers, 36 pairs) weighs as much as one with a single pair.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def grouped_loss(
    rewards: torch.Tensor,
    pair_index: torch.Tensor,
    *,
    comparisons_per_prompt: torch.Tensor,
    margins: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over prompts of the mean over that prompt's comparisons of the pairwise loss.

    rewards: (N,) one per answer row; pair_index: (C, 2) rows of (chosen, rejected);
    comparisons_per_prompt: (P,) counts, the comparisons being contiguous per prompt;
    margins: (C,) subtracted from the reward difference when given (a "margin" loss).
    """
    counts = comparisons_per_prompt.to(device=rewards.device, dtype=torch.long)
    diff = rewards[pair_index[:, 0]] - rewards[pair_index[:, 1]]
    if margins is not None:
        diff = diff - margins.to(diff)
    per_comparison = -F.logsigmoid(diff)
    prompt_of = torch.repeat_interleave(torch.arange(len(counts), device=rewards.device), counts)
    per_prompt = torch.zeros(len(counts), device=rewards.device, dtype=per_comparison.dtype)
    per_prompt = per_prompt.index_add(0, prompt_of, per_comparison) / counts.to(per_comparison.dtype)
    return per_prompt.mean()
