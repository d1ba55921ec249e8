"""Device and precision choice, exercised without a GPU by pretending CUDA's answers."""
import contextlib

import pytest
import torch

from rewardtrain.ml import device as device_module
from rewardtrain.ml.device import Precision, choose_precision, pick_device


@pytest.fixture
def no_accelerator(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_module, "_mps_available", lambda: False)


def test_cpu_when_there_is_no_accelerator(no_accelerator):
    assert pick_device(None) == torch.device("cpu")
    assert pick_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA is not available"):
        pick_device("cuda")
    with pytest.raises(ValueError, match="MPS is not available"):
        pick_device("mps")


def test_cuda_first_then_mps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(device_module, "_mps_available", lambda: True)
    assert pick_device(None) == torch.device("cuda")
    assert pick_device("cuda:1") == torch.device("cuda", 1)
    assert pick_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device(None) == torch.device("mps")


def test_bf16_autocast_on_cuda_that_supports_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    precision = Precision.for_device(torch.device("cuda"))
    assert precision.dtype == torch.bfloat16 and not precision.needs_scaler and precision.name == "bf16-autocast"


@pytest.mark.filterwarnings("ignore:CUDA is not available")  # building the context on a machine without a GPU
def test_fp16_autocast_with_a_grad_scaler_on_older_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert choose_precision(torch.device("cuda")) == torch.float16
    precision = Precision.for_device(torch.device("cuda"))
    assert precision.needs_scaler and precision.name == "fp16-autocast"
    autocast = precision.autocast()
    assert isinstance(autocast, torch.autocast) and autocast.fast_dtype == torch.float16


def test_nothing_on_the_cpu_and_the_scaler_passes_through():
    precision = Precision.for_device(torch.device("cpu"))
    assert precision.dtype is None and precision.name == "float32"
    assert isinstance(precision.autocast(), contextlib.nullcontext)
    scaler = precision.make_scaler()
    assert not scaler.is_enabled()
    # A whole optimizer step through the disabled scaler equals a plain one.
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    before = layer.weight.detach().clone()
    loss = layer(torch.ones(1, 3)).sum()
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    scaler.step(optimizer)
    scaler.update()
    assert torch.allclose(layer.weight, before - 0.1 * torch.ones(1, 3))
