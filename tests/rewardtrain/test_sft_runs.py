"""SFT runs through the Django side: demonstrations of a queue -> the worker's task -> a registered sft policy.

The bundled `tiny` policy (a random tiny causal LM made on the spot) learns a rule from labelers'
demonstrations: answer with the prompt's last word, twice.
"""
import json

import pytest
from django.urls import reverse

from core.models import AuditEvent
from labeling.assignment.services import lease_next_task, submit_demonstration, sync_tasks
from labeling.models import Prompt, Queue
from rewardtrain import policies, runs, sft_runs
from rewardtrain.models import Policy, SFTRun
from tests.conftest import make_user

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("tiny_models_in_tmp")]

COLOURS = ["red", "blue", "green", "black", "white", "pink"]
THINGS = ["cat", "car", "hat", "cup"]
FAST = {"epochs": 6, "learning_rate": 5e-3, "batch_size": 8, "max_length": 64, "validation_fraction": 0.25}


def demonstration_queue(name="Demos", *, labelers=("ann",), text=lambda prompt: prompt.split()[-1] * 2) -> Queue:
    """24 prompts "the <thing> is <colour>", each demonstrated by every labeler as text(prompt)."""
    queue = Queue.objects.create(name=name, task_kind=Queue.Kinds.DEMONSTRATION, demonstration_overlap=len(labelers))
    for i, (thing, colour) in enumerate((t, c) for t in THINGS for c in COLOURS):
        Prompt.objects.create(queue=queue, text=f"the {thing} is {colour}", content_hash=f"{name}-{i}")
    sync_tasks(queue)
    for username in labelers:
        labeler = make_user(username, "labeler")
        while (assignment := lease_next_task(labeler=labeler, queue=queue)) is not None:
            prompt = assignment.task.prompt.text
            submit_demonstration(assignment_id=assignment.pk, labeler=labeler, text=text(prompt))
    return queue


def last_word_twice(prompt: str) -> str:
    return f"{prompt.split()[-1]} {prompt.split()[-1]}"


def test_an_sft_run_fine_tunes_a_policy_on_demonstrations_and_registers_the_result(
    ml_user, eager, django_capture_on_commit_callbacks
):
    queue = demonstration_queue(text=last_word_twice)
    base = policies.register_base_policy(source="tiny", user=ml_user)
    with django_capture_on_commit_callbacks(execute=True):
        run = sft_runs.request_sft_run(
            policy=base, queues=[queue], output_name="colours", user=ml_user, **FAST | {"epochs": 40, "batch_size": 4}
        )
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    new = run.output
    assert (new.name, new.version, new.kind, new.parent, new.created_by) == ("colours", 1, "sft", base, ml_user)
    assert new.data_version.startswith(f"demonstrations sha256:{run.data_sha256[:12]} (24 rows, SFT run {run.pk})")
    metrics = run.metrics
    assert metrics["train_prompts"] + metrics["validation_prompts"] == 24 and 0 < metrics["validation_prompts"] < 12
    assert metrics["validation_loss"] < metrics["base_validation_loss"] / 3
    assert metrics["perplexity"] < metrics["base_perplexity"] and new.metrics == metrics
    assert run.progress_percent == 100 and run.step == run.total_steps > 0 and run.history
    assert len(run.previews) == min(4, metrics["validation_prompts"])
    assert {"prompt", "reference", "base", "fine_tuned"} <= set(run.previews[0])
    # The new policy loads from its run's directory and answers like the demonstrations more often than the base.
    files = policies.policy_files(new)
    assert files.name_or_path == run.model_dir and (run.model_dir.endswith("model"))
    follows = sum(p["fine_tuned"].split()[:2] == p["reference"].split() for p in run.previews)
    base_follows = sum(p["base"].split()[:2] == p["reference"].split() for p in run.previews)
    assert follows > base_follows, run.previews
    assert sorted(AuditEvent.objects.values_list("action", flat=True)) == ["policy.register", "sft.request"]


def test_the_filters_choose_the_demonstrations_as_exports_do(ml_user, eager, django_capture_on_commit_callbacks):
    queue = demonstration_queue(labelers=("ann", "bob"), text=last_word_twice)
    base = policies.register_base_policy(source="tiny")
    ann = Queue.objects.get(pk=queue.pk).tasks.first().assignments.get(labeler__username="ann").labeler
    with django_capture_on_commit_callbacks(execute=True):
        run = sft_runs.request_sft_run(
            policy=base, queues=[queue], filters={"labeler_ids": [ann.pk]}, **FAST | {"epochs": 1}
        )
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    rows = [json.loads(line) for line in (sft_runs.run_dir(run) / "data" / "demonstrations.jsonl").open()]
    assert len(rows) == 24 and {row["labeler"] for row in rows} == {"ann"}


def test_bad_requests_are_refused_before_anything_is_recorded(ml_user):
    queue = demonstration_queue(text=last_word_twice)
    retired = policies.retire_policy(policies.register_base_policy(source="tiny"))
    with pytest.raises(ValueError, match="is retired"):
        sft_runs.request_sft_run(policy=retired, queues=[queue])
    base = policies.register_base_policy(source="tiny")
    with pytest.raises(ValueError, match="Choose at least one queue"):
        sft_runs.request_sft_run(policy=base, queues=[])
    with pytest.raises(ValueError, match="Exports take no filter 'source'"):
        sft_runs.request_sft_run(policy=base, queues=[queue], filters={"source": "consensus"})
    assert not SFTRun.objects.exists()


def test_a_policy_whose_files_are_gone_fails_the_run_with_a_readable_reason(
    tmp_path, eager, django_capture_on_commit_callbacks
):
    queue = demonstration_queue(text=last_word_twice)
    gone = Policy.objects.create(name="gone", version=1, kind="sft", source="sft run", path=str(tmp_path / "nothing"))
    with django_capture_on_commit_callbacks(execute=True):
        run = sft_runs.request_sft_run(policy=gone, queues=[queue], **FAST)
    run.refresh_from_db()
    assert run.status == "failed" and run.output is None
    assert run.error == f"PolicyUnavailable: Policy gone-v1's directory {tmp_path / 'nothing'} is gone."


def test_a_queue_without_demonstrations_fails_the_run_saying_so(eager, django_capture_on_commit_callbacks):
    queue = Queue.objects.create(name="Empty", task_kind=Queue.Kinds.DEMONSTRATION)
    base = policies.register_base_policy(source="tiny")
    with django_capture_on_commit_callbacks(execute=True):
        run = sft_runs.request_sft_run(policy=base, queues=[queue], **FAST)
    run.refresh_from_db()
    assert run.status == "failed" and "2 different prompts" in run.error, run.error


def test_cancel_stops_a_queued_run_at_once_and_a_running_one_at_its_next_step(
    ml_user, eager, monkeypatch, django_capture_on_commit_callbacks
):
    queue = demonstration_queue(text=last_word_twice)
    base = policies.register_base_policy(source="tiny")
    queued = sft_runs.request_sft_run(policy=base, queues=[queue], **FAST)  # not sent: no commit callback ran
    runs.cancel_run(queued, user=ml_user, action="sft.cancel")
    queued.refresh_from_db()
    assert queued.status == "cancelled"
    sft_runs.execute_sft_run(queued.pk)  # a late message does nothing
    assert SFTRun.objects.get(pk=queued.pk).status == "cancelled"

    monkeypatch.setattr(runs.Reporter, "should_stop", lambda self: True)  # ML staff pressed Cancel
    with django_capture_on_commit_callbacks(execute=True):
        running = sft_runs.request_sft_run(policy=base, queues=[queue], **FAST)
    running.refresh_from_db()
    assert running.status == "cancelled" and running.output is None
    assert list(Policy.objects.filter(kind="sft")) == []


def test_the_pages_start_a_run_and_show_its_figures_and_previews_escaped(client, ml_user, monkeypatch):
    from rewardtrain import tasks

    monkeypatch.setattr(tasks.train_sft_task, "delay", lambda run_id: None)  # the worker is not part of this test
    queue = demonstration_queue(text=last_word_twice)
    base = policies.register_base_policy(source="tiny")
    client.force_login(ml_user)
    page = client.get(reverse("ml-sft-runs") + f"?policy={base.pk}").content.decode()
    assert f'<option value="{base.pk}" selected>' in page
    form = {"policy": base.pk, "name": "colours", "queues": [queue.pk], **FAST, "seed": 0}
    response = client.post(reverse("ml-sft-runs"), form)
    run = SFTRun.objects.get()
    assert response.url == reverse("ml-sft-run", args=[run.pk]) and run.output_name == "colours"
    script = "<script>alert(1)</script>"
    SFTRun.objects.filter(pk=run.pk).update(
        status="succeeded", previews=[{"prompt": script, "reference": "r", "base": script, "fine_tuned": "blue blue"}],
        metrics={"base_validation_loss": 4.8, "validation_loss": 0.01, "base_perplexity": 121.5, "perplexity": 1.01,
                 "train_rows": 18, "train_prompts": 18, "validation_rows": 6, "validation_prompts": 6},
    )  # fmt: skip
    page = client.get(reverse("ml-sft-run", args=[run.pk])).content.decode()
    assert script not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "121.50" in page and "1.01" in page and "blue blue" in page
    assert client.get(reverse("ml-sft-run-progress", args=[run.pk])).json()["status"] == "succeeded"
    # Bad input: no queue, a learning rate out of range -> the form again, nothing made.
    response = client.post(reverse("ml-sft-runs"), form | {"queues": [], "learning_rate": 5})
    assert response.status_code == 200 and SFTRun.objects.count() == 1
    assert {"queues", "learning_rate"} <= set(response.context["form"].errors)


def test_the_policy_pages_register_show_the_lineage_and_retire(client, ml_user):
    client.force_login(ml_user)
    response = client.post(reverse("ml-policies"), {"source": "tiny", "name": "", "description": "<b>x</b>"})
    base = Policy.objects.get()
    assert response.url == reverse("ml-policy", args=[base.pk]) and str(base) == "tiny-v1"
    child = Policy.objects.create(name="tiny-sft", version=1, kind="sft", parent=base, source="sft run",
                                  path="/nowhere", data_version="demonstrations sha256:abc")  # fmt: skip
    page = client.get(reverse("ml-policy", args=[child.pk])).content.decode()
    assert "tiny-v1" in page and "demonstrations sha256:abc" in page and "directory /nowhere is gone" in page
    page = client.get(reverse("ml-policy", args=[base.pk])).content.decode()
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "tiny-sft-v1" in page
    client.post(reverse("ml-policy-retire", args=[base.pk]))
    base.refresh_from_db()
    assert base.is_retired
    assert base not in client.get(reverse("ml-sft-runs")).context["form"].fields["policy"].queryset


def test_the_command_line_starts_a_run_here_or_for_the_worker_and_refuses_bad_names(
    capsys, monkeypatch, django_capture_on_commit_callbacks
):
    from rewardtrain import sft, tasks

    sent = []
    monkeypatch.setattr(tasks.train_sft_task, "delay", sent.append)
    queue = demonstration_queue(text=last_word_twice)
    base = policies.register_base_policy(source="tiny")
    assert sft.main(["--policy", "tiny-v9", "--queue", str(queue.pk), "--queue", "999999"]) == 2
    assert capsys.readouterr().err.splitlines() == ["No policy 'tiny-v9'.", "No queue 999999."]
    assert sft.main(["--policy", "tiny-v1", "--queue", str(queue.pk), "--filters", '{"source": 1}']) == 2
    assert "Exports take no filter 'source'" in capsys.readouterr().err and not SFTRun.objects.exists()

    options = ["--queue", str(queue.pk), "--epochs", "1", "--batch-size", "8", "--max-length", "32"]
    with django_capture_on_commit_callbacks(execute=True):
        assert sft.main(["--policy", str(base.pk), "--name", "later", *options]) == 0
        assert sft.main(["--policy", "tiny-v1", "--name", "now", "--here", *options]) == 0
    out = capsys.readouterr().out
    assert "sent to the training queue" in out and "training here" in out
    figures = json.loads(out[out.index("{"):])
    assert figures["status"] == "succeeded" and figures["policy"] == "now-v1" and figures["metrics"]["perplexity"] > 0
    assert sent == [SFTRun.objects.get(output_name="later").pk]  # the run trained here went to no worker
