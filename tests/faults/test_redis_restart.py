"""Drill: Redis (the Celery broker) stops while labelers work and comes back on the same port.

A real redis-server of the test's own on a free port (the shared one on 6379 is never touched) and a
real worker on it. While Redis is down, the labeler pages and submits work (they never touch the
broker), and an import and an export requested meanwhile are failed at once with the reason instead of
waiting as "queued". Once Redis is back, the worker reconnects by itself (Celery's consumer retries
with growing pauses: 2, 4, 6 … seconds, at most 30) and new requests are delivered and succeed.
"""
import json
import shutil
import socket
import subprocess
import time

import pytest
import redis
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotate.celery import app
from labeling.datasets import exports
from labeling.models import Assignment, ExportSnapshot, ImportJob, Prompt, Ranking
from tests.conftest import make_queue, make_user

pytestmark = [pytest.mark.worker, pytest.mark.postgres]
REDIS_BINARY = shutil.which("redis-server")
RECONNECT_BOUND_SECONDS = 60  # Celery's retry pauses reach at most 30 s; the rest is slack for a slow machine


class OwnRedis:
    """A throwaway redis-server: no persistence, so a stop loses every message in it, like a crash."""

    def __init__(self, workdir):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=1)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [REDIS_BINARY, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client().ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        try:
            self.client().shutdown(nosave=True)
        except redis.ConnectionError:
            pass  # redis-py reports the connection the shutdown closed
        self.process.wait(timeout=10)
        with pytest.raises(redis.ConnectionError):
            self.client().ping()


@pytest.fixture
def own_redis(tmp_path):
    if REDIS_BINARY is None:
        pytest.skip("redis-server is not installed")
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    if server.process.poll() is None:
        server.process.terminate()
        server.process.wait(timeout=10)


def wait_until(condition, *, what: str, timeout: float, worker) -> float:
    """Wait for `condition` (failing with the worker's log after `timeout`); returns the seconds it took."""
    started = time.monotonic()
    worker.wait_for(condition, what=what, timeout=timeout)
    return time.monotonic() - started


def import_prompts(client, queue, text: str) -> ImportJob:
    upload = SimpleUploadedFile("p.jsonl", json.dumps({"prompt": text}).encode() + b"\n")
    client.post(reverse("manage-queue-import", args=[queue.pk]), {"file": upload})
    return ImportJob.objects.latest("pk")


def finished(row) -> bool:
    row.refresh_from_db()
    return row.status in ("succeeded", "failed")


def test_redis_stops_and_comes_back_while_labelers_work(start_worker, own_redis, client, settings):
    worker = start_worker(CELERY_BROKER_URL=own_redis.url)
    # This process sends to the same Redis (redis_broker, under start_worker, restores the URL afterwards).
    app.conf.broker_url = own_redis.url
    app._after_fork()
    labeler = make_user("lab1", "labeler")
    boss = make_user("boss", "admin")
    queue = make_queue("Rank", prompts=2, answers=3, ranking_overlap=1)
    admin = client_for(boss)

    before = import_prompts(admin, queue, "before the fault")
    wait_until(lambda: finished(before), what="the import sent before the fault", timeout=60, worker=worker)
    assert before.status == ImportJob.Status.SUCCEEDED, before.errors

    own_redis.stop()

    # Labelers go on: lease, open the page, submit.
    client.force_login(labeler)
    task_url = client.get(reverse("queue-next-task", args=[queue.pk])).url
    assert client.get(task_url).status_code == 200
    assignment_id = int(task_url.rstrip("/").rsplit("/", 1)[1])
    answer_ids = Assignment.objects.get(pk=assignment_id).answer_order
    groups = json.dumps([[pk] for pk in answer_ids])
    submit = client.post(reverse("task-submit", args=[assignment_id]), {"groups": groups})
    assert submit.status_code == 302
    assert Ranking.objects.filter(assignment_id=assignment_id).count() == 1

    # Work sent to the worker meanwhile fails at once, saying why; nothing waits as "queued".
    started = time.monotonic()
    during = import_prompts(admin, queue, "during the fault")
    snapshot = exports.request_export(name="during", dataset="comparisons", fmt="jsonl", queues=[queue], filters={})
    refused_in = time.monotonic() - started
    during.refresh_from_db()
    snapshot.refresh_from_db()
    assert during.status == ImportJob.Status.FAILED and "task queue could not be reached" in during.errors[0]["reason"]
    assert snapshot.status == ExportSnapshot.Status.FAILED and "task queue could not be reached" in snapshot.error
    assert refused_in < 15, f"refusing two requests took {refused_in:.1f} s"
    assert "task queue could not be reached" in admin.get(reverse("manage-import", args=[during.pk])).content.decode()

    own_redis.start()  # same port, empty: whatever it held before is gone

    # New work goes through once the worker has reconnected by itself.
    after = import_prompts(admin, queue, "after the fault")
    took = wait_until(lambda: finished(after), what="the import sent after the restart",
                      timeout=RECONNECT_BOUND_SECONDS, worker=worker)  # fmt: skip
    assert after.status == ImportJob.Status.SUCCEEDED, after.errors
    export = exports.request_export(name="after", dataset="comparisons", fmt="jsonl", queues=[queue], filters={})
    wait_until(lambda: finished(export), what="the export sent after the restart", timeout=60, worker=worker)
    assert export.status == ExportSnapshot.Status.SUCCEEDED, export.error
    assert export.rows == 1  # the ranking submitted while Redis was down
    assert set(Prompt.objects.filter(queue=queue).values_list("text", flat=True)) >= {
        "before the fault", "after the fault"
    }
    assert not Prompt.objects.filter(text="during the fault").exists()
    print(f"refused while down in {refused_in:.2f} s; delivered {took:.1f} s after the restart")
    assert "Connection to broker lost" in worker.output()


def client_for(user):
    from django.test import Client

    other = Client()
    other.force_login(user)
    return other
