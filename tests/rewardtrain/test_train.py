"""The training loop on a tiny BERT: it learns, resumes after a kill, cancels, normalises, fails clearly."""
import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rewardtrain.ml import checkpoint
from rewardtrain.ml.device import Precision
from rewardtrain.ml.encoding import PairEncoder
from rewardtrain.ml.grouping import encode_groups, group_by_prompt
from rewardtrain.ml.train import BaseModelError, TrainingCancelled, group_rewards, train_reward_model

from .conftest import tiny_config


class Killed(Exception):
    """Stands in for kill -9 of the worker: training stops between two steps, nothing is cleaned up."""


def kill_at(step):
    def on_progress(progress):
        if progress.step == step:
            raise Killed

    return on_progress


def test_learns_which_answers_are_better(trained):
    metrics = trained.metrics
    assert metrics["validation_accuracy"] > 0.9
    assert metrics["validation_accuracy_ci"][0] > metrics["validation"]["length_baseline"]["ci_high"]
    assert 0.3 < metrics["length_baseline_accuracy"] < 0.7 and 0.3 < metrics["random_baseline_accuracy"] < 0.7
    assert metrics["train"]["accuracy"] > 0.9
    logged = [h for h in trained.history if "validation_accuracy" in h]
    assert [h["epoch"] for h in logged] == [1, 2, 3]  # evaluated after each epoch
    assert trained.history[0]["train_loss"] > trained.history[-1]["train_loss"]


def test_model_card_and_saved_model(trained, tiny_model_dir):
    card = json.loads((trained.model_dir / "reward_model_card.json").read_text())
    assert card["base_model"] == str(tiny_model_dir)
    assert card["hyperparameters"]["learning_rate"] == 3e-3 and card["max_length"] == 64
    assert card["bias_offset"] == trained.bias_offset and card["bias_applied"] is True
    assert card["metrics"]["validation_accuracy"] == trained.metrics["validation_accuracy"]
    assert len(card["data"]["frame_checksum"]) == 64 and card["code_version"]
    assert card["weights_sha256"] == trained.weights_sha256
    assert not (trained.model_dir.parent / "checkpoint").exists()  # removed after success
    AutoTokenizer.from_pretrained(trained.model_dir)
    AutoModelForSequenceClassification.from_pretrained(trained.model_dir)


def test_mean_reward_over_training_answers_is_zero_after_training(trained, rule_frame):
    tokenizer = AutoTokenizer.from_pretrained(trained.model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(trained.model_dir)
    encoder = PairEncoder(tokenizer, 64)
    train_groups = [g for g in group_by_prompt(rule_frame) if g.split == "train"]
    cpu = torch.device("cpu")
    rewards = group_rewards(model, encoder, encode_groups(encoder, train_groups), cpu, Precision.for_device(cpu), 64)
    assert abs(np.concatenate(rewards).mean()) < 1e-4
    assert abs(trained.bias_offset) > 1e-4  # it did have to move


def test_resumes_from_the_epoch_checkpoint_after_a_kill_with_identical_weights(tiny_model_dir, rule_frame, tmp_path):
    config = tiny_config(tiny_model_dir, epochs=3)
    reference = train_reward_model(config, rule_frame, tmp_path / "reference")

    steps_per_epoch = reference.metrics["steps"] // 3
    with pytest.raises(Killed):
        train_reward_model(config, rule_frame, tmp_path / "run", on_progress=kill_at(steps_per_epoch + 2))
    state = torch.load(tmp_path / "run" / checkpoint.FILE, weights_only=False)
    assert (state["epoch"], state["step"]) == (1, steps_per_epoch)

    seen = []
    resumed = train_reward_model(config, rule_frame, tmp_path / "run", on_progress=seen.append)
    assert (seen[0].epoch, seen[0].step) == (2, steps_per_epoch + 1)  # epoch 1 was not trained again
    assert resumed.weights_sha256 == reference.weights_sha256
    assert resumed.history == reference.history
    assert resumed.metrics["validation"] == reference.metrics["validation"]


def test_resumes_mid_epoch_from_a_step_checkpoint(tiny_model_dir, rule_frame, tmp_path):
    config = tiny_config(tiny_model_dir, epochs=2, checkpoint_every_steps=3)
    reference = train_reward_model(config, rule_frame, tmp_path / "reference")
    with pytest.raises(Killed):
        train_reward_model(config, rule_frame, tmp_path / "run", on_progress=kill_at(5))
    seen = []
    resumed = train_reward_model(config, rule_frame, tmp_path / "run", on_progress=seen.append)
    assert seen[0].step == 4
    assert resumed.weights_sha256 == reference.weights_sha256


def test_a_checkpoint_of_another_config_is_not_resumed(tiny_model_dir, rule_frame, tmp_path):
    with pytest.raises(Killed):
        train_reward_model(tiny_config(tiny_model_dir, epochs=2), rule_frame, tmp_path, on_progress=kill_at(12))
    seen = []
    train_reward_model(tiny_config(tiny_model_dir, epochs=2, learning_rate=1e-3), rule_frame, tmp_path,
                       on_progress=seen.append)
    assert seen[0].step == 1


def test_should_stop_cancels_at_the_next_step_and_keeps_the_checkpoint(tiny_model_dir, rule_frame, tmp_path):
    calls, seen = [], []

    def should_stop():
        calls.append(1)
        return len(calls) > 10  # asked before every step: the 11th step never runs

    with pytest.raises(TrainingCancelled):
        train_reward_model(tiny_config(tiny_model_dir), rule_frame, tmp_path, on_progress=seen.append,
                           should_stop=should_stop)
    assert seen[-1].step == 10
    assert torch.load(tmp_path / checkpoint.FILE, weights_only=False)["epoch"] == 1
    assert not (tmp_path / "model").exists()


def test_margin_loss_trains_too(tiny_model_dir, rule_frame, tmp_path):
    result = train_reward_model(tiny_config(tiny_model_dir, use_margin=True), rule_frame, tmp_path)
    assert result.metrics["validation_accuracy"] > 0.9


def test_bad_base_model_fails_clearly(tmp_path, rule_frame):
    with pytest.raises(BaseModelError, match="does not exist"):
        train_reward_model(tiny_config(tmp_path / "nowhere"), rule_frame, tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BaseModelError, match="no config.json"):
        train_reward_model(tiny_config(tmp_path / "empty"), rule_frame, tmp_path / "out")
    with pytest.raises(BaseModelError, match="Cannot load base model 'no-such-org/no-such-model'"):
        train_reward_model(tiny_config("no-such-org/no-such-model"), rule_frame, tmp_path / "out")


def test_a_frame_without_training_prompts_is_refused(tiny_model_dir, rule_frame, tmp_path):
    with pytest.raises(ValueError, match="no training prompts"):
        train_reward_model(tiny_config(tiny_model_dir), rule_frame.assign(split="validation"), tmp_path)
