"""What every trainer (reward model, SFT, policy optimisation) tells its caller while it runs, and how it stops.

No torch here: the web process and the worker's bookkeeping import it without loading a model library.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Progress:
    epoch: int  # 1-based epoch being trained
    epochs: int
    step: int  # optimizer steps done (of this rank; every rank does the same number)
    total_steps: int
    percent: float
    eta_seconds: float | None
    metrics: dict[str, float] = field(default_factory=dict)  # train_loss, validation_* when logged


class TrainingCancelled(Exception):
    """should_stop() asked training to end; the last checkpoint is kept."""
