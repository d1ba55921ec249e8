"""Shared fixtures: users in each role, a queue with prompts and answers."""
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from django.contrib.auth.models import Group, User
from django.db import transaction
from playwright.sync_api import Browser, sync_playwright

from annotate.celery import app
from labeling.assignment.services import sync_tasks
from labeling.models import Answer, Prompt, Queue
from labeling.quality import aggregates

# Playwright's sync API runs an event loop in the test thread; Django's ORM refuses to run
# beside one unless told it is safe (the test thread is not serving requests).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(autouse=True, scope="session")
def empty_cache(django_db_setup):
    """The file cache outlives a run, and a new test database gives out the same ids again: start it empty (it
    holds signed-in users, core.roles)."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def no_throttles(settings):
    """No per-user limits on exports, datasets, runs, generation, pushes and scoring: tests make them by the dozen,
    and the cache outlives a test. tests/core/test_throttles.py sets its own limits."""
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {}}


@pytest.fixture(autouse=True)
def agreement_counted_at_once(request, monkeypatch):
    """A stored ranking or skip updates the stored agreement figures (labeling.quality.aggregates) here, draws included,
    as the worker does after the commit: at once, since a test's transaction never commits, or on commit in tests
    whose transactions do commit (so that, as in the worker, no lock of the submit is held meanwhile). Tests
    marked aggregates_on_commit keep the real path (the worker woken on commit, intervals a while later)."""
    if request.node.get_closest_marker("aggregates_on_commit"):
        return
    stored, count, draw = aggregates.ranking_stored, aggregates.count_backlog, aggregates.refresh_intervals
    monkeypatch.setattr(aggregates, "wake_worker", count)  # the real ranking_stored wakes it on commit
    if not {"transactional_db", "live_server"} & set(request.fixturenames):
        def stored_and_counted(*, queue_id, prompt_id):
            stored(queue_id=queue_id, prompt_id=prompt_id)
            count(queue_id=queue_id)

        monkeypatch.setattr(aggregates, "ranking_stored", stored_and_counted)
        monkeypatch.setattr(aggregates, "task_skipped", draw)
    else:
        monkeypatch.setattr(aggregates, "task_skipped",
                            lambda *, queue_id: transaction.on_commit(lambda: draw(queue_id=queue_id)))
    monkeypatch.setattr(aggregates, "schedule_intervals", draw)


def make_user(username: str, *roles: str) -> User:
    user = User.objects.create_user(username=username, password="pw-" + username)
    for role in roles:
        # get_or_create: a transactional test's flush removes the groups the migration made.
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


@pytest.fixture(autouse=True)
def models_dir(settings, tmp_path):
    """Each test's own MODELS_DIR (the model directories runs and generation jobs may name)."""
    settings.MODELS_DIR = tmp_path / "models"
    return settings.MODELS_DIR


@pytest.fixture
def eager():
    """Celery tasks run inside the request that sends them, as a worker would run them."""
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


@pytest.fixture
def offline_load(monkeypatch, tmp_path):
    """datasets.load_dataset, offline, caching under tmp_path."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    import datasets

    return lambda *args, **kwargs: datasets.load_dataset(*args, cache_dir=str(tmp_path / "hf-cache"), **kwargs)


def user_fixture(username: str, role: str):
    """A fixture giving one user in `role`."""

    @pytest.fixture
    def user(db) -> User:
        return make_user(username, role)

    return user


labeler = user_fixture("lab1", "labeler")
labeler2 = user_fixture("lab2", "labeler")
queue_admin = user_fixture("boss", "admin")
ml_user = user_fixture("mlstaff", "ml")


def shows_nan(html: str) -> bool:
    """Whether a page shows NaN as a word (CSRF tokens, random letters, may contain "nan" by chance)."""
    html = re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", html)
    return re.search(r"\bnan\b", html, flags=re.IGNORECASE) is not None


def make_queue(name="Q", *, prompts=3, answers=4, **fields) -> Queue:
    queue = Queue.objects.create(name=name, **fields)
    for i in range(prompts):
        prompt = Prompt.objects.create(queue=queue, text=f"Prompt {i}", content_hash=f"{name}-{i}")
        Answer.objects.bulk_create(
            Answer(prompt=prompt, position=j, text=f"Answer {j} to prompt {i}", model="m") for j in range(answers)
        )
    sync_tasks(queue)
    return queue


@pytest.fixture
def ranking_queue(db):
    return make_queue("Rank", prompts=3, answers=4, task_kind=Queue.Kinds.RANKING, ranking_overlap=2)


@pytest.fixture
def redis_broker():
    """Point this process's Celery app at the real Redis (db 15) for one test, then back.

    Celery builds its connection and producer pools lazily from broker_url; _after_fork() is the
    app's own way to drop them, so the next send connects to the URL set here.
    """
    import redis

    from annotate.celery import app

    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        # This database number is the tests' own: empty it of messages an aborted run left behind.
        redis.Redis.from_url(url, socket_connect_timeout=3).flushdb()
    except redis.RedisError as error:
        pytest.fail(f"Redis is not reachable at {url} ({error}); the worker tests need it running.")
    old_url, old_eager = app.conf.broker_url, app.conf.task_always_eager
    app.conf.broker_url, app.conf.task_always_eager = url, False
    app._after_fork()
    try:
        yield url
    finally:
        app.conf.broker_url, app.conf.task_always_eager = old_url, old_eager
        app._after_fork()


@dataclass
class LiveWorker:
    process: subprocess.Popen
    log: Path

    def wait_for(self, condition, *, what: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None:
                pytest.fail(f"The worker exited ({self.process.returncode}) while waiting for {what}:\n{self.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"Timed out after {timeout} s waiting for {what}.\n{self.output()}")
            time.sleep(0.2)

    def wait_finished(self, job, *, what: str, timeout: float = 120) -> None:
        """Wait until the worker job (core.jobs.WorkerJob) is finished, its row read again into `job`."""

        def finished() -> bool:
            job.refresh_from_db()
            return job.is_finished

        self.wait_for(finished, what=what, timeout=timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-20_000:]


@pytest.fixture
def start_worker(transactional_db, redis_broker, settings, tmp_path):
    """Starts real Celery worker processes on Redis, working on this test's PostgreSQL database.

    Each consumes the default and the training queues; media and artifacts live in tmp_path, shared
    with the test. SQLite's test database is in memory and cannot be shared, hence PostgreSQL only.
    Every worker started is stopped at the end of the test.
    """
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("A worker process shares the test database only on PostgreSQL: set DATABASE_URL.")
    db = connection.settings_dict
    credentials = quote(db["USER"] or "", safe="") + (":" + quote(db["PASSWORD"], safe="") if db["PASSWORD"] else "")
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    base_env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "CELERY_BROKER_URL": redis_broker,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "ARTIFACTS_DIR": str(settings.ARTIFACTS_DIR),
        "MODELS_DIR": str(settings.MODELS_DIR),
        "HF_HUB_OFFLINE": "1",
    }
    workers: list[LiveWorker] = []

    def start(**env) -> LiveWorker:
        log = tmp_path / f"worker-{len(workers)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [str(Path(sys.executable).with_name("celery")), "-A", "annotate", "worker", "--pool=solo",
                 "-Q", "celery,training,generation", "-l", "info", "-n", f"test{len(workers)}@%h",
                 "--without-gossip", "--without-mingle", "--without-heartbeat"],
                cwd=settings.BASE_DIR, env={**base_env, **env}, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        worker = LiveWorker(process, log)
        workers.append(worker)
        worker.wait_for(lambda: b" ready." in log.read_bytes(), what="the worker to start", timeout=60)
        return worker

    yield start
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.terminate()
            try:
                worker.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
        print(f"---- {worker.log.name} ----")  # pytest shows it when the test fails
        print(worker.output())


@pytest.fixture
def live_worker(start_worker):
    """One real Celery worker (see start_worker)."""
    return start_worker()


@pytest.fixture
def broker_down():
    """Nothing listens on port 1: every publish fails at once."""
    saved = {key: app.conf[key] for key in ("broker_url", "task_publish_retry", "task_always_eager")}
    app.conf.update(broker_url="redis://127.0.0.1:1/0", task_publish_retry=False, task_always_eager=False)
    app._after_fork()  # drop pools made for the old URL
    yield
    app.conf.update(saved)
    app._after_fork()


# Chromium for every browser test, wherever it lives: one per session (Playwright's sync API cannot run
# two at once in one process). Debian's Chromium is used directly; `playwright install` is never run.
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser() -> Browser:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
