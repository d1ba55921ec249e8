"""The CLI under torchrun with two CPU processes (gloo): both replicas end with identical weights."""
import json
import os
import subprocess
import sys
from pathlib import Path

from rewardtrain.ml.synthetic import synthetic_rankings
from rewardtrain.ml.train import main, state_dict_sha256

ROOT = Path(__file__).resolve().parents[2]


def test_two_processes_train_identical_replicas(tiny_model_dir, tmp_path):
    dataset = tmp_path / "pairs.parquet"
    synthetic_rankings(40, 4, labelers=2, seed=1).to_parquet(dataset)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "rewardtrain.ml.train", "--dataset", str(dataset), "--base-model", str(tiny_model_dir),
        "--output", str(tmp_path / "out"), "--epochs", "2", "--lr", "3e-3", "--max-length", "64",
        "--prompts-per-batch", "4", "--log-every-steps", "2", "--weights-hash-dir", str(tmp_path / "hashes"),
    ]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    hashes = {p.name: p.read_text().strip() for p in (tmp_path / "hashes").iterdir()}
    assert sorted(hashes) == ["rank0.sha256", "rank1.sha256"]
    assert hashes["rank0.sha256"] == hashes["rank1.sha256"]

    # Only rank 0 printed: progress lines, then the metrics as one JSON line.
    lines = done.stdout.strip().splitlines()
    assert sum(line.startswith("epoch 2/2 step 8/8") for line in lines) == 1  # 31 prompts / 4 = 8 batches, 4 per rank
    metrics = json.loads(lines[-1])
    assert metrics["world_size"] == 2 and metrics["steps"] == 8
    card = json.loads((tmp_path / "out" / "model" / "reward_model_card.json").read_text())
    assert card["weights_sha256"] == hashes["rank0.sha256"]


def test_cli_in_one_process(tiny_model_dir, tmp_path, capsys):
    dataset = tmp_path / "pairs.parquet"
    synthetic_rankings(30, 3, seed=2).to_parquet(dataset)
    args = ["--dataset", str(dataset), "--base-model", str(tiny_model_dir), "--output", str(tmp_path / "out"),
            "--epochs", "1", "--max-length", "48", "--prompts-per-batch", "4", "--margin"]
    assert main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("epoch 1/1 step 1/")
    metrics = json.loads(lines[-1])
    assert metrics["model_dir"] == str(tmp_path / "out" / "model") and "validation_accuracy" in metrics
    card = json.loads((tmp_path / "out" / "model" / "reward_model_card.json").read_text())
    assert card["hyperparameters"]["use_margin"] is True and card["data"]["path"] == str(dataset)
    from transformers import AutoModelForSequenceClassification

    saved = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out" / "model")
    assert state_dict_sha256(saved) == card["weights_sha256"]
