"""Grouped (InstructGPT) versus per-pair (TRL RewardTrainer style) reward-model training at K=9.

Both train the same backbone with the same settings on the same synthetic rankings of nine answers
(a total order: 36 comparisons per prompt). Grouped runs each prompt's nine answers through the
model once and forms the 36 comparisons from those rewards; per-pair feeds every comparison as its
own (chosen, rejected) pair of sequences, 72 sequences per prompt. Both steps hold the same number
of sequences (36), so the time per epoch follows the number of forward sequences. Printed: forward
sequences per epoch, median training time per epoch, the ratio, and validation accuracy.

    .venv/bin/python bench/rm_train.py [--backbone minilm|tiny --prompts 64 --epochs 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rewardtrain.ml.backbones import make_tiny_model, minilm_path  # noqa: E402
from rewardtrain.ml.synthetic import WORDS, synthetic_rankings  # noqa: E402
from rewardtrain.ml.train import TrainConfig, train_reward_model  # noqa: E402

K = 9


def per_pair_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Every comparison as its own "prompt" with its own two answers: one pair, two sequences."""
    out = frame.reset_index(drop=True).copy()
    row = np.arange(len(out), dtype=np.int64)
    out["prompt_id"], out["chosen_id"], out["rejected_id"] = row, 2 * row, 2 * row + 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", choices=["minilm", "tiny"], default="minilm")
    parser.add_argument("--prompts", type=int, default=64, help="training prompts (validation: a third more)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    total = args.prompts * 4 // 3
    frame = synthetic_rankings(total, K, levels=K, validation_fraction=0.25, seed=0)
    print(f"{int(frame[frame.split == 'train'].prompt_id.nunique())} training prompts, "
          f"{int(frame[frame.split != 'train'].prompt_id.nunique())} validation prompts, K={K}, "
          f"{len(frame) // total} comparisons per prompt; backbone {args.backbone}, {args.threads} threads")

    with tempfile.TemporaryDirectory() as tmp:
        base = minilm_path() if args.backbone == "minilm" else make_tiny_model(Path(tmp) / "tiny", vocab_words=WORDS)
        common = dict(base_model=str(base), max_length=64, learning_rate=args.lr, epochs=args.epochs, seed=0,
                      log_every_steps=10_000)
        runs = {
            # 4 prompts x 9 answers = 36 sequences per step ...
            "grouped": (frame, TrainConfig(prompts_per_batch=4, **common)),
            # ... and 18 pairs x 2 sequences = 36 per step.
            "per-pair": (per_pair_frame(frame), TrainConfig(prompts_per_batch=18, **common)),
        }
        results = {}
        for name, (data, config) in runs.items():
            started = time.perf_counter()
            result = train_reward_model(config, data, Path(tmp) / name)
            m = result.metrics
            results[name] = m
            print(f"{name:>9}: {m['train_sequences_per_epoch']} forward sequences per epoch, "
                  f"{m['steps'] // args.epochs} steps per epoch, epoch times "
                  f"{[round(s, 1) for s in m['epoch_seconds']]}s "
                  f"(median {statistics.median(m['epoch_seconds']):.1f}s), "
                  f"validation accuracy {m['validation_accuracy']:.3f} "
                  f"[{m['validation_accuracy_ci'][0]:.3f}, {m['validation_accuracy_ci'][1]:.3f}], "
                  f"run {time.perf_counter() - started:.0f}s", flush=True)

    grouped, per_pair = results["grouped"], results["per-pair"]
    speedup = statistics.median(per_pair["epoch_seconds"]) / statistics.median(grouped["epoch_seconds"])
    sequences = per_pair["train_sequences_per_epoch"] / grouped["train_sequences_per_epoch"]
    print(f"\nforward sequences per epoch: per-pair / grouped = {sequences:.1f}x")
    print(f"median training time per epoch: per-pair / grouped = {speedup:.1f}x (goal >= 5x)")
    diff = 100 * (grouped["validation_accuracy"] - per_pair["validation_accuracy"])
    print(f"validation accuracy: grouped {grouped['validation_accuracy']:.3f}, "
          f"per-pair {per_pair['validation_accuracy']:.3f} ({diff:+.1f} points; goal within 1)")
    print(f"length baseline {grouped['length_baseline_accuracy']:.3f}, "
          f"random baseline {grouped['random_baseline_accuracy']:.3f}")


if __name__ == "__main__":
    main()
