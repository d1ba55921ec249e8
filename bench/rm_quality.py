"""Reward-model quality on real preference data: MiniLM trained on HH-RLHF on the CPU.

Trains on shared/data/hh-rlhf/train.jsonl.gz (6,001 pairs) and reports pairwise accuracy on
dev.jsonl.gz (852 pairs) with its prompt-bootstrap 95% interval, next to "the longer answer wins"
and a random model on the same pairs. The data is read in place from ../shared (next to the project
root, or $HH_RLHF_DIR) and never copied into the repository; it contains offensive text, and this
script prints no text from it.

    .venv/bin/python bench/rm_quality.py [--epochs 1 --lr 3e-5 --max-length 128 ...]
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
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

from rewardtrain.ml.backbones import minilm_path  # noqa: E402
from rewardtrain.ml.train import TrainConfig, train_reward_model  # noqa: E402

DATA = Path(os.environ.get("HH_RLHF_DIR", ROOT.parent / "shared" / "data" / "hh-rlhf"))


def hh_frame(path: Path, split: str, first_id: int, limit: int | None = None) -> pd.DataFrame:
    """One HH-RLHF pair per prompt, in the pair-frame schema (a ranking of K=2 by one labeler)."""
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    rows = rows[:limit] if limit else rows
    ids = np.arange(first_id, first_id + len(rows), dtype=np.int64)
    return pd.DataFrame(
        {
            "prompt_id": ids,
            "labeler_id": np.zeros(len(rows), dtype=np.int64),
            "ranking_id": ids,
            "chosen_id": 2 * ids,
            "rejected_id": 2 * ids + 1,
            "margin": np.ones(len(rows), dtype=np.int64),
            "rating_diff": np.full(len(rows), np.nan),
            "split": split,
            "prompt": [r["prompt"] for r in rows],
            "chosen": [r["chosen"] for r in rows],
            "rejected": [r["rejected"] for r in rows],
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--prompts-per-batch", type=int, default=16)
    parser.add_argument("--freeze-layers", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-limit", type=int, default=None, help="use only the first N training pairs")
    parser.add_argument("--output", type=Path, default=None, help="default: a temporary directory")
    args = parser.parse_args()

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    frame = pd.concat(
        [
            hh_frame(DATA / "train.jsonl.gz", "train", 0, args.train_limit),
            hh_frame(DATA / "dev.jsonl.gz", "validation", 1_000_000),
        ],
        ignore_index=True,
    )
    config = TrainConfig(
        base_model=str(minilm_path()),
        max_length=args.max_length,
        learning_rate=args.lr,
        epochs=args.epochs,
        prompts_per_batch=args.prompts_per_batch,
        seed=args.seed,
        freeze_layers=args.freeze_layers,
        log_every_steps=25,
        eval_batch_sequences=64,
    )
    print(f"train pairs {int((frame.split == 'train').sum())}, dev pairs {int((frame.split != 'train').sum())}")
    print("config", json.dumps({k: v for k, v in config.__dict__.items() if k != "base_model"}), flush=True)

    def report(p) -> None:
        if p.metrics:
            logged = " ".join(f"{k}={v:.4f}" for k, v in p.metrics.items())
            print(f"  epoch {p.epoch} step {p.step}/{p.total_steps} eta {p.eta_seconds:.0f}s {logged}", flush=True)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = train_reward_model(config, frame, args.output or Path(tmp), on_progress=report)
    wall = time.perf_counter() - started
    v = result.metrics["validation"]

    def row(name: str, r: dict) -> str:
        return f"{name:<26} {r['accuracy']:.3f}  [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"

    print(f"\nHH-RLHF dev, {v['pairs']} pairs, accuracy with 95% prompt-bootstrap interval:")
    print(row("reward model (MiniLM)", v))
    print(row("longer answer wins", v["length_baseline"]))
    print(row("random model", v["random_baseline"]))
    d = v["vs_length_baseline"]
    print(f"reward model minus length baseline: {d['difference']:+.3f}  [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] "
          "(paired bootstrap)")
    print(f"mean margin r_chosen - r_rejected {v['mean_margin']:.3f}, dev loss {v['loss']:.4f}, "
          f"train accuracy {result.metrics['train']['accuracy']:.3f}")
    print(f"wall time {wall:.0f}s (training epochs {[round(s) for s in result.metrics['epoch_seconds']]}s), "
          f"{torch.get_num_threads()} threads")
    print(json.dumps({"config": config.__dict__, "wall_seconds": wall, "validation": v}, default=str))


if __name__ == "__main__":
    main()
