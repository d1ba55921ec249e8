"""How (prompt, answer) pairs become model inputs, and how a model turns a batch of them into rewards.

Each answer is read together with its prompt as one sequence, built with the tokenizer's own pair
template ([CLS] prompt [SEP] answer [SEP] for BERT, plain concatenation for GPT-2). When the two do
not fit in `max_length`, the prompt loses its *beginning* (the last turn of a dialogue is what the
answer replies to) and the answer loses its *end*. Batches are padded on the right to their longest
sequence only; the reward is the model's single logit, which a BERT-like model reads from its pooled
[CLS] output and a decoder model from its last non-padding token (found through `pad_token_id`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tokenizers import Tokenizer


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


@dataclass(frozen=True)
class PairTemplate:
    """Where a tokenizer's pair post-processor puts its special tokens: prefix, prompt, middle, answer, suffix.

    Read once from the tokenizer, so that truncated token ids can be joined with plain array
    concatenation. The Rust `Encoding.truncate()` keeps every cut piece as an "overflowing" encoding
    and `post_process` then pairs each piece of the prompt with each piece of the answer: on long
    texts that was quadratic in time and memory (16,699 pieces for two 20,000-character texts).
    """

    prefix: tuple[np.ndarray, np.ndarray]  # (ids, type ids) of the special tokens before the prompt
    middle: tuple[np.ndarray, np.ndarray]
    suffix: tuple[np.ndarray, np.ndarray]
    prompt_type: int
    answer_type: int

    @classmethod
    def of(cls, backend: Tokenizer) -> PairTemplate:
        probes = [
            backend.encode_batch_fast(texts, add_special_tokens=False) for texts in (["a b", "c d e"], ["f", "g h"])
        ]
        if any(len(encoding.ids) == 0 for pair in probes for encoding in pair):
            raise ValueError("The tokenizer turns plain letters into no tokens; it cannot read prompts and answers.")
        joined = backend.post_process(*probes[0], add_special_tokens=True)
        ids = np.asarray(joined.ids, dtype=np.int64)
        types = np.asarray(joined.type_ids, dtype=np.int64)
        content = np.flatnonzero(np.asarray(joined.special_tokens_mask) == 0)
        prompt_length = len(probes[0][0].ids)
        prompt_at, answer_at = content[:prompt_length], content[prompt_length:]
        cuts = (slice(0, prompt_at[0]), slice(prompt_at[-1] + 1, answer_at[0]), slice(answer_at[-1] + 1, None))
        template = cls(
            *((ids[cut], types[cut]) for cut in cuts),
            prompt_type=int(types[prompt_at[0]]),
            answer_type=int(types[answer_at[0]]),
        )
        # The template must not depend on the lengths (true of BERT, RoBERTa, template and byte-level
        # processors); a processor that does something else is refused rather than mis-encoded.
        for prompt, answer in probes:
            expected = backend.post_process(prompt, answer, add_special_tokens=True)
            got = template.join(np.asarray(prompt.ids), np.asarray(answer.ids))
            if got.input_ids.tolist() != expected.ids or got.token_type_ids.tolist() != expected.type_ids:
                raise ValueError("The tokenizer's post-processor does not join a prompt and an answer in a fixed way.")
        return template

    @property
    def special_tokens(self) -> int:
        return len(self.prefix[0]) + len(self.middle[0]) + len(self.suffix[0])

    def join(self, prompt_ids: np.ndarray, answer_ids: np.ndarray) -> EncodedAnswer:
        ids = np.concatenate([self.prefix[0], prompt_ids, self.middle[0], answer_ids, self.suffix[0]])
        types = np.concatenate([
            self.prefix[1], np.full(len(prompt_ids), self.prompt_type, dtype=np.int64),
            self.middle[1], np.full(len(answer_ids), self.answer_type, dtype=np.int64), self.suffix[1],
        ])  # fmt: skip
        return EncodedAnswer(ids.astype(np.int64, copy=False), types)


class PairEncoder:
    """Tokenizes (prompt, answer) pairs with truncation and collates them into padded tensors.

    Cost is linear in the texts' length: each text is tokenized once, and truncation cuts arrays of
    token ids (see PairTemplate).
    """

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
        self.template = PairTemplate.of(self.backend)
        self.budget = max_length - self.template.special_tokens
        if self.budget < 2:
            raise ValueError(f"max_length={max_length} leaves no room for a prompt and an answer.")
        self.max_length = max_length
        self.pad_id = int(tokenizer.pad_token_id)
        self.uses_token_types = "token_type_ids" in tokenizer.model_input_names

    def tokenize(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Token ids of each text, special tokens left out (added when a prompt and an answer are joined)."""
        encodings = self.backend.encode_batch_fast(list(texts), add_special_tokens=False)
        return [np.asarray(encoding.ids, dtype=np.int64) for encoding in encodings]

    def pair(self, prompt_ids: np.ndarray, answer_ids: np.ndarray) -> EncodedAnswer:
        """One sequence from a tokenized prompt and answer: the prompt loses its start, the answer its end."""
        prompt_keep, answer_keep = keep_lengths(len(prompt_ids), len(answer_ids), self.budget)
        return self.template.join(prompt_ids[len(prompt_ids) - prompt_keep :], answer_ids[:answer_keep])

    def encode(self, prompt: str, answers: Sequence[str]) -> list[EncodedAnswer]:
        """The sequences of one prompt's answers."""
        return self.encode_many([prompt], [answers])[0]

    def encode_many(
        self, prompts: Sequence[str], answers: Sequence[Sequence[str]]
    ) -> list[list[EncodedAnswer]]:
        """The sequences of many prompts' answers; every text is tokenized once, in one batch."""
        prompt_ids = self.tokenize(prompts)
        flat = [text for group in answers for text in group]
        answer_ids = iter(self.tokenize(flat))
        return [
            [self.pair(prompt, next(answer_ids)) for _ in group]
            for prompt, group in zip(prompt_ids, answers, strict=True)
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
