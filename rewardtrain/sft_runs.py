"""SFT runs: fine-tuning a policy on the demonstrations of chosen queues, in the worker (the training queue).

The demonstrations pass the same filters as exports (labeling.datasets.filters) and are written once, by the
export code, into the run's directory: a run that resumes after its worker died trains on the very rows it
started with, and the data version a new policy records is that file's SHA-256. The training itself is
rewardtrain.ml.sft (TRL's SFTTrainer, no Django); this module claims the run, reports its progress,
honours cancel, and records the fine-tuned policy in the registry with its lineage.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from django.conf import settings
from django.db import transaction

from core import audit
from core.jobs import JobStatus, resend_stale
from labeling.datasets.exports import export_dataset
from labeling.datasets.filters import clean_export_filters
from labeling.models import Queue

from . import policies
from .models import Policy, SFTRun
from .runs import LOST_REASON, Reporter, run_training_job

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


def execute_sft_run(run_id: int) -> None:
    """The SFT task's body: fine-tune (resuming from a checkpoint), record the new policy."""
    data: dict = {}

    def train(run: SFTRun, reporter: Reporter):
        from .ml import sft

        data["rows"], data["sha256"] = _demonstrations(run)
        train_rows, validation_rows = sft.split_by_prompt(data["rows"], run.validation_fraction, run.seed)
        files = policies.policy_files(run.policy)
        config = sft.SFTConfig(
            base=files.name_or_path, base_gguf_file=files.gguf_file, output_dir=str(run_dir(run)),
            epochs=run.epochs, learning_rate=run.learning_rate, max_length=run.max_length,
            batch_size=run.batch_size, seed=run.seed, lora=run.lora, save_steps=settings.POLICY_CHECKPOINT_STEPS,
        )  # fmt: skip
        return sft.train_sft(
            train_rows, validation_rows, config, on_progress=reporter.on_step, should_stop=reporter.should_stop
        )

    def record(run: SFTRun, result, reporter: Reporter) -> None:
        policy = policies.record_trained_policy(
            name=run.output_name, kind=Policy.Kind.SFT, parent=run.policy, path=str(result.model_dir),
            data_version=f"demonstrations sha256:{data['sha256'][:12]} ({len(data['rows'])} rows, SFT run {run.pk})",
            metrics=result.metrics, user=run.created_by,
        )  # fmt: skip
        SFTRun.finish(
            run.pk, JobStatus.SUCCEEDED, metrics=result.metrics, history=reporter.history or result.history,
            previews=result.previews, model_dir=str(result.model_dir), output=policy, progress_percent=100,
            eta_seconds=0,
        )  # fmt: skip

    run_training_job(SFTRun, run_id, related=("policy",), train=train, record=record, lost_reason=LOST_REASON)


def requeue_stale_sft_runs() -> int:
    """Send again the SFT runs that lost their worker or their message (core.jobs.resend_stale)."""
    from .tasks import train_sft_task  # here: the tasks module imports this one

    return resend_stale(SFTRun, train_sft_task)
