"""core.jobs: one lifecycle for every worker job (imports, exports, pair datasets, generation jobs, training runs).

One status vocabulary, one way to end a job and to record why it failed, one claim and one re-send of stale
jobs for the long ones. The behaviour of each kind through its own service is tested with it
(tests/labeling/test_importing.py, tests/rewardtrain/test_runs.py, test_generation.py, ...).
"""
from datetime import timedelta

import pytest
from django.apps import apps
from django.utils import timezone

from core.jobs import FINISHED, MAX_ATTEMPTS, JobStatus, ResumableJob, WorkerJob, claim, resend_stale
from labeling.models import ExportSnapshot, ImportJob
from rewardtrain.models import (
    EvaluationRound,
    GenerationJob,
    PairDataset,
    Policy,
    PolicyRun,
    SFTRun,
    TrainingRun,
)
from tests.conftest import make_queue

pytestmark = pytest.mark.django_db

JOBS = [ImportJob, ExportSnapshot, PairDataset, GenerationJob, TrainingRun, SFTRun, PolicyRun, EvaluationRound]


def queued_statuses(model) -> bool:
    fields = {field.name: field for field in model._meta.fields}
    return "status" in fields and "queued" in dict(fields["status"].choices or ())


def test_every_model_that_queues_work_is_a_worker_job_with_the_one_vocabulary():
    """A labeler's Assignment has a status of its own (leased, submitted...); every job's is JobStatus."""
    jobs = [model for model in apps.get_models() if queued_statuses(model)]
    assert sorted(model.__name__ for model in jobs) == sorted(model.__name__ for model in JOBS)
    for model in JOBS:
        assert issubclass(model, WorkerJob)
        assert model._meta.get_field("status").choices == JobStatus.choices
        assert model.Status is JobStatus
    resumable = {GenerationJob, TrainingRun, SFTRun, PolicyRun, EvaluationRound}
    assert {model for model in JOBS if issubclass(model, ResumableJob)} == resumable


def make_jobs() -> dict:
    queue = make_queue(prompts=1)
    dataset = PairDataset.objects.create(name="d", version=1)
    policy = Policy.objects.create(name="p", version=1, kind="base", source="tiny")
    return {
        ImportJob: ImportJob.objects.create(queue=queue, file="imports/x.jsonl", original_name="x.jsonl"),
        ExportSnapshot: ExportSnapshot.objects.create(name="e", version=1, dataset="sft", format="jsonl"),
        PairDataset: dataset,
        GenerationJob: GenerationJob.objects.create(queue=queue, model_name="smollm2"),
        TrainingRun: TrainingRun.objects.create(
            dataset=dataset, base_model="tiny", max_length=32, learning_rate=1e-3, epochs=1, prompts_per_batch=4
        ),
        SFTRun: SFTRun.objects.create(policy=policy, output_name="p-sft"),
        PolicyRun: PolicyRun.objects.create(method="dpo", policy=policy, dataset=dataset, output_name="p-dpo"),
        EvaluationRound: EvaluationRound.objects.create(name="r", queue=queue, baseline=policy),
    }


def test_a_failure_is_recorded_one_way_where_each_kind_keeps_its_reason():
    for model, job in make_jobs().items():
        assert job.status == JobStatus.QUEUED and not job.is_finished
        model.fail(job.pk, "The broker went away.")
        job.refresh_from_db()
        assert job.status == JobStatus.FAILED and job.is_finished and job.finished_at is not None
        if model is ImportJob:
            assert job.errors == [{"line": 0, "reason": "The broker went away."}]
        else:
            assert job.error == "The broker went away."


def test_finish_ends_a_job_with_its_fields():
    run = make_jobs()[TrainingRun]
    TrainingRun.finish(run.pk, JobStatus.CANCELLED, cancel_requested=True)
    run.refresh_from_db()
    assert (run.status, run.cancel_requested) == (JobStatus.CANCELLED, True) and run.finished_at is not None
    assert set(FINISHED) == {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED}


@pytest.mark.parametrize("model", [GenerationJob, TrainingRun, EvaluationRound])
def test_claim_takes_a_job_once_counts_attempts_and_gives_up_after_the_last(model):
    job = make_jobs()[model]
    taken = claim(model, job.pk, lost_reason="stopped {attempts} times")
    assert taken.status == JobStatus.RUNNING and taken.attempts == 1 and taken.started_at is not None
    assert claim(model, job.pk, lost_reason="stopped {attempts} times") is None  # alive: its heartbeat is fresh

    model.objects.filter(pk=job.pk).update(attempts=MAX_ATTEMPTS, heartbeat_at=timezone.now() - timedelta(hours=1))
    assert claim(model, job.pk, lost_reason="stopped {attempts} times") is None
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.error == f"stopped {MAX_ATTEMPTS} times"


def test_claim_ends_a_run_whose_cancel_was_asked_for():
    run = make_jobs()[TrainingRun]
    TrainingRun.objects.filter(pk=run.pk).update(cancel_requested=True)
    assert claim(TrainingRun, run.pk, lost_reason="") is None
    run.refresh_from_db()
    assert run.status == JobStatus.CANCELLED


class Task:
    def __init__(self):
        self.sent = []

    def delay(self, pk):
        self.sent.append(pk)


@pytest.mark.parametrize("model", [GenerationJob, TrainingRun, EvaluationRound])
def test_resend_stale_sends_again_lost_workers_and_lost_messages_once(model):
    jobs = make_jobs()
    job = jobs[model]
    long_ago = timezone.now() - timedelta(hours=1)
    model.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, heartbeat_at=long_ago)
    task = Task()
    assert resend_stale(model, task) == 1 and task.sent == [job.pk]
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert resend_stale(model, task) == 0  # sent once, not once a minute

    # A queued job whose message was lost (the broker restarted without its data) goes out again too.
    model.objects.filter(pk=job.pk).update(created_at=long_ago, heartbeat_at=long_ago)
    assert resend_stale(model, task) == 1 and task.sent == [job.pk, job.pk]
