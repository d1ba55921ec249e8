"""Per-user limits on the expensive actions (core/throttles.py): past the limit the API answers 429 with
Retry-After and a message, the pages show it on the page, nothing is created, and API and pages share one count
kept in the shared cache. tests/conftest.py turns the limits off for every other test."""
import os
import subprocess
import sys

import pytest
import redis
from django.conf import settings as django_settings
from django.urls import reverse
from rest_framework.test import APIClient

from core.jobs import JobStatus
from labeling.models import ExportSnapshot, Prompt, Queue
from rewardtrain.models import GenerationJob, PairDataset, Policy, RewardModel, TrainingRun
from tests.conftest import make_queue, make_user

pytestmark = pytest.mark.django_db


def limit(settings, **rates) -> None:
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}


@pytest.fixture
def ml():
    return make_user("mlstaff", "ml")


@pytest.fixture
def api(ml) -> APIClient:
    client = APIClient()
    client.force_login(ml)
    return client


@pytest.fixture
def queue():
    return make_queue("Q", prompts=2, answers=3, task_kind=Queue.Kinds.RANKING)


@pytest.fixture
def built(queue):
    dataset = PairDataset.objects.create(name="built", version=1, status=JobStatus.SUCCEEDED, rows=3)
    dataset.queues.add(queue)
    return dataset


class FakeScorer:
    calls = 0

    def score(self, prompt, answers, *, max_tokens=None):
        FakeScorer.calls += 1
        return [0.0] * len(answers)


def api_action(scope: str, queue: Queue, built: PairDataset, monkeypatch):
    """(url, body of the nth request, how many things it made so far) for one scope's action."""
    if scope == "exports":
        body = lambda n: {"name": f"e{n}", "dataset": "sft", "format": "jsonl", "queues": [queue.pk]}  # noqa: E731
        return "/api/v1/exports/", body, ExportSnapshot.objects.count
    if scope == "datasets":
        body = lambda n: {"name": f"d{n}", "queues": [queue.pk]}  # noqa: E731
        return "/api/v1/pair-datasets/", body, PairDataset.objects.count
    if scope == "runs":
        body = lambda n: {"dataset": built.pk, "base_model": "tiny", "seed": n}  # noqa: E731
        return "/api/v1/runs/", body, TrainingRun.objects.count
    if scope == "push":
        body = lambda n: {"prompts": [{"id": f"p{n}", "prompt": f"Prompt {n}", "answers": ["a", "b"]}]}  # noqa: E731
        return f"/api/v1/queues/{queue.pk}/prompts/", body, Prompt.objects.count
    model = RewardModel.objects.create(run=TrainingRun.objects.create(dataset=built, base_model="tiny"), name="rm",
                                       path="/nowhere")  # fmt: skip
    FakeScorer.calls = 0
    monkeypatch.setattr("rewardtrain.ml.scoring.load_scorer", lambda path: FakeScorer())
    body = lambda n: {"prompt": "Name a prime.", "answers": ["7", str(n)]}  # noqa: E731
    return f"/api/v1/reward-models/{model.pk}/score/", body, lambda: FakeScorer.calls


@pytest.mark.parametrize(
    "scope, words, period",
    [("exports", "exports", "hour"), ("datasets", "pair datasets", "hour"), ("runs", "training runs", "hour"),
     ("push", "pushes of prompts", "hour"), ("score", "scoring requests", "minute")],
)  # fmt: skip
def test_past_its_limit_an_api_action_answers_429_with_retry_after_and_does_nothing(
    api, queue, built, monkeypatch, settings, scope, words, period
):
    limit(settings, **{scope: f"2/{period}"})
    url, body, made = api_action(scope, queue, built, monkeypatch)
    for n in range(2):
        assert api.post(url, body(n), format="json").status_code in (200, 201)
    before = made()

    response = api.post(url, body(2), format="json")
    assert response.status_code == 429
    seconds = int(response["Retry-After"])
    assert 0 < seconds <= (3600 if period == "hour" else 60)
    assert response.json()["detail"].startswith(f"Too many {words}: at most 2 per {period} for each user. Try again")
    assert made() == before  # refused before the view ran
    # Reads are not counted, nor limited.
    list_url = {"push": "/api/v1/queues/", "score": "/api/v1/reward-models/"}.get(scope, url)
    assert api.get(list_url).status_code == 200


def test_the_limit_is_per_user(api, queue, built, monkeypatch, settings):
    limit(settings, exports="1/hour")
    url, body, made = api_action("exports", queue, built, monkeypatch)
    assert api.post(url, body(0), format="json").status_code == 201
    assert api.post(url, body(1), format="json").status_code == 429
    other = APIClient()
    other.force_login(make_user("mlstaff2", "ml"))
    assert other.post(url, body(2), format="json").status_code == 201
    assert made() == 2


PAGES = {
    "exports": ("ml-exports", lambda queue, built: {"name": "page", "dataset": "sft", "format": "jsonl",
                                                    "queues": [queue.pk]}, ExportSnapshot),  # fmt: skip
    "datasets": ("ml-datasets", lambda queue, built: {"name": "page", "queues": [queue.pk],
                                                      "validation_fraction": 0.1, "seed": 0}, PairDataset),  # fmt: skip
    "runs": ("ml-runs", lambda queue, built: {"dataset": built.pk, "base_model": "tiny", "max_length": 64,
                                              "learning_rate": 1e-3, "epochs": 1, "prompts_per_batch": 4,
                                              "seed": 0}, TrainingRun),  # fmt: skip
    "generation": ("ml-generation-jobs", lambda queue, built: {"queue": queue.pk, "policy": smollm2().pk,
                                                               "answers_per_prompt": 2, "temperature": 1.0,
                                                               "top_p": 0.95, "max_new_tokens": 4, "seed": 3},
                   GenerationJob),  # fmt: skip
}


def smollm2() -> Policy:
    return Policy.objects.get_or_create(name="smollm2", version=1, kind="base", source="smollm2")[0]


SENT = {"exports": 'name="name" value="page"', "datasets": 'name="name" value="page"',
        "runs": 'name="max_length" value="64"', "generation": 'name="max_new_tokens" value="4"'}


@pytest.mark.parametrize("scope", PAGES)
def test_a_page_past_the_limit_shows_the_message_keeps_the_form_and_creates_nothing(
    client, ml, queue, built, monkeypatch, settings, scope
):
    limit(settings, **{scope: "1/hour"})
    url_name, form, model = PAGES[scope]
    client.force_login(ml)
    if scope == "generation":  # no API: the page itself spends the one allowed
        assert client.post(reverse(url_name), form(queue, built)).status_code == 302
    else:  # the API's request counts against the page: one count per user and action
        url, body, _ = api_action(scope, queue, built, monkeypatch)
        api = APIClient()
        api.force_login(ml)
        assert api.post(url, body(9), format="json").status_code == 201
    before = model.objects.count()

    response = client.post(reverse(url_name), form(queue, built))
    assert response.status_code == 429 and 0 < int(response["Retry-After"]) <= 3600
    page = response.content.decode()
    assert 'class="message message-error">Too many ' in page and "at most 1 per hour for each user" in page
    assert SENT[scope] in page  # the form, as it was sent
    assert model.objects.count() == before
    # An invalid form is shown with its errors, not refused: the limit is for work started.
    assert client.post(reverse(url_name), {}).status_code == 200


def test_counts_live_in_the_shared_cache_so_every_web_process_sees_them(api, queue, built, monkeypatch, settings):
    """With CACHE_URL=redis://… (production) the count is in Redis, where any other web process reads it."""
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url,
                                   "KEY_PREFIX": "throttle-test"}}  # fmt: skip
    store = redis.Redis.from_url(url)
    limit(settings, exports="1/hour")
    try:
        request_url, body, _ = api_action("exports", queue, built, monkeypatch)
        assert api.post(request_url, body(0), format="json").status_code == 201
        [key] = store.keys("throttle-test:*throttle_exports_*")
        assert 3500 < store.ttl(key) <= 3600  # kept for the window, then gone by itself
        assert api.post(request_url, body(1), format="json").status_code == 429
        store.delete(key)  # as if the hour had passed, for every process at once
        assert api.post(request_url, body(2), format="json").status_code == 201
    finally:
        for key in store.keys("throttle-test:*"):
            store.delete(key)


def test_rates_come_from_the_environment_and_a_bad_one_stops_the_start():
    def rates(**env):
        code = "import annotate.settings as s; print(s.THROTTLE_RATES)"
        return subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True,
                              cwd=django_settings.BASE_DIR)  # fmt: skip

    done = rates(THROTTLE_EXPORTS="5/day", THROTTLE_SCORE="off")
    assert "'exports': '5/day'" in done.stdout and "'score': None" in done.stdout and "'runs': '20/hour'" in done.stdout
    done = rates(THROTTLE_RUNS="lots")
    assert done.returncode != 0 and "THROTTLE_RUNS must look like 30/hour" in done.stderr
