"""Scoring answers with a trained reward model, in process.

`load_scorer(model_dir)` loads a directory written by `train.train_reward_model` once and keeps the
two most recently used ones (a model is ~100 MB to ~GBs; a worker rarely needs more than the current
and the previous one). `Scorer.score(prompt, answers)` runs the K answers through the model in one
forward pass, truncated exactly as in training, with the InstructGPT bias offset applied.

A forward pass costs about answers x the longest (prompt + answer) sequence in tokens, each capped at
the model's max_length; `max_tokens` bounds that product, so one call's time is bounded whatever
the texts' length (the score API passes settings.SCORE_MAX_TOKENS; docs/api.md gives the figures).
"""
from __future__ import annotations

import functools
import json
import threading
from collections.abc import Sequence
from pathlib import Path

import torch

from .device import Precision, pick_device
from .encoding import PairEncoder, ensure_padding, model_rewards
from .model_sources import load_from_disk
from .train import CARD_FILE


class TooMuchToScore(ValueError):
    """The answers would cost more than the caller allows in one forward pass."""


class Scorer:
    """A loaded reward model: rewards for a prompt's answers (higher is better, 0 = average training answer)."""

    def __init__(self, model_dir: Path, device: torch.device | None = None):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").is_file():
            raise FileNotFoundError(f"No reward model in {self.model_dir} (config.json is missing).")
        card_path = self.model_dir / CARD_FILE
        self.card = json.loads(card_path.read_text()) if card_path.is_file() else {}
        self.device = device or pick_device(None)
        self.precision = Precision.for_device(self.device)
        tokenizer = load_from_disk(AutoTokenizer, self.model_dir)
        self.model = load_from_disk(AutoModelForSequenceClassification, self.model_dir, num_labels=1)
        ensure_padding(tokenizer, self.model)
        self.model.to(self.device).eval()
        max_length = int(self.card.get("max_length") or min(512, tokenizer.model_max_length))
        self.encoder = PairEncoder(tokenizer, max_length)
        # The trainer shifts the head's bias; a head without a bias leaves the offset to us.
        self.offset = 0.0 if self.card.get("bias_applied", True) else float(self.card.get("bias_offset", 0.0))
        self._lock = threading.Lock()  # one forward at a time: threads share the model

    def score(self, prompt: str, answers: Sequence[str], *, max_tokens: int | None = None) -> list[float]:
        """One reward per answer, from one forward pass over all of them.

        With `max_tokens`, refuses (TooMuchToScore) a pass of more than answers x longest sequence tokens.
        """
        if not answers:
            return []
        sequences = self.encoder.encode(prompt, answers)
        width = max(len(sequence) for sequence in sequences)
        if max_tokens is not None and len(sequences) * width > max_tokens:
            raise TooMuchToScore(
                f"{len(sequences)} answers x {width} tokens (the longest prompt + answer, at most "
                f"{self.encoder.max_length}) is {len(sequences) * width:,} tokens, over the limit of "
                f"{max_tokens:,} per request; send fewer or shorter answers at once."
            )
        inputs = {k: v.to(self.device) for k, v in self.encoder.collate(sequences).items()}
        with self._lock, torch.inference_mode(), self.precision.autocast():
            rewards = model_rewards(self.model, inputs)
        return [float(r) - self.offset for r in rewards.cpu()]


@functools.lru_cache(maxsize=2)
def _cached(model_dir: str, device: str | None) -> Scorer:
    return Scorer(Path(model_dir), pick_device(device) if device else None)


def load_scorer(model_dir: Path | str, device: str | None = None) -> Scorer:
    """The scorer of `model_dir`, loaded once per process (the two most recent stay loaded)."""
    return _cached(str(Path(model_dir).resolve()), device)


def clear_scorers() -> None:
    """Forget loaded scorers (e.g. after a model directory was replaced)."""
    _cached.cache_clear()
