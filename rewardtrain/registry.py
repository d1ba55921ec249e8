"""The reward-model registry: a finished run's model recorded, one model made the active one, answers scored.

The service functions behind the model pages (views), the REST API and the Celery tasks. The model
files are read by rewardtrain.ml.scoring, imported on the first score: torch does not load with the URLs.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.db import transaction

from core import audit

from .models import RewardModel, TrainingRun

if TYPE_CHECKING:
    from .ml.scoring import Scorer
    from .ml.train import TrainResult


def register_reward_model(run: TrainingRun, result: TrainResult) -> RewardModel:
    """The registry's entry for the model a run trained; called in the transaction that finishes the run."""
    return RewardModel.objects.create(
        run=run,
        name=f"rm-{run.pk} ({run.dataset})",
        path=str(result.model_dir),
        metrics=result.metrics,
        bias_offset=result.bias_offset,
    )


def activate_reward_model(model: RewardModel, *, user=None) -> None:
    with transaction.atomic():
        previous = list(RewardModel.objects.filter(is_active=True).exclude(pk=model.pk).values_list("pk", flat=True))
        RewardModel.objects.filter(pk__in=previous).update(is_active=False)
        RewardModel.objects.filter(pk=model.pk).update(is_active=True)
        audit.record(actor=user, action="model.activate", target=model, detail={"previous": previous})


def scorer_for(model_dir: str) -> Scorer:
    """The scorer of the model in `model_dir`, loaded once per process; OSError if its files are gone."""
    from .ml.scoring import load_scorer

    return load_scorer(model_dir)


def score_answers(model_dir: str, prompt: str, answers: Sequence[str], *, max_tokens: int | None = None) -> list[float]:
    """One reward per answer from the model in `model_dir` (TooMuchToScore past `max_tokens`)."""
    return scorer_for(model_dir).score(prompt, answers, max_tokens=max_tokens)
