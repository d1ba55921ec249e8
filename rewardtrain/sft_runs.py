"""SFT runs: fine-tuning a policy on the demonstrations of chosen queues, in the worker (the training queue).

The demonstrations pass the same filters as exports (labeling.datasets.filters) and are written once, by the
export code, into the run's directory: a run that resumes after its worker died trains on the very rows it
started with, and the data version a new policy records is that file's SHA-256. The training itself is
rewardtrain.ml.sft (TRL's SFTTrainer, no Django); this module claims the run, reports its progress,
honours cancel, and records the fine-tuned policy in the registry with its lineage.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from django.conf import settings
from django.db import transaction

from core import audit
from core.jobs import Heartbeat, JobStatus, claim, resend_stale
from labeling.datasets.exports import export_dataset
from labeling.datasets.filters import clean_export_filters
from labeling.models import Queue

from . import policies
from .ml.progress import Progress, TrainingCancelled
from .models import Policy, SFTRun
from .runs import Reporter

log = logging.getLogger(__name__)

HYPERPARAMETERS = ("validation_fraction", "seed", "epochs", "learning_rate", "max_length", "batch_size", "lora")


def run_dir(run: SFTRun) -> Path:
    return Path(settings.ARTIFACTS_DIR) / "sft" / str(run.pk)


def request_sft_run(
    *, policy: Policy, queues: Sequence[Queue], filters: dict | None = None, output_name: str = "", user=None,
    send: bool = True, **hyperparameters,
) -> SFTRun:  # fmt: skip
    """Record an SFT run and send it to the training queue once the record is committed (`send=False`: the
    caller runs it, as `python -m rewardtrain.sft --here` does).

    Raises ValueError (PolicyUnavailable, FilterError) naming what is wrong.
    """
    from .tasks import train_sft_task  # here: the tasks module imports this one

    policies.check_usable(policy)
    if not queues:
        raise ValueError("Choose at least one queue with demonstrations.")
    filters = clean_export_filters(filters)
    unknown = set(hyperparameters) - set(HYPERPARAMETERS)
    if unknown:
        raise ValueError(f"SFT runs take no {sorted(unknown)[0]!r}.")
    with transaction.atomic():
        run = SFTRun.objects.create(
            policy=policy, filters=filters, output_name=output_name or f"{policy.name}-sft", created_by=user,
            **hyperparameters,
        )  # fmt: skip
        run.queues.set(queues)
        audit.record(actor=user, action="sft.request", target=run, detail={
            "policy": policy.pk, "queues": [queue.pk for queue in queues], "filters": filters, **hyperparameters,
        })  # fmt: skip
        if send:
            run.send_task(train_sft_task)
    return run


def _demonstrations(run: SFTRun) -> tuple[list[dict], str]:
    """The run's demonstration rows and their SHA-256: written on its first start, read again on a resume."""
    path = run_dir(run) / "data" / "demonstrations.jsonl"
    if not (run.data_sha256 and path.is_file()):
        result = export_dataset(
            dataset="sft", queues=list(run.queues.order_by("pk")), fmt="jsonl", path=path, filters=run.filters
        )
        SFTRun.objects.filter(pk=run.pk).update(data_sha256=result.sha256)
        run.data_sha256 = result.sha256
    with path.open(encoding="utf-8") as file:
        rows = [json.loads(line) for line in file if line.strip()]
    return rows, run.data_sha256


class _Progress:
    """Turns the trainer's (step, total, logs) into the Progress the Reporter writes, with an ETA."""

    def __init__(self, reporter: Reporter):
        self.reporter = reporter
        self.started = time.monotonic()
        self.first_step: int | None = None

    def __call__(self, step: int, total_steps: int, logs: dict) -> None:
        if self.first_step is None:
            self.first_step = step  # a resumed run starts past 0: time only the steps of this attempt
        done = step - self.first_step
        elapsed = time.monotonic() - self.started
        eta = elapsed / done * (total_steps - step) if done > 0 and total_steps else None
        metrics = {key: float(value) for key, value in logs.items() if isinstance(value, int | float)}
        epoch = int(metrics.pop("epoch", 0)) + 1
        self.reporter.on_progress(Progress(
            epoch=epoch, epochs=0, step=step, total_steps=total_steps,
            percent=100.0 * step / total_steps if total_steps else 0.0, eta_seconds=eta, metrics=metrics,
        ))  # fmt: skip


def execute_sft_run(run_id: int) -> None:
    """The SFT task's body: claim, fine-tune (resuming from a checkpoint), record the new policy."""
    from .ml import sft

    run = claim(
        SFTRun, run_id, related=("policy",),
        lost_reason="The worker stopped {attempts} times while fine-tuning this run (killed, out of memory, or"
        " the machine went away); it was not started again.",
    )  # fmt: skip
    if run is None:
        return
    heartbeat = Heartbeat(SFTRun.objects.filter(pk=run.pk, status=JobStatus.RUNNING))
    heartbeat.start()
    reporter = Reporter(SFTRun, run.pk, run.history)
    try:
        rows, sha256 = _demonstrations(run)
        train_rows, validation_rows = sft.split_by_prompt(rows, run.validation_fraction, run.seed)
        files = policies.policy_files(run.policy)
        config = sft.SFTConfig(
            base=files.name_or_path, base_gguf_file=files.gguf_file, output_dir=str(run_dir(run)),
            epochs=run.epochs, learning_rate=run.learning_rate, max_length=run.max_length,
            batch_size=run.batch_size, seed=run.seed, lora=run.lora, save_steps=settings.POLICY_CHECKPOINT_STEPS,
        )  # fmt: skip
        result = sft.train_sft(
            train_rows, validation_rows, config, on_progress=_Progress(reporter), should_stop=reporter.should_stop
        )
    except TrainingCancelled:
        SFTRun.finish(run.pk, JobStatus.CANCELLED)
    except Exception as error:  # any failure ends the run with a reason a person can read
        log.exception("SFT run %s failed", run.pk)
        SFTRun.fail(run.pk, f"{type(error).__name__}: {error}")
    else:
        with transaction.atomic():
            policy = policies.record_trained_policy(
                name=run.output_name, kind=Policy.Kind.SFT, parent=run.policy, path=str(result.model_dir),
                data_version=f"demonstrations sha256:{sha256[:12]} ({len(rows)} rows, SFT run {run.pk})",
                metrics=result.metrics, user=run.created_by,
            )  # fmt: skip
            SFTRun.finish(
                run.pk, JobStatus.SUCCEEDED, metrics=result.metrics, history=reporter.history or result.history,
                previews=result.previews, model_dir=str(result.model_dir), output=policy, progress_percent=100,
                eta_seconds=0,
            )  # fmt: skip
    finally:
        heartbeat.stopped.set()
        heartbeat.join(timeout=5)


def requeue_stale_sft_runs() -> int:
    """Send again the SFT runs that lost their worker or their message (core.jobs.resend_stale)."""
    from .tasks import train_sft_task  # here: the tasks module imports this one

    return resend_stale(SFTRun, train_sft_task)
