"""Fixtures for the reward-model core: a tiny BERT made on the spot and synthetic rankings (no downloads)."""
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach the Hugging Face hub

import pytest  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from rewardtrain.ml.backbones import make_tiny_model  # noqa: E402
from rewardtrain.ml.synthetic import WORDS, synthetic_rankings  # noqa: E402
from rewardtrain.ml.train import TrainConfig, train_reward_model  # noqa: E402

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("backbone") / "tiny", vocab_words=WORDS)


@pytest.fixture(scope="session")
def rule_frame():
    """Answers with the marker word beat those without; 3 labelers rank each prompt."""
    return synthetic_rankings(80, 4, labelers=3, levels=2, seed=1)


def tiny_config(model_dir: Path, **overrides) -> TrainConfig:
    fields = dict(
        base_model=str(model_dir), max_length=64, learning_rate=3e-3, epochs=3, prompts_per_batch=8, log_every_steps=5
    )
    return TrainConfig(**(fields | overrides))


@pytest.fixture(scope="session")
def trained(tmp_path_factory, tiny_model_dir, rule_frame):
    """One finished training run, shared by the tests that only read its results."""
    return train_reward_model(tiny_config(tiny_model_dir), rule_frame, tmp_path_factory.mktemp("run"))


@pytest.fixture
def tiny_models_in_tmp(settings, tmp_path):
    """A test that trains tiny models through the Django side: its artifacts in tmp_path, torch on one thread
    (on a busy 2-core machine threads only add overhead to models this small)."""
    import torch

    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
