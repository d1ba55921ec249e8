"""Synthetic rankings with a learnable rule, in the pair-frame schema, for tests, benchmarks and demos.

Each answer is a string of harmless filler words in which some words are replaced by a marker word;
an answer with more markers is ranked higher (answers with as many are tied). Replacing rather than
adding words keeps the answer length unrelated to its rank, so "the longer answer wins" stays near
chance and a model must learn the rule.
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

MARKER = "good"  # as long as an average filler word: replacing one leaves the length in characters alone
FILLER = (
    "the a cat dog tree river blue green house garden sun moon book lamp road city bread apple music window "
    "table chair cloud rain stone bird paper light water field"
).split()
PROMPT_WORDS = ("tell me about", "describe", "write a note on", "explain")
WORDS = [MARKER, *FILLER, "question", *" ".join(PROMPT_WORDS).split()]


def synthetic_rankings(
    prompts: int,
    answers_per_prompt: int,
    *,
    labelers: int = 1,
    levels: int = 2,
    validation_fraction: float = 0.25,
    min_words: int = 4,
    max_words: int = 12,
    seed: int = 0,
) -> pd.DataFrame:
    """A pair frame: `prompts` prompts with `answers_per_prompt` answers each, ranked by `labelers`.

    Answers hold 0..levels-1 markers (levels=K gives a total order of K answers). Every labeler ranks
    a prompt the same way; each makes one row per pair of answers in different tie groups.
    """
    if not 2 <= levels <= answers_per_prompt:
        raise ValueError("Need 2 <= levels <= answers_per_prompt.")
    # Every answer has room for the most markers, so that its length says nothing about its rank.
    min_words = max(min_words, levels - 1)
    max_words = max(max_words, min_words)
    rng = np.random.default_rng(seed)
    validation = rng.random(prompts) < validation_fraction
    if prompts >= 2:
        validation[0], validation[1] = False, True  # at least one prompt in each split
    rows = []
    for p in range(prompts):
        prompt = f"question {p}: {PROMPT_WORDS[p % len(PROMPT_WORDS)]} the {' and the '.join(rng.choice(FILLER, 2))}"
        answer_levels = rng.permutation(np.arange(answers_per_prompt) % levels)
        answers = []
        for level in answer_levels:
            words = list(rng.choice(FILLER, rng.integers(min_words, max_words + 1)))
            for position in rng.choice(len(words), level, replace=False):
                words[position] = MARKER
            answers.append(" ".join(words))
        distinct = sorted(set(answer_levels.tolist()), reverse=True)
        rank = {level: i for i, level in enumerate(distinct)}  # tie-group position, best first
        for labeler in range(labelers):
            for i, j in itertools.permutations(range(answers_per_prompt), 2):
                if answer_levels[i] <= answer_levels[j]:
                    continue
                rows.append(
                    {
                        "prompt_id": p,
                        "labeler_id": labeler,
                        "ranking_id": p * labelers + labeler,
                        "chosen_id": p * answers_per_prompt + i,
                        "rejected_id": p * answers_per_prompt + j,
                        "margin": rank[answer_levels[j]] - rank[answer_levels[i]],
                        "rating_diff": np.nan,
                        "split": "validation" if validation[p] else "train",
                        "prompt": prompt,
                        "chosen": answers[i],
                        "rejected": answers[j],
                    }
                )
    return pd.DataFrame(rows).astype(
        {"prompt_id": "int64", "labeler_id": "int64", "ranking_id": "int64", "chosen_id": "int64",
         "rejected_id": "int64", "margin": "int64", "rating_diff": "float64"}
    )
