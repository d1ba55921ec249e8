"""A training run whose worker died on its last allowed attempt is not "running" forever: once its
heartbeat is stale, the resend (what beat does every minute) reaches a real worker, which fails the
run with the reason. The resume case (a killed worker's run continues from its checkpoint) is
tests/rewardtrain/test_worker_death.py."""
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from core.jobs import MAX_ATTEMPTS, JobStatus
from rewardtrain import runs
from rewardtrain.models import PairDataset, TrainingRun

pytestmark = pytest.mark.worker
HEARTBEAT_TIMEOUT = 3


def test_a_run_whose_worker_died_on_its_last_attempt_is_failed_with_the_reason(start_worker, settings):
    settings.RUN_HEARTBEAT_TIMEOUT = HEARTBEAT_TIMEOUT
    dataset = PairDataset.objects.create(name="d", version=1, status=JobStatus.SUCCEEDED)
    # What a worker killed with SIGKILL on the last attempt leaves: running, and a heartbeat that stopped.
    run = TrainingRun.objects.create(
        dataset=dataset, base_model="tiny", max_length=32, learning_rate=1e-3, epochs=1, prompts_per_batch=4,
        status=JobStatus.RUNNING, attempts=MAX_ATTEMPTS, started_at=timezone.now() - timedelta(minutes=5),
        heartbeat_at=timezone.now() - timedelta(seconds=HEARTBEAT_TIMEOUT + 1),
    )  # fmt: skip
    worker = start_worker(RUN_HEARTBEAT_TIMEOUT=str(HEARTBEAT_TIMEOUT))
    started = time.monotonic()
    assert runs.requeue_stale_runs() == 1

    worker.wait_finished(run, what="the run to be failed", timeout=60)
    assert run.status == JobStatus.FAILED and run.finished_at is not None
    assert f"The worker stopped {MAX_ATTEMPTS} times" in run.error
    assert run.attempts == MAX_ATTEMPTS  # not started a fourth time
    assert runs.requeue_stale_runs() == 0  # and never sent again
    print(f"failed {time.monotonic() - started:.1f} s after the resend")
