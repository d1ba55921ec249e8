"""Evaluating a policy (a causal LM being optimised) on held-out prompts, and rewards from a reward model.

`evaluate_policy` samples answers from the policy and from its parent (the model it was trained from) with
the same settings and seed, scores both with a reward function, and measures how far the policy drifted
from the reference model: the KL divergence, estimated on the policy's own samples as the sum over each
answer's tokens of log p_policy - log p_reference (untempered distributions), averaged over prompts. It
also gives the win rate the reward model predicts over the parent (`winrate.predicted_win_rate`).

A reward function takes prompts and answers as plain text, `reward_fn(prompts, completions) -> rewards`;
`reward_function(scorer)` makes one from a trained reward model, which TRL's trainers can call as well.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .sampling import SampledTokens, sample_tokens
from .winrate import predicted_win_rate

if TYPE_CHECKING:
    from .scoring import Scorer

RewardFn = Callable[[list[str], list[str]], list[float]]


def text_of(item: str | Sequence[Mapping[str, Any]]) -> str:
    """A prompt or an answer as plain text: TRL passes a string, or a conversation (a list of messages)."""
    if isinstance(item, str):
        return item
    return "\n\n".join(str(message["content"]) for message in item)


def reward_function(scorer: Scorer) -> RewardFn:
    """A reward function that scores with `scorer`; it takes plain texts or TRL's conversations alike."""

    def reward(prompts: Sequence, completions: Sequence, **_trl_extras) -> list[float]:
        prompt_texts, answers = [text_of(p) for p in prompts], [text_of(c) for c in completions]
        rows_of_prompt: dict[str, list[int]] = defaultdict(list)
        for row, prompt in enumerate(prompt_texts):
            rows_of_prompt[prompt].append(row)
        rewards = [0.0] * len(answers)
        # One forward pass per prompt: the scorer reads a prompt's answers together.
        for prompt, rows in rows_of_prompt.items():
            for row, score in zip(rows, scorer.score(prompt, [answers[row] for row in rows]), strict=True):
                rewards[row] = score
        return rewards

    return reward


def sequence_logprobs(model, samples: SampledTokens, *, batch_size: int = 8) -> torch.Tensor:
    """Each row's sum of log p(token | what came before) over its sampled tokens, under `model` (float32, no grad)."""
    sums = []
    answer_length = samples.completion_ids.shape[1]
    for start in range(0, len(samples.completion_ids), batch_size):
        rows = slice(start, start + batch_size)
        completion_ids = samples.completion_ids[rows]
        input_ids = torch.cat([samples.prompt_ids[rows], completion_ids], dim=1)
        # The mask and positions generate used (every generated position attended to, left padding skipped),
        # so that the logits are the very ones the tokens were sampled from.
        attention_mask = torch.cat([samples.prompt_mask[rows], torch.ones_like(completion_ids)], dim=1)
        position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
        with torch.no_grad():
            logits = model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                logits_to_keep=answer_length + 1,
            ).logits
        # The logits at position t predict token t + 1: the last prompt token's predict the first answer token.
        logits = logits[:, -answer_length - 1 : -1].float()
        token_logprobs = torch.log_softmax(logits, dim=-1).gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)
        sums.append((token_logprobs * samples.completion_mask[rows]).sum(dim=1))
    return torch.cat(sums)


def evaluate_policy(
    policy_model,
    parent_model,
    reference_model,
    tokenizer,
    prompts: list[str],
    reward_fn: RewardFn,
    *,
    samples_per_prompt: int,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    seed: int,
    device,
) -> dict[str, float | int | None]:
    """The policy's mean reward next to its parent's on `prompts`, its KL to the reference, the predicted win rate.

    The three models share `tokenizer` and are on `device`; they are put in eval mode. The parent may be the
    reference (an SFT model usually is both). The parent samples with the same settings and seed, and the
    predicted win rate pairs answer j to prompt i of the policy with the parent's.
    """
    if not prompts:
        raise ValueError("There are no prompts to evaluate the policy on.")
    sampling = dict(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed, device=device)
    for model in (policy_model, parent_model, reference_model):
        model.eval()
    policy_samples = sample_tokens(policy_model, tokenizer, prompts, samples_per_prompt, **sampling)
    parent_samples = sample_tokens(parent_model, tokenizer, prompts, samples_per_prompt, **sampling)
    prompt_of_row = [prompt for prompt in prompts for _ in range(samples_per_prompt)]
    policy_rewards = reward_fn(prompt_of_row, policy_samples.answers(tokenizer))
    parent_rewards = reward_fn(prompt_of_row, parent_samples.answers(tokenizer))
    kl = sequence_logprobs(policy_model, policy_samples) - sequence_logprobs(reference_model, policy_samples)
    return {
        "prompts": len(prompts),
        "samples_per_prompt": samples_per_prompt,
        "mean_reward": float(np.mean(policy_rewards)),
        "parent_mean_reward": float(np.mean(parent_rewards)),
        # Every prompt has as many samples, so the mean over all of them is the mean over prompts.
        "kl_to_reference": float(kl.mean()),
        "predicted_win_rate": predicted_win_rate(policy_rewards, parent_rewards),
    }
