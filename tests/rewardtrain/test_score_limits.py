"""Bounds on one score request (tokens) and on how many score at once per machine (slots)."""
import subprocess
import sys
import threading
import time

import pytest
from django.urls import reverse

from core.jobs import JobStatus
from core.slots import NoFreeSlot, slot
from core.tokens import issue_token
from rewardtrain.ml import scoring
from rewardtrain.models import PairDataset, RewardModel, TrainingRun
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def isolated(settings, tmp_path):
    settings.SLOTS_DIR = tmp_path / "slots"
    settings.ARTIFACTS_DIR = tmp_path
    scoring.clear_scorers()
    yield
    scoring.clear_scorers()


@pytest.fixture
def model(trained):
    dataset = PairDataset.objects.create(name="d", version=1, status=JobStatus.SUCCEEDED, rows=10)
    run = TrainingRun.objects.create(dataset=dataset, base_model="tiny", status=JobStatus.SUCCEEDED)
    return RewardModel.objects.create(run=run, name="rm", path=str(trained.model_dir))


@pytest.fixture
def auth():
    _, key = issue_token(user=make_user("ml1", "ml"), name="scores")
    return {"HTTP_AUTHORIZATION": f"Token {key}"}


def score(client, model, auth, body):
    url = reverse("api-reward-model-score", args=[model.pk])
    return client.post(url, body, content_type="application/json", **auth)


def test_the_scorer_refuses_more_tokens_than_allowed_before_running_the_model(trained, monkeypatch):
    scorer = scoring.load_scorer(trained.model_dir)  # max_length 64 (tests' training config)
    monkeypatch.setattr(scoring, "model_rewards", lambda *a: pytest.fail("the model ran"))
    with pytest.raises(scoring.TooMuchToScore, match=r"4 answers x 64 tokens .* 256 tokens, over the limit of 255"):
        scorer.score("describe the cat " * 100, ["the cat"] * 4, max_tokens=255)


def test_a_request_over_the_token_limit_is_a_clear_400(client, model, auth, settings):
    settings.SCORE_MAX_TOKENS = 200
    long_text = "describe the cat and the dog " * 600
    response = score(client, model, auth, {"prompt": long_text, "answers": [long_text] * 4})
    assert response.status_code == 400
    assert "over the limit of 200 per request" in response.json()["answers"][0]
    ok = score(client, model, auth, {"prompt": long_text, "answers": [long_text] * 3})  # 3 x 64 = 192
    assert ok.status_code == 200 and len(ok.json()["rewards"]) == 3


def test_the_largest_text_the_api_accepts_scores_in_bounded_work(client, model, auth, settings, monkeypatch):
    """As many answers of MAX_TEXT_CHARS as a body may hold: each sequence is cut to max_length (64 here)."""
    widths = []
    real = scoring.model_rewards

    def measuring(model_, inputs):
        widths.append(tuple(inputs["input_ids"].shape))
        return real(model_, inputs)

    monkeypatch.setattr(scoring, "model_rewards", measuring)
    text = ("cat dog " * settings.MAX_TEXT_CHARS)[: settings.MAX_TEXT_CHARS]
    answers = settings.DATA_UPLOAD_MAX_MEMORY_SIZE // (len(text) + 4) - 1  # the prompt takes one text's room
    response = score(client, model, auth, {"prompt": text, "answers": [text] * answers})
    assert response.status_code == 200, response.content
    assert widths == [(answers, 64)] and answers > 50


def test_when_every_slot_is_busy_a_score_answers_503_at_once(client, model, auth, settings):
    settings.SCORE_CONCURRENCY = 2
    body = {"prompt": "p", "answers": ["a", "b"]}
    with slot("score", 2), slot("score", 2):
        started = time.monotonic()
        response = score(client, model, auth, body)
        assert time.monotonic() - started < 5  # refused at once, not queued behind the slow ones
    assert response.status_code == 503
    assert response["Retry-After"] == "2"
    assert response.json()["detail"] == "Every scoring slot is busy (2 on this machine); retry in 2 seconds."
    assert score(client, model, auth, body).status_code == 200  # the slots were given back


def test_slots_are_shared_by_processes_and_freed_when_a_holder_dies(settings):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_A_SLOT, str(settings.SLOTS_DIR)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(NoFreeSlot):
            with slot("score", 1):
                pass
    finally:
        holder.kill()  # kill -9: no clean-up code runs
        holder.wait()
    with slot("score", 1) as number:
        assert number == 0


HOLD_A_SLOT = """
import fcntl, os, sys, time
os.makedirs(sys.argv[1], exist_ok=True)
fd = os.open(os.path.join(sys.argv[1], "score-0"), os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("holding", flush=True)
time.sleep(60)
"""


@pytest.mark.django_db(transaction=True)  # the request threads must see the model and token
def test_a_slow_score_holds_one_thread_and_the_next_is_turned_away(model, auth, settings, monkeypatch):
    """Two requests at once with one slot: one scores (slowly), the other gets 503 instead of waiting."""
    from django.db import connection
    from django.test import Client

    settings.SCORE_CONCURRENCY = 1
    entered, release = threading.Event(), threading.Event()
    real = scoring.Scorer.score

    def slow(self, *args, **kwargs):
        entered.set()
        release.wait(30)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(scoring.Scorer, "score", slow)
    results = {}
    body = {"prompt": "p", "answers": ["a"]}
    def first_request():
        try:
            results["first"] = score(Client(), model, auth, body)
        finally:
            connection.close()  # this thread's own connection

    first = threading.Thread(target=first_request)
    first.start()
    assert entered.wait(30)
    results["second"] = score(Client(), model, auth, body)
    release.set()
    first.join(30)
    assert results["first"].status_code == 200
    assert results["second"].status_code == 503
