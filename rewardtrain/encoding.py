"""How (prompt, answer) pairs become model inputs, and how a model turns a batch of them into rewards.

Each answer is read together with its prompt as one sequence, built with the tokenizer's own pair
template ([CLS] prompt [SEP] answer [SEP] for BERT, plain concatenation for GPT-2). When the two do
not fit in `max_length`, the prompt loses its *beginning* (the last turn of a dialogue is what the
answer replies to) and the answer loses its *end*. Batches are padded on the right to their longest
sequence only; the reward is the model's single logit, which a BERT-like model reads from its pooled
[CLS] output and a decoder model from its last non-padding token (found through `pad_token_id`).
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tokenizers import Encoding, Tokenizer


@dataclass(frozen=True, eq=False)
class EncodedAnswer:
    """One (prompt, answer) sequence, special tokens included, ready to pad."""

    input_ids: np.ndarray
    token_type_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.input_ids)


def keep_lengths(prompt_len: int, answer_len: int, budget: int) -> tuple[int, int]:
    """How many prompt and answer tokens to keep when `budget` tokens are available for both.

    Whatever fits is kept. Otherwise the answer keeps at least half the budget (all of it if
    shorter), and the prompt gets the rest.
    """
    if prompt_len + answer_len <= budget:
        return prompt_len, answer_len
    answer_keep = min(answer_len, max(budget - prompt_len, budget // 2))
    return min(prompt_len, budget - answer_keep), answer_keep


def ensure_padding(tokenizer, model=None) -> None:
    """Give the tokenizer a pad token if it has none (GPT-2 style) and tell the model its id.

    A decoder model finds the last real token of each row through `config.pad_token_id`; without
    it a padded batch would read its reward from a padding position.
    """
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise ValueError("The tokenizer has no pad, end-of-sequence or unknown token to pad with.")
        tokenizer.pad_token = fallback
    if model is not None:
        model.config.pad_token_id = tokenizer.pad_token_id


class PairEncoder:
    """Tokenizes (prompt, answer) pairs with truncation and collates them into padded tensors."""

    def __init__(self, tokenizer, max_length: int):
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise ValueError("Reward-model training needs a fast (Rust-backed) tokenizer.")
        ensure_padding(tokenizer)
        # A private copy of the Rust tokenizer with no padding or truncation of its own
        # (some saved tokenizer.json files pad everything to 128): we decide both.
        self.backend = Tokenizer.from_str(backend.to_str())
        self.backend.no_padding()
        self.backend.no_truncation()
        self.budget = max_length - tokenizer.num_special_tokens_to_add(pair=True)
        if self.budget < 2:
            raise ValueError(f"max_length={max_length} leaves no room for a prompt and an answer.")
        self.max_length = max_length
        self.pad_id = int(tokenizer.pad_token_id)
        self.uses_token_types = "token_type_ids" in tokenizer.model_input_names

    def tokenize(self, texts: Sequence[str]) -> list[Encoding]:
        return self.backend.encode_batch(list(texts), add_special_tokens=False)

    def pair(self, prompt: Encoding, answer: Encoding) -> EncodedAnswer:
        """One sequence from an already tokenized prompt and answer (both left unchanged)."""
        prompt_keep, answer_keep = keep_lengths(len(prompt.ids), len(answer.ids), self.budget)
        if prompt_keep < len(prompt.ids):
            prompt = copy.deepcopy(prompt)
            prompt.truncate(prompt_keep, direction="left")
        if answer_keep < len(answer.ids):
            answer = copy.deepcopy(answer)
            answer.truncate(answer_keep, direction="right")
        joined = self.backend.post_process(prompt, answer, add_special_tokens=True)
        return EncodedAnswer(np.asarray(joined.ids, dtype=np.int64), np.asarray(joined.type_ids, dtype=np.int64))

    def encode(self, prompt: str, answers: Sequence[str]) -> list[EncodedAnswer]:
        """The sequences of one prompt's answers."""
        return self.encode_many([prompt], [answers])[0]

    def encode_many(
        self, prompts: Sequence[str], answers: Sequence[Sequence[str]]
    ) -> list[list[EncodedAnswer]]:
        """The sequences of many prompts' answers; every text is tokenized once, in one batch."""
        prompt_encodings = self.tokenize(prompts)
        flat = [text for group in answers for text in group]
        answer_encodings = iter(self.tokenize(flat))
        return [
            [self.pair(prompt, next(answer_encodings)) for _ in group]
            for prompt, group in zip(prompt_encodings, answers, strict=True)
        ]

    def collate(self, sequences: Sequence[EncodedAnswer]) -> dict[str, torch.Tensor]:
        """Pad to the longest sequence of this batch. Right padding: BERT reads [CLS] at position 0,
        and a decoder's position ids then need no adjusting."""
        width = max(len(s) for s in sequences)
        input_ids = np.full((len(sequences), width), self.pad_id, dtype=np.int64)
        token_types = np.zeros((len(sequences), width), dtype=np.int64)
        mask = np.zeros((len(sequences), width), dtype=np.int64)
        for row, seq in enumerate(sequences):
            input_ids[row, : len(seq)] = seq.input_ids
            token_types[row, : len(seq)] = seq.token_type_ids
            mask[row, : len(seq)] = 1
        batch = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}
        if self.uses_token_types:
            batch["token_type_ids"] = torch.from_numpy(token_types)
        return batch


def model_rewards(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """One scalar reward per row: the single logit of a `num_labels=1` sequence-classification model."""
    return model(**inputs).logits[:, 0].float()
