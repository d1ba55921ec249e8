"""Evaluation rounds through the real stack: the request, the worker sampling each policy, labelers ranking the
tasks through the labeling services, the figures, the pages and the API.

The policies are tiny causal LMs made on the spot: the bundled `tiny`, random ones, and a "marked" one whose last
layer norm is set so that it writes the marker word "good" and nothing else (so labelers, and a reward model
trained on synthetic rankings where "good" wins, can tell its answers apart by their content alone).
"""
import json
import math
import random
import re
from datetime import timedelta

import pytest
import torch
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from core.jobs import JobStatus
from core.models import AuditEvent
from labeling.assignment.services import lease_next_task, submit_ranking, sync_tasks
from labeling.models import Answer, Assignment, Prompt, Queue, Task, TaskKind
from rewardtrain import evaluation, policies, sft_runs
from rewardtrain.evaluation import request_evaluation_round, run_evaluation_round
from rewardtrain.evaluation_selectors import round_figures
from rewardtrain.ml.backbones import make_tiny_causal_lm
from rewardtrain.ml.synthetic import MARKER, WORDS
from rewardtrain.models import EvaluationRound, PairDataset, Policy, RewardModel, TrainingRun
from rewardtrain.tasks import requeue_stale_generation_jobs_task, run_evaluation_round_task
from tests.conftest import make_queue, make_user

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("tiny_models_in_tmp")]

FAST = {"temperature": 1.0, "top_p": 0.95, "max_new_tokens": 4, "seed": 0}


def plain_policy(models_dir, name="plain", seed=1) -> Policy:
    """A random tiny causal LM in MODELS_DIR, registered as a base policy."""
    make_tiny_causal_lm(models_dir / name, vocab_words=WORDS, seed=seed)
    return policies.register_base_policy(source=name)


def marked_policy(models_dir, name="marked") -> Policy:
    """A tiny causal LM that writes MARKER whatever it is asked: its final layer norm outputs MARKER's embedding,
    scaled up, so MARKER's logit is far above every other (the output layer is the embedding matrix)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = make_tiny_causal_lm(models_dir / name, vocab_words=WORDS)
    model = AutoModelForCausalLM.from_pretrained(path)
    marker = AutoTokenizer.from_pretrained(path).convert_tokens_to_ids(MARKER)
    with torch.no_grad():
        embedding = model.transformer.wte.weight[marker].clone()
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(embedding * 1e4 / embedding.norm() ** 2)
    model.save_pretrained(path)
    return policies.register_base_policy(source=name)


def fresh_queue(name="Eval", *, prompts=4, overlap=2, **fields) -> Queue:
    queue = Queue.objects.create(name=name, **{"task_kind": Queue.Kinds.RANKING, "ranking_overlap": overlap} | fields)
    for i in range(prompts):
        Prompt.objects.create(queue=queue, text=f"question {i}: tell me about the {WORDS[i % 10 + 2]}",
                              content_hash=f"{name}-{i}")  # fmt: skip
    return queue


def run_round(capture, **fields) -> EvaluationRound:
    """Request a round and run it as the worker would (the task sent on commit, run here)."""
    with capture(execute=True):
        round_ = request_evaluation_round(**{"name": "round", "answers_per_policy": 1, **FAST, **fields})
    round_.refresh_from_db()
    return round_


def by_marker(assignment: Assignment, texts: dict[int, str], rng) -> list[list[int]]:
    """Most MARKER words first; answers with as many are tied."""
    counts: dict[int, list[int]] = {}
    for pk in assignment.answer_order:
        counts.setdefault(texts[pk].split().count(MARKER), []).append(pk)
    return [counts[count] for count in sorted(counts, reverse=True)]


def at_random(assignment: Assignment, texts: dict[int, str], rng) -> list[list[int]]:
    """A coin's ranking, the same in every run: the answers in a fixed order (by policy), then shuffled by `rng` (the
    order the labeler was shown is drawn by the operating system, so it cannot be the start)."""
    policy = dict(Answer.objects.filter(pk__in=texts).values_list("pk", "meta__policy"))
    order = sorted(assignment.answer_order, key=policy.__getitem__)
    rng.shuffle(order)
    return [[pk] for pk in order]


def all_tied(assignment: Assignment, texts: dict[int, str], rng) -> list[list[int]]:
    return [list(assignment.answer_order)]


def rank_everything(queue: Queue, labelers, rule, seed=0) -> None:
    """Each labeler takes the queue's tasks one by one, as the task page does, and ranks them by `rule`."""
    rng = random.Random(seed)
    for labeler in labelers:
        while (assignment := lease_next_task(labeler=labeler, queue=queue)) is not None:
            texts = dict(Answer.objects.filter(pk__in=assignment.answer_order).values_list("pk", "text"))
            submit_ranking(assignment_id=assignment.pk, labeler=labeler, groups=rule(assignment, texts, rng))


def policy_of(answer: Answer) -> int:
    return answer.meta["policy"]


# The round end to end ---------------------------------------------------------------------------------------


def test_a_round_samples_every_policy_and_labelers_who_prefer_the_marker_give_it_a_win_rate_of_one(
    models_dir, eager, client, ml_user, django_capture_on_commit_callbacks
):
    baseline = policies.register_base_policy(source="tiny")  # the bundled tiny LM, sampled for real
    marked = marked_policy(models_dir)
    queue = fresh_queue(prompts=6, overlap=2)
    round_ = run_round(django_capture_on_commit_callbacks, queue=queue, baseline=baseline, policies=[marked],
                       answers_per_policy=2, user=ml_user)  # fmt: skip

    assert (round_.status, round_.error, round_.errors) == ("succeeded", "", [])
    assert (round_.prompts_total, round_.prompts_done, round_.attempts) == (12, 12, 1)
    for prompt in queue.prompts.all():
        answers = list(prompt.answers.all())
        assert [a.position for a in answers] == [0, 1, 2, 3]
        assert sorted(policy_of(a) for a in answers) == sorted([baseline.pk, baseline.pk, marked.pk, marked.pk])
        assert all(a.meta == FAST | {"evaluation_round": round_.pk, "policy": policy_of(a)} for a in answers)
        assert all(a.text.split() == [MARKER] * 4 for a in answers if policy_of(a) == marked.pk)
        assert all(a.text.strip() and a.text.split() != [MARKER] * 4 for a in answers if policy_of(a) == baseline.pk)
    assert Task.objects.filter(queue=queue, kind=TaskKind.RANKING).count() == 6
    assert not evaluation.samples_dir(round_).exists()  # every sample is in the database now

    figures = round_figures(round_)
    assert (figures.prompts, figures.tasks, figures.rankings, figures.rankings_wanted) == (6, 6, 0, 12)
    assert figures.policies[0].win_rate.rate is None
    client.force_login(ml_user)
    page = client.get(reverse("ml-evaluation-round", args=[round_.pk])).content.decode()
    assert "No rankings yet" in page and "Rankings so far: 0 of 12 (6 ranking tasks)" in page

    rank_everything(queue, [make_user("ann", "labeler"), make_user("bob", "labeler")], by_marker)

    (row,) = round_figures(round_).policies
    assert row.policy == marked
    # 6 prompts × 2 labelers × (2 marked × 2 baseline answers), every one won.
    assert tuple(row.win_rate) == (1.0, 1.0, 1.0, 6, 48)
    assert (row.predicted_win_rate, row.reward_model_accuracy) == (None, None)  # no reward model
    page = client.get(reverse("ml-evaluation-round", args=[round_.pk])).content.decode()
    assert "1.00 (1.00–1.00)" in page and "Rankings so far: 12 of 12" in page and "No rankings yet" not in page
    assert "6 prompts written with every policy's answers" in page


def test_labelers_never_learn_which_policy_wrote_an_answer(
    models_dir, eager, client, django_capture_on_commit_callbacks
):
    baseline = policies.register_base_policy(source="tiny", name="secret-baseline")
    other = marked_policy(models_dir, name="secret-marked")
    queue = fresh_queue(prompts=8, overlap=1, instructions="Rank by helpfulness.")
    round_ = run_round(django_capture_on_commit_callbacks, name="secret round", queue=queue, baseline=baseline,
                       policies=[other], answers_per_policy=2)  # fmt: skip
    assert round_.status == "succeeded", round_.error
    secrets = [str(baseline), str(other), "secret", "evaluation", round_.name]

    answers = list(Answer.objects.filter(prompt__queue=queue))
    # The answers' model names no policy: the same neutral value for all.
    assert {answer.model for answer in answers} == {f"evaluation-round-{round_.pk}"}
    # Stored order: not the policies' order, not grouped by policy, and the ids follow it.
    layouts = []  # per prompt, which stored answers are the baseline's
    for prompt in queue.prompts.all():
        stored = list(prompt.answers.order_by("position"))
        assert [a.pk for a in stored] == sorted(a.pk for a in stored)
        layouts.append(tuple(policy_of(a) == baseline.pk for a in stored))
    assert len(set(layouts)) > 1, layouts
    assert any(layout not in {(True, True, False, False), (False, False, True, True)} for layout in layouts), layouts

    labeler = make_user("lab", "labeler")
    client.force_login(labeler)
    response = client.get(reverse("next-task"))
    assignment = Assignment.objects.get(labeler=labeler)
    page = client.get(response.url).content.decode()
    for secret in secrets:
        assert secret not in page, secret
    shown = [int(pk) for pk in re.findall(r'<article class="answer-card" id="answer-(\d+)"', page)]
    prompt_answers = sorted(a.pk for a in answers if a.prompt_id == assignment.task.prompt_id)
    assert shown == assignment.answer_order and sorted(shown) == prompt_answers
    texts = dict(Answer.objects.filter(pk__in=shown).values_list("pk", "text"))
    submit_ranking(assignment_id=assignment.pk, labeler=labeler, groups=by_marker(assignment, texts, None))

    api = APIClient()
    api.force_authenticate(labeler)
    for url in ("/api/v1/rankings/", "/api/v1/queues/", f"/api/v1/queues/{queue.pk}/"):
        body = api.get(url).content.decode()
        assert api.get(url).status_code == 200 and all(secret not in body for secret in secrets), url
    assert "meta" not in api.get("/api/v1/rankings/").json()["results"][0]
    assert api.get("/api/v1/prompts/").status_code == 403  # answers with their meta are for staff
    assert api.get(f"/api/v1/evaluation-rounds/{round_.pk}/").status_code == 403


def test_ties_count_half_and_a_labeler_ranking_at_random_gives_an_interval_around_one_half(
    models_dir, eager, django_capture_on_commit_callbacks
):
    baseline, marked = plain_policy(models_dir), marked_policy(models_dir)
    ties = fresh_queue("Ties", prompts=3, overlap=2)
    round_ = run_round(django_capture_on_commit_callbacks, queue=ties, baseline=baseline, policies=[marked])
    rank_everything(ties, [make_user("sure", "labeler")], by_marker)
    rank_everything(ties, [make_user("undecided", "labeler")], all_tied)
    (row,) = round_figures(round_).policies
    assert tuple(row.win_rate) == (0.75, 0.75, 0.75, 3, 6)  # per prompt: 1 won, 1 tied

    other = plain_policy(models_dir, name="other", seed=2)
    noisy = fresh_queue("Noisy", prompts=60, overlap=1)
    round_ = run_round(django_capture_on_commit_callbacks, queue=noisy, baseline=baseline, policies=[other],
                       max_new_tokens=2)  # fmt: skip
    assert round_.status == "succeeded", round_.error
    rank_everything(noisy, [make_user("coin", "labeler")], at_random, seed=4)  # 29 of 60 for the other
    (row,) = round_figures(round_).policies
    assert row.win_rate.prompts == 60 and row.win_rate.comparisons == 60
    assert row.win_rate.low < 0.5 < row.win_rate.high and row.win_rate.high - row.win_rate.low < 0.3, row.win_rate


@pytest.fixture
def reward_model(trained) -> RewardModel:
    """The reward model tests/rewardtrain/conftest.py trains on synthetic rankings where MARKER wins, registered."""
    dataset = PairDataset.objects.create(name="synthetic", version=1, status=JobStatus.SUCCEEDED)
    run = TrainingRun.objects.create(dataset=dataset, base_model="tiny", status=JobStatus.SUCCEEDED)
    return RewardModel.objects.create(run=run, name="rm-synthetic", path=str(trained.model_dir), is_active=True)


def test_with_a_reward_model_the_round_shows_its_predicted_win_rate_and_its_accuracy_on_the_rankings(
    models_dir, eager, reward_model, django_capture_on_commit_callbacks
):
    baseline, marked = plain_policy(models_dir), marked_policy(models_dir)
    queue = fresh_queue(prompts=6, overlap=2)
    round_ = run_round(django_capture_on_commit_callbacks, queue=queue, baseline=baseline, policies=[marked],
                       answers_per_policy=2, reward_model=reward_model)  # fmt: skip
    assert round_.status == "succeeded", round_.error
    answers = list(Answer.objects.filter(prompt__queue=queue))
    assert len(answers) == 24 and all(isinstance(a.meta["reward"], float) for a in answers)
    # Scored once, as written: the stored reward is the registry's score of the prompt's answers in stored order.
    prompt = queue.prompts.first()
    stored = list(prompt.answers.order_by("position"))
    from rewardtrain import registry

    rescored = registry.score_answers(reward_model.path, prompt.text, [a.text for a in stored])
    assert [a.meta["reward"] for a in stored] == pytest.approx(rescored, abs=1e-4)

    # Before any labeler ranked: the predicted win rate, the mean of sigmoid(r_marked - r_baseline) over every pair of
    # a marked and a baseline answer to the same prompt. This reward model, trained for a few seconds, orders the
    # answers right but by small margins, so its prediction leans the right way without being confident.
    pairs = []
    for prompt in queue.prompts.all():
        rewards = [(policy_of(a), a.meta["reward"]) for a in prompt.answers.all()]
        pairs += [(mine, theirs) for p, mine in rewards if p == marked.pk for q, theirs in rewards if q == baseline.pk]
    assert all(mine > theirs for mine, theirs in pairs) and len(pairs) == 6 * 2 * 2
    figures = round_figures(round_)
    (row,) = figures.policies
    assert row.predicted_win_rate == pytest.approx(sum(1 / (1 + math.exp(b - a)) for a, b in pairs) / len(pairs))
    assert 0.5 < row.predicted_win_rate < 1
    assert row.win_rate.rate is None and row.reward_model_accuracy is None and figures.reward_model_accuracy is None

    rank_everything(queue, [make_user("ann", "labeler"), make_user("bob", "labeler")], by_marker)
    figures = round_figures(round_)
    (row,) = figures.policies
    assert row.win_rate.rate == 1.0
    # The labelers tie the marked answers with each other, and the baseline's too (no marker in them): what they
    # order is marked against baseline, where the reward model agrees with them.
    assert row.reward_model_accuracy == 1.0 and figures.reward_model_accuracy == 1.0, figures


# Bad input ---------------------------------------------------------------------------------------------------


def test_bad_requests_are_refused_with_their_reason_and_nothing_is_recorded(models_dir, tmp_path):
    base = policies.register_base_policy(source="tiny")
    other = policies.register_base_policy(source="tiny")
    third = policies.register_base_policy(source="tiny")
    retired = policies.retire_policy(policies.register_base_policy(source="tiny", name="old"))
    queue = fresh_queue()
    good = {"name": "r", "queue": queue, "baseline": base, "policies": [other], "answers_per_policy": 1}
    gone = RewardModel.objects.create(
        run=TrainingRun.objects.create(dataset=PairDataset.objects.create(name="d", version=1), base_model="tiny"),
        name="rm-gone", path=str(tmp_path / "nothing"),
    )  # fmt: skip
    demonstrations = fresh_queue("Demos", task_kind=Queue.Kinds.DEMONSTRATION)
    trained_on = fresh_queue("Trained", task_kind=Queue.Kinds.BOTH)
    sft_run = sft_runs.request_sft_run(policy=base, queues=[trained_on], send=False)
    cases = [
        ({"policies": [retired]}, "Policy old-v1 is retired; pick another."),
        ({"baseline": retired}, "Policy old-v1 is retired; pick another."),
        ({"policies": []}, "Choose at least one policy to compare with the baseline (two policies in all)."),
        ({"policies": [base]}, "The baseline tiny-v1 cannot also be one of the policies compared with it."),
        ({"policies": [other, other]}, "Policy tiny-v2 is listed twice."),
        ({"policies": [other, third], "answers_per_policy": 4},
         "3 policies × 4 answers = 12 answers per prompt; a prompt holds at most 9."),
        ({"answers_per_policy": 0}, "Each policy gives at least 1 answer per prompt."),
        ({"queue": demonstrations}, "Queue Demos collects demonstrations only; an evaluation round needs a queue with "
                                    "ranking tasks."),
        ({"queue": make_queue("Answered", prompts=2, answers=2)}, "Queue Answered's prompts already have answers or "
                                                                  "rankings: a round needs a queue whose prompts only"),
        ({"queue": fresh_queue("Empty", prompts=0)}, "Queue Empty has no prompts to answer."),
        ({"queue": trained_on}, f"Queue Trained's prompts trained {sft_run}: an evaluation needs prompts no policy"),
        ({"top_k": 5}, "Evaluation rounds take no 'top_k'; sampling takes temperature, top_p, max_new_tokens, seed."),
        ({"temperature": 0}, "temperature: Must be greater than 0."),
        ({"max_new_tokens": 5000}, "max_new_tokens: Ensure this value is less than or equal to 1024."),
        ({"name": "  "}, "name: This field cannot be blank."),
        ({"reward_model": gone}, f"Reward model rm-gone's files are gone ({tmp_path / 'nothing'}); choose another"),
    ]  # fmt: skip
    for change, message in cases:
        with pytest.raises(ValueError) as refused:
            request_evaluation_round(**good | change)
        assert message in str(refused.value), change
    assert not EvaluationRound.objects.exists()
    assert not AuditEvent.objects.filter(action="evaluation.request").exists()

    first = request_evaluation_round(**good)  # not sent: no commit callback runs here
    with pytest.raises(ValueError, match=f"Queue Eval already has evaluation round {first.pk} \\(queued\\)."):
        request_evaluation_round(**good)
    EvaluationRound.fail(first.pk, "The task queue could not be reached.")  # a failed round wrote nothing
    assert request_evaluation_round(**good).queue == queue


# The worker: failures and resuming ---------------------------------------------------------------------------


def test_a_prompt_that_fails_is_recorded_and_the_round_goes_on_without_it(
    models_dir, eager, monkeypatch, client, ml_user, django_capture_on_commit_callbacks
):
    baseline, marked = plain_policy(models_dir), marked_policy(models_dir)
    queue = fresh_queue(prompts=4)
    bad, empty = queue.prompts.order_by("pk")[1:3]
    sample = evaluation.answer_prompt

    def failing(model, tokenizer, text, k, **params):
        if "marked" in model.name_or_path and text == bad.text:
            raise RuntimeError("CUDA out of memory <script>alert(1)</script>")
        if "plain" in model.name_or_path and text == empty.text:
            raise evaluation.RefusedAnswer("The model gave an empty answer.")
        return sample(model, tokenizer, text, k, **params)

    monkeypatch.setattr(evaluation, "answer_prompt", failing)
    round_ = run_round(django_capture_on_commit_callbacks, queue=queue, baseline=baseline, policies=[marked])

    assert (round_.status, round_.prompts_done, round_.prompts_total) == ("succeeded", 8, 8)
    assert round_.errors == [
        {"prompt_id": empty.pk, "policy": baseline.pk, "error": "The model gave an empty answer."},
        {"prompt_id": bad.pk, "policy": marked.pk,
         "error": "RuntimeError: CUDA out of memory <script>alert(1)</script>"},
    ]  # fmt: skip
    # A prompt some policy did not answer gets no answers at all, so no task: labelers never see half a prompt.
    assert not Answer.objects.filter(prompt__in=[bad, empty]).exists()
    assert set(Task.objects.filter(queue=queue, kind=TaskKind.RANKING).values_list("prompt_id", flat=True)) == set(
        queue.prompts.exclude(pk__in=[bad.pk, empty.pk]).values_list("pk", flat=True)
    )
    client.force_login(ml_user)
    page = client.get(reverse("ml-evaluation-round", args=[round_.pk])).content.decode()
    assert "<script>alert(1)" not in page and "CUDA out of memory &lt;script&gt;" in page and "marked-v1" in page


def test_a_policy_whose_files_are_gone_fails_the_round_with_a_readable_reason(
    models_dir, tmp_path, eager, django_capture_on_commit_callbacks
):
    baseline = plain_policy(models_dir)
    gone = Policy.objects.create(name="gone", version=1, kind="sft", source="sft run", path=str(tmp_path / "nothing"))
    queue = fresh_queue()
    round_ = run_round(django_capture_on_commit_callbacks, queue=queue, baseline=baseline, policies=[gone])
    assert round_.status == "failed" and round_.finished_at
    assert round_.error == f"PolicyUnavailable: Policy gone-v1's directory {tmp_path / 'nothing'} is gone."
    assert not Answer.objects.exists() and not Task.objects.filter(queue=queue).exists()
    run_evaluation_round(round_.pk)  # a redelivered message leaves the finished round alone
    assert EvaluationRound.objects.get(pk=round_.pk).finished_at == round_.finished_at


class WorkerKilled(BaseException):
    """What the worker's death looks like from inside: nothing in the round's code catches it."""


def stale(round_: EvaluationRound) -> None:
    """The heartbeat of a worker that died an hour ago."""
    EvaluationRound.objects.filter(pk=round_.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))


def test_a_round_whose_worker_died_while_sampling_resumes_with_the_samples_it_had(
    models_dir, eager, monkeypatch, django_capture_on_commit_callbacks
):
    baseline, marked = plain_policy(models_dir), marked_policy(models_dir)
    queue = fresh_queue(prompts=4)
    sample = evaluation.answer_prompt
    calls: list[tuple[str, str]] = []

    def dies_on_the_second_policys_third_prompt(model, tokenizer, text, k, **params):
        name = "marked" if "marked" in model.name_or_path else "plain"
        if name == "marked" and sum(who == "marked" for who, _ in calls) == 2 and not resumed:
            raise WorkerKilled
        calls.append((name, text))
        return sample(model, tokenizer, text, k, **params)

    resumed = False
    monkeypatch.setattr(evaluation, "answer_prompt", dies_on_the_second_policys_third_prompt)
    with pytest.raises(WorkerKilled), django_capture_on_commit_callbacks(execute=True):
        round_ = request_evaluation_round(name="r", queue=queue, baseline=baseline, policies=[marked],
                                          answers_per_policy=1, **FAST)  # fmt: skip
    round_ = EvaluationRound.objects.get()
    assert (round_.status, round_.prompts_done, round_.prompts_total) == ("running", 6, 8)
    # Nothing is written before every policy has answered: no answers, and no task even if someone syncs the queue.
    sync_tasks(queue)
    assert not Answer.objects.exists() and not Task.objects.filter(queue=queue).exists()

    stale(round_)
    resumed, calls = True, []
    assert requeue_stale_generation_jobs_task() == 1  # the beat sends it again; the worker (eager) resumes it
    round_.refresh_from_db()
    assert (round_.status, round_.attempts, round_.prompts_total) == ("succeeded", 2, 8)
    texts = list(queue.prompts.order_by("pk").values_list("text", flat=True))
    assert calls == [("marked", texts[2]), ("marked", texts[3])]  # the baseline's file held all its samples
    assert all(prompt.answers.count() == 2 for prompt in queue.prompts.all())


def test_a_round_whose_worker_died_while_writing_keeps_the_written_prompts_and_writes_the_rest(
    models_dir, eager, monkeypatch, django_capture_on_commit_callbacks
):
    baseline, marked = plain_policy(models_dir), marked_policy(models_dir)
    queue = fresh_queue(prompts=4)
    write = evaluation._write_prompt
    written: list[int] = []

    def dies_after_two(round_, prompt_id, *args, **kwargs):
        if len(written) == 2:
            raise WorkerKilled
        written.append(prompt_id)
        return write(round_, prompt_id, *args, **kwargs)

    monkeypatch.setattr(evaluation, "_write_prompt", dies_after_two)
    with pytest.raises(WorkerKilled), django_capture_on_commit_callbacks(execute=True):
        request_evaluation_round(name="r", queue=queue, baseline=baseline, policies=[marked], answers_per_policy=1,
                                 **FAST)  # fmt: skip
    round_ = EvaluationRound.objects.get()
    before = {pk: list(Answer.objects.filter(prompt_id=pk).values_list("pk", "text")) for pk in written}
    assert all(len(rows) == 2 for rows in before.values()) and Answer.objects.count() == 4

    monkeypatch.setattr(evaluation, "_write_prompt", write)
    sample_calls = []
    monkeypatch.setattr(evaluation, "answer_prompt", lambda *args, **kwargs: sample_calls.append(args) or ["x"])
    stale(round_)
    run_evaluation_round_task.delay(round_.pk)  # a redelivered message
    round_.refresh_from_db()
    assert (round_.status, round_.attempts, round_.prompts_total, round_.prompts_done) == ("succeeded", 2, 4, 4)
    assert sample_calls == []  # the two prompts left were sampled by both policies before the death
    assert {pk: list(Answer.objects.filter(prompt_id=pk).values_list("pk", "text")) for pk in written} == before
    assert all(prompt.answers.count() == 2 for prompt in queue.prompts.all())
    assert Task.objects.filter(queue=queue, kind=TaskKind.RANKING).count() == 4


def test_stale_rounds_are_sent_again_by_the_beat_and_the_task_goes_to_the_generation_queue(models_dir, monkeypatch):
    from annotate.celery import app as celery_app

    sent: list[int] = []
    monkeypatch.setattr(run_evaluation_round_task, "delay", sent.append)
    base = policies.register_base_policy(source="tiny")
    live, lost = (
        request_evaluation_round(name=name, queue=fresh_queue(name), baseline=base,
                                 policies=[policies.register_base_policy(source="tiny")], answers_per_policy=1)
        for name in ("live", "lost")
    )  # fmt: skip
    EvaluationRound.objects.filter(pk__in=[live.pk, lost.pk]).update(status="running", heartbeat_at=timezone.now())
    stale(lost)
    assert requeue_stale_generation_jobs_task() == 1 and sent == [lost.pk]
    route = celery_app.amqp.router.route({}, run_evaluation_round_task.name, args=(), kwargs={})
    assert route["queue"].name == "generation"


# Pages and API -----------------------------------------------------------------------------------------------


def test_the_pages_start_a_round_show_form_errors_and_escape_hostile_text(client, ml_user, models_dir, monkeypatch):
    monkeypatch.setattr(run_evaluation_round_task, "delay", lambda round_id: None)  # no worker in this test
    base = policies.register_base_policy(source="tiny")
    other = policies.register_base_policy(source="tiny")
    queue = fresh_queue()
    active = RewardModel.objects.create(
        run=TrainingRun.objects.create(dataset=PairDataset.objects.create(name="d", version=1), base_model="tiny"),
        name="rm-active", path="/nowhere", is_active=True,
    )  # fmt: skip
    client.force_login(ml_user)
    page = client.get(reverse("ml-evaluation-rounds"))
    html = page.content.decode()
    assert 'href="/ml/evaluation/">Evaluation rounds</a>' in html and "No evaluation round yet" in html
    assert page.context["form"]["reward_model"].value() == active.pk  # the active reward model, unless changed
    form = {"name": "<script>alert(1)</script>", "queue": queue.pk, "baseline": base.pk, "policies": [other.pk],
            "answers_per_policy": 2, "reward_model": "", **FAST}  # fmt: skip

    # Refused by the service: shown on the form, nothing made.
    response = client.post(reverse("ml-evaluation-rounds"), form | {"policies": [base.pk]})
    assert response.status_code == 200 and "cannot also be one of the policies compared with it" in (
        response.content.decode()
    )
    response = client.post(reverse("ml-evaluation-rounds"), form | {"answers_per_policy": 5, "temperature": 0})
    assert response.status_code == 200 and {"answers_per_policy", "temperature"} <= set(response.context["form"].errors)
    assert not EvaluationRound.objects.exists()

    response = client.post(reverse("ml-evaluation-rounds"), form)
    round_ = EvaluationRound.objects.get()
    assert response.url == reverse("ml-evaluation-round", args=[round_.pk])
    assert (round_.created_by, round_.reward_model, list(round_.policies.all())) == (ml_user, None, [other])
    EvaluationRound.objects.filter(pk=round_.pk).update(
        status="failed", error="<img src=x onerror=alert(2)>", errors=[{"prompt_id": 0, "policy": other.pk,
                                                                        "error": "<b>bad</b>"}],
    )  # fmt: skip
    for url in (reverse("ml-evaluation-rounds"), reverse("ml-evaluation-round", args=[round_.pk])):
        html = client.get(url).content.decode()
        assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "&lt;b&gt;bad&lt;/b&gt;" in html and "No rankings yet" in html
    assert client.get(reverse("ml-evaluation-round", args=[999999])).status_code == 404


def test_the_api_creates_lists_and_retrieves_a_round_with_its_figures(ml_user, models_dir, monkeypatch):
    monkeypatch.setattr(run_evaluation_round_task, "delay", lambda round_id: None)
    base = policies.register_base_policy(source="tiny")
    other = policies.register_base_policy(source="tiny")
    active = RewardModel.objects.create(
        run=TrainingRun.objects.create(dataset=PairDataset.objects.create(name="d", version=1), base_model="tiny"),
        name="rm-active", path=str(models_dir), is_active=True,
    )  # fmt: skip
    models_dir.mkdir(parents=True)
    (models_dir / "config.json").write_text("{}")  # files the request's check finds
    api = APIClient()
    api.force_authenticate(ml_user)
    body = {"name": "r", "queue": fresh_queue().pk, "baseline": base.pk, "policies": [other.pk],
            "answers_per_policy": 2}  # fmt: skip

    def post(data):
        return api.post("/api/v1/evaluation-rounds/", json.dumps(data), content_type="application/json")

    refused = post(body | {"policies": [base.pk]})
    assert refused.status_code == 400
    assert "cannot also be one of the policies" in refused.json()["non_field_errors"][0]
    assert post(body | {"answers_per_policy": 5}).status_code == 400  # the model's bound
    assert post(body | {"top_k": 3}).json() == {"top_k": [
        "Unknown field 'top_k'. Allowed: answers_per_policy, baseline, max_new_tokens, name, policies, queue, "
        "reward_model, seed, temperature, top_p."]}  # fmt: skip

    created = post(body)
    assert created.status_code == 201, created.content
    assert created.json()["reward_model"] == active.pk and created.json()["status"] == "queued"
    second = post(body | {"queue": fresh_queue("Other").pk, "reward_model": None})
    assert second.status_code == 201 and second.json()["reward_model"] is None
    listed = api.get("/api/v1/evaluation-rounds/").json()["results"]
    assert [r["id"] for r in listed] == [second.json()["id"], created.json()["id"]] and "figures" not in listed[0]
    detail = api.get(f"/api/v1/evaluation-rounds/{created.json()['id']}/").json()
    assert detail["figures"] == {
        "prompts": 0, "tasks": 0, "rankings": 0, "rankings_wanted": 0, "reward_model_accuracy": None,
        "policies": [{"policy": other.pk, "name": "tiny-v2", "win_rate": None, "low": None, "high": None,
                      "prompts": 0, "comparisons": 0, "predicted_win_rate": None, "reward_model_accuracy": None}],
    }  # fmt: skip
