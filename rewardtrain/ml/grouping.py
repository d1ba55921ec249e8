"""InstructGPT batching: all comparisons of one prompt form one batch element.

A ranking of K answers gives up to C(K, 2) pairs, and every labeler who ranked the prompt adds
theirs. Feeding each pair as two sequences would run every answer through the model K-1 times per
ranking (and the pairs of one prompt are so correlated that they overfit when shuffled apart). So
the pair frame is regrouped by prompt: the prompt's unique answers are scored once, and all its
comparisons are formed from those K rewards (see `loss.grouped_loss`). Batches hold whole prompts;
prompts of similar length go together so that dynamic padding wastes little.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .encoding import EncodedAnswer, PairEncoder

REQUIRED_COLUMNS = ("prompt_id", "chosen_id", "rejected_id", "margin", "split", "prompt", "chosen", "rejected")


@dataclass(frozen=True, eq=False)
class PromptGroup:
    """One prompt, its unique answers, and every comparison labelers made between them.

    `chosen[i]`, `rejected[i]` index `answers`; `margins[i]` is that comparison's rank distance.
    """

    prompt_id: int
    prompt: str
    split: str
    answer_ids: tuple[int, ...]
    answers: tuple[str, ...]
    chosen: np.ndarray
    rejected: np.ndarray
    margins: np.ndarray

    @property
    def comparisons(self) -> int:
        return len(self.chosen)


def group_by_prompt(frame: pd.DataFrame) -> list[PromptGroup]:
    """Regroup a pair frame (one row per labeler x prompt x pair) by prompt, in prompt-id order."""
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"The pair frame lacks columns {missing}.")
    groups = []
    for prompt_id, rows in frame.groupby("prompt_id", sort=True, observed=True):
        splits = pd.unique(rows["split"].astype(str))
        if len(splits) != 1:
            raise ValueError(f"Prompt {prompt_id} is in several splits {list(splits)}; split by prompt.")
        chosen_ids = rows["chosen_id"].to_numpy(np.int64)
        rejected_ids = rows["rejected_id"].to_numpy(np.int64)
        # Answer id -> text, from whichever column the answer appears in.
        texts = dict(zip(rejected_ids.tolist(), rows["rejected"].astype(str), strict=True))
        texts.update(zip(chosen_ids.tolist(), rows["chosen"].astype(str), strict=True))
        answer_ids = np.unique(np.concatenate([chosen_ids, rejected_ids]))
        groups.append(
            PromptGroup(
                prompt_id=int(prompt_id),
                prompt=str(rows["prompt"].iloc[0]),
                split=str(splits[0]),
                answer_ids=tuple(answer_ids.tolist()),
                answers=tuple(texts[i] for i in answer_ids.tolist()),
                chosen=np.searchsorted(answer_ids, chosen_ids),
                rejected=np.searchsorted(answer_ids, rejected_ids),
                margins=rows["margin"].to_numpy(np.float32),
            )
        )
    return groups


def encode_groups(encoder: PairEncoder, groups: Sequence[PromptGroup]) -> list[list[EncodedAnswer]]:
    """The model inputs of every group's answers, tokenized once up front."""
    return encoder.encode_many([g.prompt for g in groups], [g.answers for g in groups])


def plan_batches(
    lengths: Sequence[int], prompts_per_batch: int, *, seed: int, epoch: int, bucket_batches: int = 16
) -> list[list[int]]:
    """Batches of group indices for one epoch: shuffled, then sorted by length within buckets.

    Prompts are shuffled (seed, epoch), cut into buckets of `bucket_batches` batches, sorted by
    length inside each bucket and cut into batches, and the batches shuffled again. Neighbours in a
    batch have similar lengths (little padding) but change from epoch to epoch.
    """
    if prompts_per_batch < 1:
        raise ValueError("prompts_per_batch must be at least 1.")
    lengths = np.asarray(lengths)
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    bucket = prompts_per_batch * bucket_batches
    batches: list[list[int]] = []
    for start in range(0, len(order), bucket):
        chunk = order[start : start + bucket]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + prompts_per_batch].tolist() for i in range(0, len(chunk), prompts_per_batch)]
    return [batches[i] for i in rng.permutation(len(batches))]


@dataclass(frozen=True, eq=False)
class GroupBatch:
    """Several prompts' answers as one padded model input, and their comparisons.

    `pair_index[c] = (chosen row, rejected row)` into the batch's rows; the comparisons of each
    prompt are contiguous, `comparisons_per_prompt` of them in prompt order.
    """

    inputs: dict[str, torch.Tensor]
    pair_index: torch.Tensor
    margins: torch.Tensor
    comparisons_per_prompt: torch.Tensor

    @property
    def sequences(self) -> int:
        return int(self.inputs["input_ids"].shape[0])

    def to(self, device: torch.device) -> GroupBatch:
        return GroupBatch(
            {k: v.to(device) for k, v in self.inputs.items()},
            self.pair_index.to(device),
            self.margins.to(device),
            self.comparisons_per_prompt.to(device),
        )


def collate_groups(
    encoder: PairEncoder,
    groups: Sequence[PromptGroup],
    encoded: Sequence[Sequence[EncodedAnswer]],
    indices: Sequence[int],
) -> GroupBatch:
    """The batch of the groups at `indices`: each answer once, comparisons offset to batch rows."""
    sequences: list[EncodedAnswer] = []
    pairs, margins, counts = [], [], []
    for i in indices:
        group = groups[i]
        offset = len(sequences)
        sequences.extend(encoded[i])
        pairs.append(np.stack([group.chosen + offset, group.rejected + offset], axis=1))
        margins.append(group.margins)
        counts.append(group.comparisons)
    return GroupBatch(
        inputs=encoder.collate(sequences),
        pair_index=torch.from_numpy(np.concatenate(pairs).astype(np.int64)),
        margins=torch.from_numpy(np.concatenate(margins).astype(np.float32)),
        comparisons_per_prompt=torch.tensor(counts, dtype=torch.long),
    )
