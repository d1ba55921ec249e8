"""End to end: a real Celery worker on Redis imports an uploaded file into the test database."""

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from django.conf import settings as django_settings
from django.core.files.base import ContentFile
from django.db import connection
from kombu import Connection, Exchange
from kombu import Queue as KombuQueue

from annotate.celery import app
from labeling.models import Answer, ImportJob, Prompt, Queue, Task, TaskKind
from labeling.tasks import run_import_job

BROKER_URL = "redis://127.0.0.1:6379/15"
CELERY = Path(sys.executable).with_name("celery")
TIMEOUT_SECONDS = 60


@pytest.fixture
def database_url(transactional_db) -> str:
    """The URL of the test database, for the worker; rows the test writes are committed, so it sees them."""
    if connection.vendor != "postgresql":
        pytest.skip("The worker test shares the test database with a subprocess: set DATABASE_URL to PostgreSQL.")
    db = connection.settings_dict
    credentials = quote(db["USER"] or "", safe="") + (":" + quote(db["PASSWORD"], safe="") if db["PASSWORD"] else "")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _wait_for(condition, *, what: str, worker: subprocess.Popen) -> None:
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while not condition():
        if worker.poll() is not None:
            pytest.fail(f"The worker exited with status {worker.returncode} while waiting for {what}.")
        if time.monotonic() > deadline:
            pytest.fail(f"Timed out after {TIMEOUT_SECONDS} s waiting for {what}.")
        time.sleep(0.2)


@pytest.fixture
def redis_broker():
    """A queue of this test's own on Redis, so a worker of a parallel run cannot take its message."""
    try:
        redis.Redis.from_url(BROKER_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as error:
        pytest.fail(f"Redis is not reachable at {BROKER_URL} ({error}); the worker test needs it running.")
    queue_name = f"test-import-{uuid.uuid4().hex[:8]}"
    try:
        yield queue_name
    finally:
        with Connection(BROKER_URL) as conn:  # leave no queue or binding behind in Redis
            bound = KombuQueue(queue_name, Exchange(queue_name, type="direct"), routing_key=queue_name)(conn)
            bound.declare()
            bound.delete()


@pytest.mark.worker
def test_worker_imports_an_uploaded_file(database_url, redis_broker, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": BROKER_URL,
        "MEDIA_ROOT": str(tmp_path),
        "CELERY_TASK_ALWAYS_EAGER": "0",
    }
    log_path = tmp_path / "worker.log"
    queue = Queue.objects.create(name="E2E", task_kind=Queue.Kinds.BOTH)
    rows = [
        {"prompt": "Explain rain.", "id": "r1", "answers": ["Water falls.", {"text": "Clouds.", "model": "m1"}]},
        {"prompt": "Write a haiku.", "id": "r2"},
    ]
    data = "".join(json.dumps(row) + "\n" for row in rows).encode()
    job = ImportJob.objects.create(queue=queue, file=ContentFile(data, name="e2e.jsonl"), original_name="e2e.jsonl")
    assert (Path(django_settings.MEDIA_ROOT) / job.file.name).is_file()

    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [
                str(CELERY), "-A", "annotate", "worker", "--pool=solo", "--concurrency=1", "-l", "info",
                "-Q", redis_broker, "-n", f"{redis_broker}@%h",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
            ],
            cwd=django_settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_for(lambda: b" ready." in log_path.read_bytes(), what="the worker to start", worker=worker)
        # Sent as the web process does, through a producer on the Redis broker.
        with app.connection_for_write(BROKER_URL) as conn:
            run_import_job.apply_async(args=[job.id], queue=redis_broker, connection=conn)

        def finished() -> bool:
            job.refresh_from_db()
            return job.status in (ImportJob.Status.SUCCEEDED, ImportJob.Status.FAILED)

        _wait_for(finished, what=f"import job {job.id} to finish", worker=worker)

        assert (job.status, job.errors) == (ImportJob.Status.SUCCEEDED, [])
        assert (job.created_count, job.existing_count) == (2, 0)
        assert job.finished_at is not None
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
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        # pytest shows a test's output only when it fails.
        print("---- worker output ----")
        print(log_path.read_text(errors="replace"))
