"""End to end: a browser-style upload is imported by a real Celery worker on Redis and PostgreSQL."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction

from labeling.models import Answer, ImportJob, Prompt, Queue, Task, TaskKind
from labeling.tasks import run_import_job


@pytest.mark.worker
def test_worker_imports_an_uploaded_file(live_worker):
    queue = Queue.objects.create(name="E2E", task_kind=Queue.Kinds.BOTH)
    rows = [
        {"prompt": "Explain rain.", "id": "r1", "answers": ["Water falls.", {"text": "Clouds.", "model": "m1"}]},
        {"prompt": "Write a haiku.", "id": "r2"},
    ]
    data = "".join(json.dumps(row) + "\n" for row in rows).encode()
    with transaction.atomic():  # as the upload view does: dispatch once the job row is committed
        job = ImportJob.objects.create(queue=queue, file=ContentFile(data, name="e2e.jsonl"), original_name="e2e.jsonl")
        transaction.on_commit(lambda: run_import_job.delay(job.pk))
    assert (Path(settings.MEDIA_ROOT) / job.file.name).is_file()

    def finished() -> bool:
        job.refresh_from_db()
        return job.status in (ImportJob.Status.SUCCEEDED, ImportJob.Status.FAILED)

    live_worker.wait_for(finished, what=f"import job {job.pk} to finish", timeout=60)
    assert (job.status, job.errors) == (ImportJob.Status.SUCCEEDED, [])
    assert (job.created_count, job.existing_count) == (2, 0)
    assert set(Prompt.objects.filter(queue=queue).values_list("external_id", "text")) == {
        ("r1", "Explain rain."),
        ("r2", "Write a haiku."),
    }
    assert list(Answer.objects.filter(prompt__external_id="r1").values_list("position", "text", "model")) == [
        (0, "Water falls.", ""),
        (1, "Clouds.", "m1"),
    ]
    assert set(Task.objects.filter(prompt__queue=queue).values_list("prompt__external_id", "kind")) == {
        ("r1", TaskKind.DEMONSTRATION),
        ("r1", TaskKind.RANKING),
        ("r2", TaskKind.DEMONSTRATION),
    }


@pytest.mark.worker
def test_the_worker_health_probe_answers_while_it_runs_and_fails_once_it_is_gone(live_worker, redis_broker):
    """The probe docs/operations.md gives orchestrators: `celery inspect ping` to one worker by name."""
    probe = [str(Path(sys.executable).with_name("celery")), "-A", "annotate", "inspect", "ping",
             "--destination", f"test0@{socket.gethostname()}", "--timeout", "10"]  # fmt: skip
    env = {**os.environ, "CELERY_BROKER_URL": redis_broker}

    alive = subprocess.run(probe, env=env, cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=60)
    assert alive.returncode == 0 and "pong" in alive.stdout, alive.stdout + alive.stderr

    live_worker.process.kill()
    live_worker.process.wait()
    gone = subprocess.run(probe, env=env, cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=60)
    assert gone.returncode != 0
