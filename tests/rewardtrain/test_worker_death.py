"""A worker killed with SIGKILL mid-training does not leave its run "running": the run is sent
again and a new worker resumes it from its last epoch checkpoint."""
import os
import signal

import pytest

from core.jobs import JobStatus
from rewardtrain import datasets, runs
from rewardtrain.ml.backbones import make_tiny_model
from rewardtrain.ml.checkpoint import FILE as CHECKPOINT_FILE
from rewardtrain.models import PairDataset, RewardModel

from .factories import MARKER, WORDS, marker_queue, rank_by_marker

pytestmark = pytest.mark.worker
HEARTBEAT_TIMEOUT = "3"  # seconds; short, so the test need not wait long for the run to go stale


def test_a_killed_workers_run_resumes_from_its_checkpoint(start_worker, settings, tmp_path):
    settings.RUN_HEARTBEAT_TIMEOUT = int(HEARTBEAT_TIMEOUT)
    queue = marker_queue(prompts=30, answers=4)
    rank_by_marker(queue, labelers=1)
    dataset = PairDataset.objects.create(name="marker", version=1, validation_fraction=0.2)
    dataset.queues.set([queue])
    datasets.build_pair_dataset(dataset)
    make_tiny_model(settings.MODELS_DIR / "tiny-marker", vocab_words=WORDS + [MARKER])

    first = start_worker(RUN_HEARTBEAT_TIMEOUT=HEARTBEAT_TIMEOUT)
    run = runs.request_training_run(
        dataset=dataset, base_model="tiny-marker", max_length=32, learning_rate=3e-3, epochs=12, prompts_per_batch=1,
        seed=0,
    )  # fmt: skip
    checkpoint = runs.run_dir(run) / CHECKPOINT_FILE
    first.wait_for(checkpoint.is_file, what="the first epoch checkpoint", timeout=120)
    os.kill(first.process.pid, signal.SIGKILL)
    first.process.wait()
    run.refresh_from_db()
    assert run.status == JobStatus.RUNNING and run.attempts == 1
    killed_at_step = run.step

    second = start_worker(RUN_HEARTBEAT_TIMEOUT=HEARTBEAT_TIMEOUT)
    # What beat does every minute: once the dead worker's heartbeat is stale, send the run again.
    second.wait_for(lambda: runs.requeue_stale_runs() > 0, what="the run to go stale", timeout=30)

    second.wait_finished(run, what="the resumed run", timeout=240)
    assert run.status == JobStatus.SUCCEEDED, run.error
    assert run.attempts == 2 and run.step == run.total_steps >= killed_at_step
    steps = [entry["step"] for entry in run.history]
    assert steps == sorted(set(steps)), "the learning curve repeats or skips steps after the resume"
    assert RewardModel.objects.filter(run=run).count() == 1
    assert "train_reward_model_task" in second.output()



def test_a_killed_workers_sft_run_resumes_from_its_checkpoint(start_worker, settings):
    """The same for an SFT run: the second worker resumes the Trainer's checkpoint, and the run registers its policy."""
    from rewardtrain import policies, sft_runs
    from rewardtrain.ml.sft import CHECKPOINTS_DIR

    from .test_sft_runs import demonstration_queue, last_word_twice

    settings.RUN_HEARTBEAT_TIMEOUT = int(HEARTBEAT_TIMEOUT)
    queue = demonstration_queue(text=last_word_twice)
    base = policies.register_base_policy(source="tiny")
    env = {"RUN_HEARTBEAT_TIMEOUT": HEARTBEAT_TIMEOUT, "POLICY_CHECKPOINT_STEPS": "5", "OMP_NUM_THREADS": "1"}
    first = start_worker(**env)
    run = sft_runs.request_sft_run(
        policy=base, queues=[queue], epochs=40, batch_size=2, learning_rate=3e-3, max_length=32
    )
    checkpoints = sft_runs.run_dir(run) / CHECKPOINTS_DIR
    first.wait_for(lambda: any(checkpoints.glob("checkpoint-*")), what="the first checkpoint", timeout=180)
    os.kill(first.process.pid, signal.SIGKILL)
    first.process.wait()
    run.refresh_from_db()
    assert run.status == JobStatus.RUNNING and run.attempts == 1
    killed_at_step = run.step

    second = start_worker(**env)
    second.wait_for(lambda: runs.requeue_stale_runs() + sft_runs.requeue_stale_sft_runs() > 0,
                    what="the run to go stale", timeout=30)  # fmt: skip
    second.wait_finished(run, what="the resumed SFT run", timeout=300)
    assert run.status == JobStatus.SUCCEEDED, run.error
    assert run.attempts == 2 and run.step == run.total_steps >= killed_at_step  # the step is written once a second
    assert run.output.kind == "sft" and run.output.parent == base
    assert run.metrics["validation_loss"] < run.metrics["base_validation_loss"]
    assert "train_sft_task" in second.output()


def test_a_killed_workers_rl_run_resumes_from_its_checkpoint(start_worker, settings, trained):
    """An RL run (RLOO against a reward model) killed with SIGKILL resumes on a second worker and finishes."""
    from rewardtrain import policies, policy_runs
    from rewardtrain.ml.backbones import make_tiny_causal_lm
    from rewardtrain.ml.synthetic import WORDS
    from rewardtrain.models import TrainingRun

    from .test_policy_runs import prompt_queue

    settings.RUN_HEARTBEAT_TIMEOUT = int(HEARTBEAT_TIMEOUT)
    make_tiny_causal_lm(settings.MODELS_DIR / "tiny-good", vocab_words=WORDS)
    base = policies.register_base_policy(source="tiny-good")
    dataset = PairDataset.objects.create(name="rule", version=1, status=JobStatus.SUCCEEDED)
    rm_run = TrainingRun.objects.create(dataset=dataset, base_model="tiny", status=JobStatus.SUCCEEDED)
    RewardModel.objects.create(run=rm_run, name="rm", path=str(trained.model_dir), is_active=True)
    env = {"RUN_HEARTBEAT_TIMEOUT": HEARTBEAT_TIMEOUT, "POLICY_CHECKPOINT_STEPS": "2", "OMP_NUM_THREADS": "1"}
    first = start_worker(**env)
    run = policy_runs.request_policy_run(
        method="rl", policy=base, queues=[prompt_queue(24)], samples_per_prompt=2, learning_rate=5e-3, epochs=6,
        max_new_tokens=4,
    )  # fmt: skip
    first.wait_for(lambda: any(policy_runs.run_dir(run).glob("checkpoint-*")), what="the first checkpoint", timeout=180)
    os.kill(first.process.pid, signal.SIGKILL)
    first.process.wait()
    run.refresh_from_db()
    assert run.status == JobStatus.RUNNING and run.attempts == 1

    second = start_worker(**env)
    second.wait_for(lambda: policy_runs.requeue_stale_policy_runs() > 0, what="the run to go stale", timeout=30)
    second.wait_finished(run, what="the resumed RL run", timeout=300)
    assert run.status == JobStatus.SUCCEEDED, run.error
    assert run.attempts == 2 and run.output.kind == "rl" and run.metrics["evaluation"]["kl_to_reference"] > 0
    steps = [entry["step"] for entry in run.history]
    assert steps == sorted(set(steps)) and steps[-1] == run.total_steps
    assert "optimise_policy_task" in second.output()
