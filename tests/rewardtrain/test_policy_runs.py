"""Policy runs through the Django side: a policy, the reward model, the worker's task -> a registered policy.

The reward model is a tiny BERT trained on the synthetic rule "answers with the word `good` win"; the policy
is a tiny causal LM whose vocabulary holds that word, so optimising against the reward model can find it.
"""
import pytest

from core.jobs import JobStatus
from core.models import AuditEvent
from labeling.models import Prompt, Queue
from rewardtrain import datasets, policies, policy_runs, runs
from rewardtrain.ml.backbones import make_tiny_causal_lm
from rewardtrain.ml.synthetic import WORDS
from rewardtrain.models import PairDataset, Policy, PolicyRun, RewardModel, TrainingRun

from .factories import marker_queue, rank_by_marker

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("tiny_models_in_tmp")]


@pytest.fixture
def base(models_dir) -> Policy:
    make_tiny_causal_lm(models_dir / "tiny-good", vocab_words=WORDS)
    return policies.register_base_policy(source="tiny-good")


@pytest.fixture
def reward_model(trained) -> RewardModel:
    """The session's trained tiny reward model, made the active one."""
    dataset = PairDataset.objects.create(name="rule", version=1, status=JobStatus.SUCCEEDED)
    run = TrainingRun.objects.create(dataset=dataset, base_model="tiny", status=JobStatus.SUCCEEDED)
    return RewardModel.objects.create(run=run, name="rm-rule", path=str(trained.model_dir), is_active=True)


def prompt_queue(n=16, name="Prompts") -> Queue:
    queue = Queue.objects.create(name=name, task_kind=Queue.Kinds.RANKING)
    for i in range(n):
        Prompt.objects.create(queue=queue, text=f"question {i} {WORDS[i % len(WORDS)]}", content_hash=f"{name}-{i}")
    return queue


def run_it(django_capture_on_commit_callbacks, **fields) -> PolicyRun:
    with django_capture_on_commit_callbacks(execute=True):
        run = policy_runs.request_policy_run(**fields)
    run.refresh_from_db()
    return run


def test_an_rl_run_raises_the_reward_on_held_out_prompts_and_registers_the_policy(
    base, reward_model, ml_user, eager, django_capture_on_commit_callbacks
):
    run = run_it(
        django_capture_on_commit_callbacks, method="rl", policy=base, queues=[prompt_queue()], user=ml_user,
        algorithm="rloo", beta=0.02, samples_per_prompt=4, learning_rate=5e-3, epochs=8, max_new_tokens=6,
        evaluation_fraction=0.25,
    )  # fmt: skip
    assert run.status == "succeeded", run.error
    assert run.reward_model == reward_model  # the active one, as none was chosen
    new = run.output
    assert (new.kind, new.parent, new.reward_model, new.created_by) == ("rl", base, reward_model, ml_user)
    assert new.data_version.startswith("prompts of Prompts (") and "held out" in new.data_version
    evaluation = run.metrics["evaluation"]
    assert evaluation["mean_reward"] > evaluation["parent_mean_reward"], evaluation
    assert evaluation["kl_to_reference"] > 0 and evaluation["predicted_win_rate"] > 0.5
    assert new.metrics == evaluation and run.progress_percent == 100
    assert {"reward", "kl", "loss"} <= set(run.history[-1]), run.history[-1]
    assert sorted(AuditEvent.objects.values_list("action", flat=True)) == ["policy.register", "policy_run.request"]


def test_rejection_sampling_fine_tunes_on_the_best_of_n(
    base, reward_model, eager, django_capture_on_commit_callbacks
):
    run = run_it(
        django_capture_on_commit_callbacks, method="rejection-sampling", policy=base, queues=[prompt_queue()],
        samples_per_prompt=6, learning_rate=5e-3, epochs=10, max_new_tokens=6, evaluation_fraction=0.25,
    )  # fmt: skip
    assert run.status == "succeeded", run.error
    figures = run.metrics
    assert figures["best_of_n"] == 6 and figures["mean_best_of_n_reward"] > figures["mean_single_sample_reward"]
    assert run.output.kind == "rejection-sampling" and run.output.parent == base
    evaluation = figures["evaluation"]
    assert evaluation["mean_reward"] > evaluation["parent_mean_reward"], evaluation


def test_a_dpo_run_trains_on_a_pair_dataset_and_evaluates_on_its_validation_prompts(
    base, reward_model, eager, django_capture_on_commit_callbacks
):
    queue = marker_queue(prompts=12, answers=3)
    rank_by_marker(queue, labelers=1)
    dataset = PairDataset.objects.create(name="marker", version=1, validation_fraction=0.25)
    dataset.queues.set([queue])
    datasets.build_pair_dataset(dataset)
    run = run_it(
        django_capture_on_commit_callbacks, method="dpo", policy=base, dataset=dataset, beta=0.1,
        learning_rate=5e-3, epochs=2, max_new_tokens=6,
    )  # fmt: skip
    assert run.status == "succeeded", run.error
    assert run.output.kind == "dpo" and run.output.data_version.startswith("marker-v1 (")
    assert run.metrics["evaluation"]["kl_to_reference"] > 0 and run.history
    assert not run.queues.exists()


def test_bad_requests_are_refused_before_anything_is_recorded(base, tmp_path):
    queue = prompt_queue()
    with pytest.raises(ValueError, match="No reward model: train one and make it active, or choose one."):
        policy_runs.request_policy_run(method="rl", policy=base, queues=[queue])
    with pytest.raises(ValueError, match="DPO trains on a pair dataset: choose a finished one."):
        policy_runs.request_policy_run(method="dpo", policy=base)
    with pytest.raises(ValueError, match="Unknown method 'ppo'"):
        policy_runs.request_policy_run(method="ppo", policy=base, queues=[queue])
    with pytest.raises(ValueError, match="Choose the queues"):
        policy_runs.request_policy_run(method="rejection-sampling", policy=base)
    with pytest.raises(ValueError, match="Policy runs take no 'max_steps'"):
        policy_runs.request_policy_run(method="rl", policy=base, queues=[queue], max_steps=3)
    base = policies.retire_policy(base)
    with pytest.raises(ValueError, match="is retired"):
        policy_runs.request_policy_run(method="rl", policy=base, queues=[queue])
    assert not PolicyRun.objects.exists()


def test_a_run_without_enough_prompts_or_with_a_gone_policy_fails_saying_why(
    base, reward_model, tmp_path, eager, django_capture_on_commit_callbacks
):
    run = run_it(django_capture_on_commit_callbacks, method="rl", policy=base, queues=[prompt_queue(1, "One")])
    assert run.status == "failed" and "hold 1 prompt(s); it needs at least 2" in run.error
    gone = Policy.objects.create(name="gone", version=1, kind="sft", source="sft run", path=str(tmp_path / "x"))
    run = run_it(django_capture_on_commit_callbacks, method="rl", policy=gone, queues=[prompt_queue()])
    assert run.status == "failed"
    assert run.error == f"PolicyUnavailable: Policy gone-v1's directory {tmp_path / 'x'} is gone."


def test_cancel_stops_a_run_and_registers_nothing(
    base, reward_model, monkeypatch, eager, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(runs.Reporter, "should_stop", lambda self: True)
    for method in ("rl", "rejection-sampling"):
        run = run_it(django_capture_on_commit_callbacks, method=method, policy=base,
                     queues=[prompt_queue(name=method)], max_new_tokens=4)  # fmt: skip
        assert run.status == "cancelled" and run.output is None, run.error
    assert not Policy.objects.exclude(kind="base").exists()


def test_the_pages_start_a_run_refuse_bad_input_and_show_the_evaluation(client, ml_user, base, monkeypatch):
    from django.urls import reverse

    from rewardtrain import tasks

    monkeypatch.setattr(tasks.optimise_policy_task, "delay", lambda run_id: None)  # no worker in this test
    client.force_login(ml_user)
    queue = prompt_queue()
    form = {"method": "rl", "policy": base.pk, "queues": [queue.pk], "algorithm": "rloo", "beta": 0.05,
            "samples_per_prompt": 4, "learning_rate": 1e-5, "epochs": 1, "max_new_tokens": 16, "temperature": 1.0,
            "evaluation_fraction": 0.2, "seed": 0}  # fmt: skip
    response = client.post(reverse("ml-policy-runs"), form)  # no reward model yet: the reason, on the form
    assert response.status_code == 200 and "No reward model: train one and make it active" in response.content.decode()
    response = client.post(reverse("ml-policy-runs"), form | {"samples_per_prompt": 1, "beta": -1})
    assert {"samples_per_prompt", "beta"} <= set(response.context["form"].errors)
    assert not PolicyRun.objects.exists()

    dataset = PairDataset.objects.create(name="rule", version=1, status=JobStatus.SUCCEEDED)
    rm_run = TrainingRun.objects.create(dataset=dataset, base_model="tiny", status=JobStatus.SUCCEEDED)
    RewardModel.objects.create(run=rm_run, name="rm", path="/nowhere", is_active=True)
    response = client.post(reverse("ml-policy-runs"), form | {"output_name": "<b>x</b>"})
    assert "output_name" in response.context["form"].errors
    response = client.post(reverse("ml-policy-runs"), form)
    run = PolicyRun.objects.get()
    assert response.url == reverse("ml-policy-run", args=[run.pk]) and run.output_name == "tiny-good-rl"
    PolicyRun.objects.filter(pk=run.pk).update(
        status="failed", error="<script>alert(1)</script>",
        metrics={"evaluation": {"prompts": 3, "samples_per_prompt": 2, "mean_reward": 0.75, "parent_mean_reward": 0.25,
                                "kl_to_reference": 1.5, "predicted_win_rate": 0.625}},
    )  # fmt: skip
    page = client.get(reverse("ml-policy-run", args=[run.pk])).content.decode()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    assert "0.250" in page and "0.750" in page and "1.500" in page and "0.625" in page
    assert client.get(reverse("ml-policy-run-progress", args=[run.pk])).json()["status"] == "failed"
    assert client.get(reverse("ml-policy-run", args=[run.pk + 100])).status_code == 404
