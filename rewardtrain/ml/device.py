"""Where training runs and in what precision.

CUDA if there is one, else Apple's MPS, else the CPU. On CUDA the forward pass runs under autocast:
bfloat16 where the GPU supports it (same range as float32, no loss scaling needed), float16 with a
GradScaler otherwise (its small range would flush small gradients to zero). MPS and the CPU train
in float32: autocast there is slower or less tested than it is worth for a reward model.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


def pick_device(preference: str | None = None) -> torch.device:
    """The device asked for ("cpu", "cuda", "cuda:1", "mps"), or the best available when None/"auto"."""
    if preference and preference != "auto":
        device = torch.device(preference)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"Device {preference!r} was asked for, but CUDA is not available here.")
        if device.type == "mps" and not _mps_available():
            raise ValueError(f"Device {preference!r} was asked for, but MPS is not available here.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def choose_precision(device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `device`: bfloat16 or float16 on CUDA, None (float32) elsewhere."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@dataclass(frozen=True)
class Precision:
    """Autocast and loss scaling for one device; on the CPU both do nothing."""

    device: torch.device
    dtype: torch.dtype | None

    @classmethod
    def for_device(cls, device: torch.device) -> Precision:
        return cls(device, choose_precision(device))

    @property
    def needs_scaler(self) -> bool:
        return self.dtype == torch.float16

    @property
    def name(self) -> str:
        return {None: "float32", torch.bfloat16: "bf16-autocast", torch.float16: "fp16-autocast"}[self.dtype]

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def make_scaler(self) -> torch.amp.GradScaler:
        """A GradScaler that is enabled only for float16 (disabled, it passes everything through)."""
        return torch.amp.GradScaler(self.device.type if self.needs_scaler else "cpu", enabled=self.needs_scaler)
