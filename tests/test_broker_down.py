"""With the broker down, labeling goes on and queued work says why it did not start."""
import json

from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from core.jobs import JobStatus
from labeling.assignment.services import lease_next_task
from labeling.models import ImportJob, Ranking
from rewardtrain import runs
from rewardtrain.models import PairDataset


def test_an_import_sent_while_the_broker_is_down_fails_with_the_reason(
    client, queue_admin, ranking_queue, settings, tmp_path, broker_down, django_capture_on_commit_callbacks
):
    settings.MEDIA_ROOT = tmp_path
    client.force_login(queue_admin)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("manage-queue-import", args=[ranking_queue.pk]),
            {"file": SimpleUploadedFile("p.jsonl", b'{"prompt": "x"}\n')},
        )
    job = ImportJob.objects.get()
    assert job.status == ImportJob.Status.FAILED
    assert "task queue could not be reached" in job.errors[0]["reason"]
    assert "task queue could not be reached" in client.get(response.url).content.decode()


def test_labelers_submit_while_the_broker_is_down(client, labeler, ranking_queue, broker_down):
    client.force_login(labeler)
    assignment_url = client.get(reverse("queue-next-task", args=[ranking_queue.pk])).url
    assignment = lease_next_task(labeler=labeler, queue=ranking_queue)
    assert assignment_url == reverse("task", args=[assignment.pk])
    groups = json.dumps([[pk] for pk in assignment.answer_order])
    assert client.post(reverse("task-submit", args=[assignment.pk]), {"groups": groups}).status_code == 302
    assert Ranking.objects.count() == 1


def test_a_training_run_sent_while_the_broker_is_down_fails_with_the_reason(db, broker_down,
                                                                            django_capture_on_commit_callbacks):
    dataset = PairDataset.objects.create(name="d", version=1, status=JobStatus.SUCCEEDED)
    with django_capture_on_commit_callbacks(execute=True):
        run = runs.request_training_run(dataset=dataset, base_model="tiny")
    run.refresh_from_db()
    assert run.status == JobStatus.FAILED and "task queue could not be reached" in run.error
