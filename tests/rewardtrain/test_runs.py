"""The run lifecycle around the trainer (in process): claiming, failing with a reason, cancelling."""
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone

from core.jobs import MAX_ATTEMPTS, JobStatus
from rewardtrain import runs
from rewardtrain.models import PairDataset, RewardModel, TrainingRun

from .factories import marker_queue, rank_by_marker


@pytest.fixture
def dataset(db, settings, tmp_path):
    from rewardtrain import datasets

    settings.ARTIFACTS_DIR = tmp_path
    queue = marker_queue(prompts=8)
    rank_by_marker(queue, labelers=1)
    dataset = PairDataset.objects.create(name="d", version=1, validation_fraction=0.25)
    dataset.queues.set([queue])
    return datasets.build_pair_dataset(dataset)


def new_run(dataset, **fields) -> TrainingRun:
    defaults = dict(base_model="tiny", max_length=32, learning_rate=1e-3, epochs=1, prompts_per_batch=4)
    return TrainingRun.objects.create(dataset=dataset, **{**defaults, **fields})


def test_a_run_with_a_bad_base_model_fails_with_a_readable_reason(dataset):
    run = new_run(dataset, base_model="/no/such/model")
    runs.execute_run(run.pk)
    run.refresh_from_db()
    assert run.status == JobStatus.FAILED
    assert "/no/such/model" in run.error and run.finished_at is not None
    assert not RewardModel.objects.exists()


def test_a_run_trains_in_process_and_enters_the_registry(dataset):
    run = new_run(dataset, epochs=2)
    runs.execute_run(run.pk)
    run.refresh_from_db()
    assert run.status == JobStatus.SUCCEEDED, run.error
    assert run.attempts == 1 and run.progress_percent == 100 and run.history
    model = RewardModel.objects.get(run=run)
    assert model.metrics["validation"]["pairs"] == dataset.validation_rows
    assert (runs.run_dir(run) / "model" / "config.json").is_file()
    runs.execute_run(run.pk)  # a redelivered message changes nothing
    assert RewardModel.objects.count() == 1


def test_claiming_skips_finished_live_and_cancelled_runs_and_fails_after_too_many_attempts(dataset):
    done = new_run(dataset, status=JobStatus.SUCCEEDED)
    assert runs.claim_run(done.pk) is None
    live = new_run(dataset, status=JobStatus.RUNNING, heartbeat_at=timezone.now(), attempts=1)
    assert runs.claim_run(live.pk) is None  # another worker has it
    stale = new_run(dataset, status=JobStatus.RUNNING, heartbeat_at=timezone.now() - timedelta(hours=1), attempts=1)
    claimed = runs.claim_run(stale.pk)
    assert claimed is not None and claimed.attempts == 2
    cancelled = new_run(dataset, cancel_requested=True)
    assert runs.claim_run(cancelled.pk) is None
    cancelled.refresh_from_db()
    assert cancelled.status == JobStatus.CANCELLED
    worn = new_run(dataset, status=JobStatus.RUNNING, attempts=MAX_ATTEMPTS)
    assert runs.claim_run(worn.pk) is None
    worn.refresh_from_db()
    assert worn.status == JobStatus.FAILED and f"stopped {MAX_ATTEMPTS} times" in worn.error


def test_a_cancel_request_reaches_the_trainer(dataset):
    run = new_run(dataset, status=JobStatus.RUNNING)
    reporter = runs.Reporter(TrainingRun, run.pk)
    assert reporter.should_stop() is False
    runs.cancel_run(run)
    reporter.last_cancel_check = 0.0
    assert reporter.should_stop() is True


def test_a_resumed_run_keeps_one_learning_curve(dataset):
    run = new_run(dataset)
    reporter = runs.Reporter(TrainingRun, run.pk)
    for step in (10, 20, 30):
        reporter.on_progress(SimpleNamespace(step=step, epoch=1, total_steps=40, percent=step / 40 * 100,
                                             eta_seconds=1, metrics={"train_loss": 1.0 / step}))  # fmt: skip
    # Killed after step 30; the checkpoint was at step 20, so step 30 is logged again.
    reporter.on_progress(SimpleNamespace(step=30, epoch=1, total_steps=40, percent=75.0, eta_seconds=1,
                                         metrics={"train_loss": 0.5}))  # fmt: skip
    run.refresh_from_db()
    assert [entry["step"] for entry in run.history] == [10, 20, 30]
    assert run.history[-1]["train_loss"] == 0.5
