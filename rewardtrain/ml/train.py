"""Reward-model training: a pair frame in, a saved model with its card out.

`train_reward_model` fine-tunes a sequence-classification model with one output (the reward) on the
comparisons of the training prompts, batching whole prompts (see `grouping`), and checkpoints each
epoch so that calling it again after a crash resumes where the last checkpoint left off. At the end
the reward head's bias is shifted so that the mean reward over the training answers is 0
(InstructGPT), the model is evaluated on the validation prompts next to the baselines, and model,
tokenizer and `reward_model_card.json` are saved in output_dir/model.

Under `torchrun` (one process per CPU or GPU, gloo or nccl) the ranks split each epoch's batches and
DistributedDataParallel averages their gradients; only rank 0 logs and writes files. CLI:

    python -m rewardtrain.ml.train --dataset pairs.parquet --base-model PATH --output DIR [--epochs 2 ...]
    torchrun --standalone --nproc_per_node=2 -m rewardtrain.ml.train --dataset ... (same flags)
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from . import checkpoint as ckpt
from .device import Precision, pick_device
from .encoding import EncodedAnswer, PairEncoder, ensure_padding, model_rewards
from .evaluate import evaluate_groups, group_pairs, pair_outcomes, pairwise_loss
from .grouping import PromptGroup, collate_groups, encode_groups, group_by_prompt, plan_batches
from .loss import grouped_loss
from .model_sources import load_from_disk
from .progress import Progress, TrainingCancelled

CARD_FILE = "reward_model_card.json"


@dataclass(frozen=True)
class TrainConfig:
    base_model: str  # a local model directory (or a Hugging Face id already in the local cache)
    max_length: int = 256  # tokens of prompt + answer; the prompt loses its beginning first
    learning_rate: float = 3e-5
    epochs: int = 1
    prompts_per_batch: int = 8  # a batch holds all answers of this many prompts
    seed: int = 0
    use_margin: bool = False  # subtract the rank distance inside the sigmoid (a "margin" loss)
    eval_every_steps: int = 0  # 0: evaluate on the validation prompts after each epoch
    log_every_steps: int = 10
    device: str | None = None  # None: CUDA, else MPS, else CPU
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    max_grad_norm: float = 1.0
    checkpoint_every_steps: int = 0  # 0: checkpoint after each epoch only
    keep_checkpoint: bool = False  # keep output_dir/checkpoint after a successful run
    eval_batch_sequences: int = 64  # answers per forward pass when only scoring
    freeze_layers: int = 0  # train only the encoder layers above this many (and the head); CPU runs

    def weight_fields(self) -> dict[str, Any]:
        """The fields that decide the trained weights (a checkpoint is resumed only if they match)."""
        ignored = {"device", "keep_checkpoint", "eval_batch_sequences", "eval_every_steps", "log_every_steps"}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ignored}


@dataclass(frozen=True)
class TrainResult:
    model_dir: Path
    bias_offset: float
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    weights_sha256: str


class BaseModelError(ValueError):
    """The base model cannot be loaded from where the config points."""


@dataclass(frozen=True)
class _Ranks:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def current(cls) -> _Ranks:
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()


def train_reward_model(
    config: TrainConfig,
    frame: pd.DataFrame,
    output_dir: Path,
    *,
    data_info: dict[str, Any] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train (or resume training) a reward model on `frame`; see the module docstring."""
    run = _start(config, frame, Path(output_dir))
    start_epoch, start_batch = _resume(run)
    eta = _Eta()
    for epoch in range(start_epoch, config.epochs):
        first_batch = start_batch if epoch == start_epoch else 0
        _train_epoch(run, epoch, first_batch, eta, on_progress=on_progress, should_stop=should_stop)
    return _finalise(run, data_info)


@dataclass
class _Run:
    """What one call of train_reward_model works with: data, model, optimiser, and the progress so far."""

    config: TrainConfig
    output_dir: Path
    ranks: _Ranks
    device: torch.device
    precision: Precision
    train_groups: list[PromptGroup]
    val_groups: list[PromptGroup]
    tokenizer: Any
    model: torch.nn.Module
    net: torch.nn.Module  # the model, wrapped in DistributedDataParallel under torchrun
    encoder: PairEncoder
    train_encoded: list[list[EncodedAnswer]]
    val_encoded: list[list[EncodedAnswer]]
    lengths: list[int]  # each training prompt's longest sequence, for the batch plan
    total_steps: int
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: Any
    data_checksum: str
    run_hash: str  # a checkpoint is resumed only if it has this hash
    step: int = 0  # optimizer steps done
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)


def _start(config: TrainConfig, frame: pd.DataFrame, output_dir: Path) -> _Run:
    """Seed, group and encode the data, load the base model, and make its optimiser and schedule."""
    ranks = _Ranks.current()
    device = _device(config.device, ranks)
    precision = Precision.for_device(device)
    _seed_everything(config.seed)

    groups = group_by_prompt(frame)
    train_groups = [g for g in groups if g.split == "train"]
    val_groups = [g for g in groups if g.split != "train"]
    if not train_groups:
        raise ValueError("The pair frame has no training prompts (split == 'train').")

    tokenizer, model = load_backbone(config.base_model)
    _freeze_lower_layers(model, config.freeze_layers)
    encoder = PairEncoder(tokenizer, config.max_length)
    train_encoded = encode_groups(encoder, train_groups)
    val_encoded = encode_groups(encoder, val_groups)
    lengths = [max(len(s) for s in seqs) for seqs in train_encoded]
    batches_per_epoch = math.ceil(len(train_groups) / config.prompts_per_batch)
    steps_per_epoch = math.ceil(batches_per_epoch / ranks.world)
    total_steps = steps_per_epoch * config.epochs

    model.to(device)
    net = model
    if ranks.world > 1:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = _optimizer(model, config)
    warmup = int(config.warmup_ratio * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _linear_schedule(warmup, total_steps))
    scaler = precision.make_scaler()

    data_checksum = frame_checksum(frame)
    return _Run(
        config=config,
        output_dir=output_dir,
        ranks=ranks,
        device=device,
        precision=precision,
        train_groups=train_groups,
        val_groups=val_groups,
        tokenizer=tokenizer,
        model=model,
        net=net,
        encoder=encoder,
        train_encoded=train_encoded,
        val_encoded=val_encoded,
        lengths=lengths,
        total_steps=total_steps,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        data_checksum=data_checksum,
        run_hash=ckpt.config_hash(config.weight_fields(), data_checksum),
    )


def _resume(run: _Run) -> tuple[int, int]:
    """Load the run's checkpoint if there is one of this config and data; the (epoch, batch) to go on from."""
    state = ckpt.load_checkpoint(run.output_dir, run.run_hash)
    if state is None:
        return 0, 0
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    ckpt.set_rng_state(state["rng"][run.ranks.rank % len(state["rng"])])
    run.step, run.history, run.epoch_seconds = state["step"], state["history"], state["epoch_seconds"]
    return state["epoch"], state["batch"]


def _save_checkpoint(run: _Run, epoch: int, batch: int) -> None:
    """Checkpoint the run so that it resumes at (epoch, batch); every rank's RNG state goes in it."""
    rng = _gather(ckpt.rng_state(), run.ranks)
    if run.ranks.main:
        ckpt.save_checkpoint(
            run.output_dir,
            {
                "config_hash": run.run_hash,
                "model": run.model.state_dict(),
                "optimizer": run.optimizer.state_dict(),
                "scheduler": run.scheduler.state_dict(),
                "scaler": run.scaler.state_dict(),
                "rng": rng,
                "epoch": epoch,
                "batch": batch,
                "step": run.step,
                "history": run.history,
                "epoch_seconds": run.epoch_seconds,
            },
        )
    _barrier(run.ranks)


class _Eta:
    """Seconds left, at the pace of the steps done in this call (a resumed run's earlier ones do not count)."""

    def __init__(self) -> None:
        self.started, self.steps = time.perf_counter(), 0

    def seconds_left(self, step: int, total_steps: int) -> float:
        return (time.perf_counter() - self.started) / self.steps * (total_steps - step)


def _train_epoch(
    run: _Run,
    epoch: int,
    first_batch: int,
    eta: _Eta,
    *,
    on_progress: Callable[[Progress], None] | None,
    should_stop: Callable[[], bool] | None,
) -> None:
    """Train this rank's batches of one epoch from `first_batch` on: log, evaluate and checkpoint on schedule."""
    config = run.config
    plan = plan_batches(run.lengths, config.prompts_per_batch, seed=config.seed, epoch=epoch)
    my_batches = _shard(plan, run.ranks)
    train_seconds, loss_sum, loss_count = 0.0, 0.0, 0
    for b in range(first_batch, len(my_batches)):
        if _stop_requested(should_stop, run.ranks):
            raise TrainingCancelled(f"Training was cancelled at step {run.step} of {run.total_steps}.")
        t0 = time.perf_counter()
        loss = _optimizer_step(run, my_batches[b])
        run.step += 1
        eta.steps += 1
        loss_sum, loss_count = loss_sum + loss, loss_count + 1
        train_seconds += time.perf_counter() - t0

        last_of_epoch = b == len(my_batches) - 1
        metrics: dict[str, float] = {}
        if run.step % max(1, config.log_every_steps) == 0 or last_of_epoch:
            metrics["train_loss"] = _mean_over_ranks(loss_sum, loss_count, run.ranks)
            loss_sum, loss_count = 0.0, 0
        if (config.eval_every_steps and run.step % config.eval_every_steps == 0) or (
            last_of_epoch and not config.eval_every_steps
        ):
            metrics.update(_validation_metrics(run))
        if metrics:
            run.history.append({"step": run.step, "epoch": epoch + 1, **metrics})
        if last_of_epoch:
            run.epoch_seconds.append(train_seconds)  # training only, without evaluation or checkpoint
            _save_checkpoint(run, epoch + 1, 0)
        elif config.checkpoint_every_steps and run.step % config.checkpoint_every_steps == 0:
            _save_checkpoint(run, epoch, b + 1)
        if on_progress is not None and run.ranks.main:
            on_progress(
                Progress(
                    epoch=epoch + 1,
                    epochs=config.epochs,
                    step=run.step,
                    total_steps=run.total_steps,
                    percent=100.0 * run.step / run.total_steps,
                    eta_seconds=eta.seconds_left(run.step, run.total_steps),
                    metrics=metrics,
                )
            )


def _optimizer_step(run: _Run, prompt_indices: list[int]) -> float:
    """One optimizer step on the batch of these training prompts; its loss."""
    run.model.train()
    batch = collate_groups(run.encoder, run.train_groups, run.train_encoded, prompt_indices).to(run.device)
    with run.precision.autocast():
        rewards = model_rewards(run.net, batch.inputs)
    loss = grouped_loss(
        rewards,
        batch.pair_index,
        comparisons_per_prompt=batch.comparisons_per_prompt,
        margins=batch.margins if run.config.use_margin else None,
    )
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.unscale_(run.optimizer)
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.config.max_grad_norm)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    return loss.item()


def _rewards(run: _Run, encoded: Sequence[Sequence[EncodedAnswer]]) -> list[np.ndarray]:
    return group_rewards(
        run.model, run.encoder, encoded, run.device, run.precision, run.config.eval_batch_sequences, run.ranks
    )


def _validation_metrics(run: _Run) -> dict[str, float]:
    """Accuracy and loss on the validation pairs, as logged during training (none without validation prompts)."""
    if not run.val_groups:
        return {}
    pairs = group_pairs(run.val_groups, _rewards(run, run.val_encoded))
    return {
        "validation_accuracy": float(pair_outcomes(pairs["r_chosen"], pairs["r_rejected"]).mean()),
        "validation_loss": pairwise_loss(pairs["r_chosen"], pairs["r_rejected"], pairs["prompt_ids"]),
    }


def _finalise(run: _Run, data_info: dict[str, Any] | None) -> TrainResult:
    """Normalise the rewards, evaluate on the validation prompts, save model and card (rank 0), drop the checkpoint."""
    config, ranks, model, val_groups = run.config, run.ranks, run.model, run.val_groups
    model.eval()
    # InstructGPT normalisation: shift the head's bias so the training answers average reward 0.
    train_rewards = _rewards(run, run.train_encoded)
    bias_offset = float(np.concatenate(train_rewards).mean())
    bias_applied = shift_reward_bias(model, bias_offset)
    train_rewards = [r - bias_offset for r in train_rewards]
    val_rewards = _rewards(run, run.val_encoded) if val_groups else []
    if not bias_applied:
        val_rewards = [r - bias_offset for r in val_rewards]
    validation = evaluate_groups(val_groups, val_rewards, seed=config.seed)
    metrics = {
        "validation_accuracy": validation.get("accuracy"),
        "validation_accuracy_ci": [validation["ci_low"], validation["ci_high"]] if val_groups else None,
        "length_baseline_accuracy": validation["length_baseline"]["accuracy"] if val_groups else None,
        "random_baseline_accuracy": validation["random_baseline"]["accuracy"] if val_groups else None,
        "validation": validation,
        "train": _train_summary(run.train_groups, train_rewards),
        "bias_offset": bias_offset,
        "epochs": config.epochs,
        "steps": run.step,
        "epoch_seconds": run.epoch_seconds,
        "train_sequences_per_epoch": sum(len(g.answers) for g in run.train_groups),
        "train_comparisons_per_epoch": sum(g.comparisons for g in run.train_groups),
        "device": str(run.device),
        "precision": run.precision.name,
        "world_size": ranks.world,
    }
    weights_sha256 = state_dict_sha256(model)
    model_dir = run.output_dir / "model"
    if ranks.main:
        card = _model_card(run, data_info, metrics, bias_offset, bias_applied, weights_sha256)
        save_model_dir(model, run.tokenizer, model_dir, CARD_FILE, card)
        if not config.keep_checkpoint:
            ckpt.remove_checkpoint(run.output_dir)
    _barrier(ranks)
    return TrainResult(model_dir, bias_offset, metrics, run.history, weights_sha256)


def _model_card(
    run: _Run,
    data_info: dict[str, Any] | None,
    metrics: dict[str, Any],
    bias_offset: float,
    bias_applied: bool,
    weights_sha256: str,
) -> dict[str, Any]:
    """reward_model_card.json: how the model was made (base model, settings, data, code) and how good it is."""
    config = run.config
    return {
        "format": "annotate-reward-model/1",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "base_model": config.base_model,
        "hyperparameters": dataclasses.asdict(config),
        "max_length": config.max_length,
        "data": {**(data_info or {}), "frame_checksum": run.data_checksum},
        "metrics": metrics,
        "bias_offset": bias_offset,
        "bias_applied": bias_applied,  # False: the head has no bias, subtract bias_offset when scoring
        "weights_sha256": weights_sha256,
        "code_version": code_version(),
        "libraries": {"torch": torch.__version__, "transformers": package_version("transformers")},
    }


def load_backbone(base_model: str):
    """Tokenizer and a one-output sequence-classification model, from a local directory (or the cache)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = Path(base_model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise BaseModelError(f"Base model directory {str(path)!r} has no config.json; it is not a saved model.")
        source = str(path)
    elif path.is_absolute() or base_model.startswith((".", "~")):
        raise BaseModelError(f"Base model {base_model!r} does not exist: give a directory written by save_pretrained.")
    else:
        source = base_model  # a Hub id: loads only if it is in the local cache (never downloaded)
    try:
        tokenizer = load_from_disk(AutoTokenizer, source)
        model = load_from_disk(AutoModelForSequenceClassification, source, num_labels=1)
    except (OSError, ValueError) as error:
        raise BaseModelError(
            f"Cannot load base model {base_model!r} (a local model directory, or a Hugging Face id "
            f"already in the local cache): {error}"
        ) from error
    ensure_padding(tokenizer, model)
    return tokenizer, model


def group_rewards(
    model: torch.nn.Module,
    encoder: PairEncoder,
    encoded: Sequence[Sequence[EncodedAnswer]],
    device: torch.device,
    precision: Precision,
    batch_sequences: int,
    ranks: _Ranks | None = None,
) -> list[np.ndarray]:
    """Every group's answer rewards (eval mode, no gradients); ranks split the work and share results."""
    ranks = ranks or _Ranks()
    mine = list(range(ranks.rank, len(encoded), ranks.world))
    mine.sort(key=lambda i: max(len(s) for s in encoded[i]))  # similar lengths together: less padding
    was_training = model.training
    model.eval()
    results: dict[int, np.ndarray] = {}
    with torch.no_grad():
        start = 0
        while start < len(mine):
            end, size = start, 0
            while end < len(mine) and (end == start or size + len(encoded[mine[end]]) <= batch_sequences):
                size += len(encoded[mine[end]])
                end += 1
            sequences = [s for i in mine[start:end] for s in encoded[i]]
            inputs = {k: v.to(device) for k, v in encoder.collate(sequences).items()}
            with precision.autocast():
                rewards = model_rewards(model, inputs).cpu().numpy()
            offset = 0
            for i in mine[start:end]:
                results[i] = rewards[offset : offset + len(encoded[i])]
                offset += len(encoded[i])
            start = end
    model.train(was_training)
    if ranks.world > 1:
        merged: dict[int, np.ndarray] = {}
        for part in _gather(results, ranks):
            merged.update(part)
        results = merged
    return [results[i] for i in range(len(encoded))]


def reward_head(model: torch.nn.Module) -> torch.nn.Linear:
    """The output layer that produces the reward: the last Linear with a single output."""
    heads = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == 1]
    if not heads:
        raise ValueError("The model has no single-output linear layer to read a reward from.")
    return heads[-1]


def shift_reward_bias(model: torch.nn.Module, offset: float) -> bool:
    """Subtract `offset` from the reward head's bias; False when the head has none (e.g. GPT-2's)."""
    head = reward_head(model)
    if head.bias is None:
        return False
    with torch.no_grad():
        head.bias -= offset
    return True


def frame_checksum(frame: pd.DataFrame) -> str:
    """SHA-256 of the pair frame's content (dtype-independent: categoricals hash like strings)."""
    columns = ["prompt_id", "chosen_id", "rejected_id", "margin", "split", "prompt", "chosen", "rejected"]
    part = frame[columns].astype({"margin": "int64", "split": str})
    hashes = pd.util.hash_pandas_object(part, index=False).to_numpy()
    return hashlib.sha256(hashes.tobytes()).hexdigest()


def state_dict_sha256(model: torch.nn.Module) -> str:
    """SHA-256 over the names and bytes of the model's parameters and buffers."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def code_version() -> str:
    """ANNOTATE_CODE_VERSION if set, else the checked-out commit read from .git, else "unknown"."""
    if os.environ.get("ANNOTATE_CODE_VERSION"):
        return os.environ["ANNOTATE_CODE_VERSION"]
    git = Path(__file__).resolve().parents[2] / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return f"git:{head[:12]}"
        ref = head[5:]
        if (git / ref).is_file():
            return f"git:{(git / ref).read_text().strip()[:12]}"
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return f"git:{line.split()[0][:12]}"
    except OSError:
        pass
    return "unknown"


def package_version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def save_model_dir(model, tokenizer, model_dir: Path, card_file: str, card: dict[str, Any]) -> None:
    """save_pretrained and the card into a temporary directory, then swap it in: model_dir is never half-written."""
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=model_dir.parent, prefix=".model-"))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / card_file).write_text(json.dumps(card, indent=2, sort_keys=True, default=str) + "\n")
        if model_dir.exists():
            old = model_dir.with_name(f".model-old-{os.getpid()}")
            model_dir.rename(old)
            tmp.rename(model_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(model_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _train_summary(groups: Sequence[PromptGroup], rewards: Sequence[np.ndarray]) -> dict[str, Any]:
    outcomes = np.concatenate([pair_outcomes(r[g.chosen], r[g.rejected]) for g, r in zip(groups, rewards, strict=True)])
    return {
        "prompts": len(groups),
        "answers": int(sum(len(r) for r in rewards)),
        "pairs": int(len(outcomes)),
        "accuracy": float(outcomes.mean()),
        "mean_reward": float(np.concatenate(rewards).mean()),
    }


def _device(preference: str | None, ranks: _Ranks) -> torch.device:
    device = pick_device(preference)
    if device.type == "cuda" and ranks.world > 1 and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA too


def _freeze_lower_layers(model: torch.nn.Module, layers: int) -> None:
    """Freeze the embeddings and the first `layers` encoder layers (cheaper backward on a CPU)."""
    if layers <= 0:
        return
    base = getattr(model, model.base_model_prefix)
    encoder_layers = getattr(getattr(base, "encoder", None), "layer", None)
    if encoder_layers is None:
        raise ValueError("freeze_layers works with BERT-like models (base.encoder.layer) only.")
    for module in [base.embeddings, *encoder_layers[:layers]]:
        module.requires_grad_(False)


def _optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; biases and LayerNorm weights are not decayed (the usual transformer recipe)."""
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 else decay).append(param)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate,
    )


def _linear_schedule(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def _shard(batches: list[list[int]], ranks: _Ranks) -> list[list[int]]:
    """This rank's batches; the list is wrapped around so every rank gets as many (DistributedSampler)."""
    if ranks.world == 1:
        return batches
    padded = batches + batches[: (-len(batches)) % ranks.world]
    return padded[ranks.rank :: ranks.world]


def _stop_requested(should_stop: Callable[[], bool] | None, ranks: _Ranks) -> bool:
    local = bool(should_stop is not None and ranks.main and should_stop())
    if ranks.world == 1:
        return local
    flag = torch.tensor([int(local)])
    dist.broadcast(flag, 0)  # every rank stops at the same step, or the others would wait forever
    return bool(flag.item())


def _mean_over_ranks(total: float, count: int, ranks: _Ranks) -> float:
    if ranks.world == 1:
        return total / max(1, count)
    both = torch.tensor([total, float(count)], dtype=torch.float64)
    dist.all_reduce(both)
    return float(both[0] / both[1].clamp(min=1))


def _gather(obj: Any, ranks: _Ranks) -> list[Any]:
    if ranks.world == 1:
        return [obj]
    out: list[Any] = [None] * ranks.world
    dist.all_gather_object(out, obj)
    return out


def _barrier(ranks: _Ranks) -> None:
    if ranks.world > 1:
        dist.barrier()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train a reward model on a pair dataset (Parquet).")
    parser.add_argument("--dataset", type=Path, required=True, help="pair dataset, Parquet")
    parser.add_argument("--base-model", required=True, help="local model directory")
    parser.add_argument("--output", type=Path, required=True, help="output directory (checkpoint, model)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--prompts-per-batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--margin", action="store_true", help="use the rank distance as a margin in the loss")
    parser.add_argument("--eval-every-steps", type=int, default=0)
    parser.add_argument("--log-every-steps", type=int, default=10)
    parser.add_argument("--device", default=None)
    parser.add_argument("--keep-checkpoint", action="store_true")
    parser.add_argument("--weights-hash-dir", type=Path, help="each rank writes rank<N>.sha256 of its final weights")
    args = parser.parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the "classifier newly initialized" report is expected here
    hf_logging.disable_progress_bar()

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        use_cuda = torch.cuda.is_available() and args.device != "cpu"
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    try:
        ranks = _Ranks.current()
        config = TrainConfig(
            base_model=args.base_model,
            max_length=args.max_length,
            learning_rate=args.lr,
            epochs=args.epochs,
            prompts_per_batch=args.prompts_per_batch,
            seed=args.seed,
            use_margin=args.margin,
            eval_every_steps=args.eval_every_steps,
            log_every_steps=args.log_every_steps,
            device=args.device,
            keep_checkpoint=args.keep_checkpoint,
        )
        frame = pd.read_parquet(args.dataset)
        data_info = {"path": str(args.dataset), "sha256": hashlib.sha256(args.dataset.read_bytes()).hexdigest()}

        def report(p: Progress) -> None:
            eta = "?" if p.eta_seconds is None else f"{p.eta_seconds:.0f}s"
            logged = " ".join(f"{k}={v:.4f}" for k, v in p.metrics.items())
            print(f"epoch {p.epoch}/{p.epochs} step {p.step}/{p.total_steps} ({p.percent:.1f}%) eta {eta} {logged}",
                  flush=True)

        result = train_reward_model(config, frame, args.output, data_info=data_info, on_progress=report)
        if args.weights_hash_dir is not None:
            args.weights_hash_dir.mkdir(parents=True, exist_ok=True)
            (args.weights_hash_dir / f"rank{ranks.rank}.sha256").write_text(result.weights_sha256 + "\n")
        if ranks.main:
            print(json.dumps({"model_dir": str(result.model_dir), **result.metrics}, default=str), flush=True)
    finally:
        if distributed:
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
