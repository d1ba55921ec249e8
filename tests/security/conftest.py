"""Fixtures for the security tests: a private cache, and one of every object, filled with hostile text.

The Chromium fixtures (browser, page) come from tests/browser/conftest.py.
"""
from html.parser import HTMLParser

import pytest
from django.contrib.auth.models import User

from core.jobs import JobStatus
from core.tokens import issue_token
from labeling.assignment.services import lease_next_task, submit_demonstration, submit_ranking
from labeling.models import Demonstration, ExportSnapshot, ImportJob, Queue, Ranking, TaskKind
from rewardtrain.models import (
    EvaluationRound,
    GenerationJob,
    PairDataset,
    Policy,
    PolicyRun,
    RewardModel,
    SFTRun,
    TrainingRun,
)
from tests.api.conftest import label_everything
from tests.browser.conftest import (
    page,  # noqa: F401  (a fixture, for the Chromium test; browser is in tests/conftest.py)
)
from tests.conftest import make_queue, make_user

# Each tries to run script when shown: a dialog, a global, or an element the tests look for.
SCRIPT = "<script>window.__pwned=1;alert(1)</script>"
IMG = '<img src=x onerror="window.__pwned=2" id="pwned-img">'
SVG = "<svg onload=window.__pwned=3><a id=pwned-a href=javascript:window.__pwned=4>x</a></svg>"
MD_LINK = "[click me](javascript:window.__pwned=5) [again](JaVaScRiPt:window.__pwned=6)"
MD_IMAGE = '![pic](https://example.org/x.png "t" onerror=window.__pwned=7) <javascript:window.__pwned=8>'
QUOTE = "\"'><b id=pwned-b onmouseover=window.__pwned=9>"
HOSTILE = " ".join([SCRIPT, IMG, SVG, MD_LINK, MD_IMAGE, QUOTE])
# A username is chosen by whoever makes accounts; this one is also a spreadsheet formula.
HOSTILE_USERNAME = '=HYPERLINK("http://x")<img src=x onerror=window.__pwned=10>'


@pytest.fixture(autouse=True)
def private_cache(settings):
    """A cache of this test's own: the login failure counts of one test never reach another."""
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "security-tests"}
    }
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    # These tests make many users and log in often; the real hasher's cost is not what they test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def labeled_place(users: dict, *, name: str, answers: int) -> dict:
    """A queue of two prompts that `users["labeler"]` labeled whole, and one of each ML object on it.

    The place the hostile-input and property tests throw their requests at.
    """
    queue = make_queue(name, prompts=2, answers=answers, task_kind=Queue.Kinds.BOTH, ranking_overlap=3)
    label_everything(queue, users["labeler"])
    dataset = PairDataset.objects.create(name="d", version=1, status=JobStatus.SUCCEEDED)
    dataset.queues.add(queue)
    run = TrainingRun.objects.create(dataset=dataset, base_model="tiny")
    model = RewardModel.objects.create(run=run, name="rm", path="/nowhere")
    ExportSnapshot.objects.create(name="e", version=1, dataset="pairs", format="jsonl").queues.add(queue)
    return {"users": users, "queue": queue, "dataset": dataset, "run": run, "model": model}


@pytest.fixture
def world(db, tmp_path, settings):
    """One of every object a URL names, with hostile text wherever a user or a model writes text.

    lab1 holds a leased ranking task; the hostile username and peer have ranked and demonstrated everything.
    """
    settings.MEDIA_ROOT = tmp_path / "media"
    users = {
        "norole": make_user("norole"),
        "labeler": make_user("lab1", "labeler"),
        "admin": make_user("boss", "admin"),
        "ml": make_user("mlstaff", "ml"),
    }
    other = make_user(HOSTILE_USERNAME, "labeler")
    queue = make_queue(
        "World", prompts=2, answers=3, task_kind=Queue.Kinds.BOTH, ranking_overlap=3,
        demonstration_overlap=3, instructions="# Rules\n" + HOSTILE,
    )  # fmt: skip
    queue.name = "Q " + SCRIPT + IMG + QUOTE
    queue.save(update_fields=["name"])
    for prompt in queue.prompts.all():
        prompt.text = f"Prompt {prompt.pk}: {HOSTILE}"
        prompt.save(update_fields=["text"])
        for answer in prompt.answers.all():
            answer.text = f"Answer {answer.pk}: {HOSTILE}"
            answer.save(update_fields=["text"])
    for labeler, flip in [(other, False), (make_user("peer", "labeler"), True)]:
        # Two rankings per prompt, in opposite orders: the agreement pages have pairs to show.
        while (assignment := lease_next_task(labeler=labeler, queue=queue)) is not None:
            if assignment.task.kind == TaskKind.DEMONSTRATION:
                submit_demonstration(assignment_id=assignment.pk, labeler=labeler, text="Demo " + HOSTILE)
            else:
                order = sorted(assignment.answer_order, reverse=flip)
                submit_ranking(assignment_id=assignment.pk, labeler=labeler, groups=[[pk] for pk in order],
                               ratings={}, flags={})  # fmt: skip
    mine = lease_next_task(labeler=users["labeler"], queue=queue, kind=TaskKind.RANKING)
    import_job = ImportJob.objects.create(
        queue=queue, file="imports/x.jsonl", original_name=HOSTILE[:200] + ".jsonl", uploaded_by=users["admin"],
        status=ImportJob.Status.FAILED, errors=[{"line": 1, "reason": HOSTILE}],
    )  # fmt: skip
    generation_job = GenerationJob.objects.create(
        queue=queue, model_name="smollm2", answers_per_prompt=2, max_new_tokens=8,
        errors=[{"prompt_id": queue.prompts.first().pk, "reason": HOSTILE}],
    )  # fmt: skip
    snapshot = ExportSnapshot.objects.create(name="hostile", version=1, dataset="pairs", format="csv",
                                             error=HOSTILE)  # fmt: skip
    snapshot.queues.add(queue)
    dataset = PairDataset.objects.create(name="d", version=1, status=JobStatus.FAILED, error=HOSTILE)
    run = TrainingRun.objects.create(dataset=dataset, base_model="tiny", error=HOSTILE)
    model = RewardModel.objects.create(run=run, name="rm", path="/nowhere")
    token, _ = issue_token(user=users["ml"], name="token " + HOSTILE[:80])
    policy = Policy.objects.create(name="base", version=1, kind="base", source="tiny", description=HOSTILE)
    sft_run = SFTRun.objects.create(
        policy=policy, output_name="base-sft", error=HOSTILE, status=JobStatus.FAILED,
        previews=[{"prompt": HOSTILE, "reference": HOSTILE, "base": HOSTILE, "fine_tuned": HOSTILE}],
        metrics={"base_validation_loss": 2.0, "validation_loss": 1.0, "base_perplexity": 7.4, "perplexity": 2.7},
    )  # fmt: skip
    sft_run.queues.add(queue)
    policy_run = PolicyRun.objects.create(
        method="rl", policy=policy, reward_model=model, output_name="base-rl", error=HOSTILE, status=JobStatus.FAILED,
        history=[{"step": 1, "reward": 0.1, "kl": 0.0, "loss": 1.0}],
        metrics={"evaluation": {"prompts": 2, "samples_per_prompt": 2, "mean_reward": 0.3, "parent_mean_reward": 0.1,
                                "kl_to_reference": 0.4, "predicted_win_rate": 0.6}},
    )  # fmt: skip
    policy_run.queues.add(queue)
    generation_job.policy = policy
    generation_job.save(update_fields=["policy"])
    evaluation_round = EvaluationRound.objects.create(
        name="Round " + HOSTILE[:190], queue=queue, baseline=policy, status=JobStatus.FAILED, error=HOSTILE,
        errors=[{"prompt_id": queue.prompts.first().pk, "policy": policy.pk, "error": HOSTILE}],
    )  # fmt: skip
    evaluation_round.policies.add(Policy.objects.create(name="other", version=1, kind="base", source="tiny"))
    return {
        "users": users,
        "other": other,
        "queue": queue,
        "queue_id": queue.pk,
        "prompt_id": queue.prompts.first().pk,
        "assignment_id": mine.pk,
        "job_id": import_job.pk,
        "generation_job_id": generation_job.pk,
        "snapshot_id": snapshot.pk,
        "dataset_id": dataset.pk,
        "run_id": run.pk,
        "model_id": model.pk,
        "policy_id": policy.pk,
        "sft_run_id": sft_run.pk,
        "policy_run_id": policy_run.pk,
        "evaluation_round_id": evaluation_round.pk,
        "token_id": token.pk,
        "demonstration_id": Demonstration.objects.filter(assignment__labeler=other).first().pk,
        "ranking_id": Ranking.objects.filter(assignment__labeler=other).first().pk,
    }


class _Injected(HTMLParser):
    """Collects what a browser would run or follow from hostile text: script elements, event handler
    attributes, javascript: URLs, and the elements the hostile text tries to create."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        # json_script's data block is not run, and escapes < > & so it cannot end early.
        self._in_script = tag == "script" and dict(attrs).get("type") != "application/json"
        for name, value in attrs:
            value = (value or "").strip().lower()
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}=…>")
            if name in {"href", "src", "action", "formaction", "xlink:href"} and value.replace("\t", "").startswith(
                ("javascript:", "data:", "vbscript:")
            ):
                self.found.append(f"<{tag} {name}={value[:40]}>")
            if name == "id" and value.startswith("pwned"):
                self.found.append(f"<{tag} id={value}>")

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script and "__pwned" in data:
            self.found.append(f"script: {data[:60]}")


def injected(html: str) -> list[str]:
    """What of the hostile text became live HTML (empty when everything is shown as text)."""
    parser = _Injected()
    parser.feed(html)
    parser.close()
    return parser.found


def sign_in(client, user: User | None) -> None:
    client.logout()
    if user is not None:
        client.force_login(user)
