"""Epoch checkpoints that let a training run survive its worker being killed.

One file, output_dir/checkpoint/state.pt, holds the model, optimizer, scheduler and scaler states,
every rank's random-number states, where training stands (epoch, batch, step), the history so far
and the hash of the config and data it belongs to. It is written to a temporary file and renamed
over the old one, so a kill at any moment leaves either the previous checkpoint or the new one.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

FILE = Path("checkpoint") / "state.pt"


def config_hash(config: dict[str, Any], data_checksum: str) -> str:
    """A stable hash of what decides the trained weights: the hyperparameters and the data."""
    text = json.dumps({"config": config, "data": data_checksum}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(output_dir: Path, state: dict[str, Any]) -> Path:
    """Write `state` atomically to output_dir/checkpoint/state.pt."""
    path = Path(output_dir) / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".state-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(output_dir: Path, expected_hash: str) -> dict[str, Any] | None:
    """The checkpoint in output_dir if it belongs to this config and data, else None."""
    path = Path(output_dir) / FILE
    if not path.is_file():
        return None
    # weights_only=False: the file holds numpy RNG states and was written by this process's code.
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("config_hash") != expected_hash:
        return None
    return state


def remove_checkpoint(output_dir: Path) -> None:
    path = Path(output_dir) / FILE
    path.unlink(missing_ok=True)
    for leftover in path.parent.glob(".state-*.tmp"):
        leftover.unlink(missing_ok=True)
    if path.parent.is_dir() and not any(path.parent.iterdir()):
        path.parent.rmdir()
