"""Device choice, precision resolution, autocast and moving nested batches."""

from __future__ import annotations

import pytest
import torch

from shared.device import autocast_for, move_to_device, pick_device, resolve_precision
from shared.user_errors import UserError


def test_pick_device_auto_and_explicit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device() == torch.device("cpu")
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("cuda:1") == torch.device("cuda", 1)  # explicit strings are passed through
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto") == torch.device("cuda")


def test_resolve_precision() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision(cpu) == "fp32" and resolve_precision(cuda) == "bf16"
    assert resolve_precision(cpu, "bf16") == "bf16" and resolve_precision(cuda, "fp32") == "fp32"
    with pytest.raises(ValueError, match="precision must be"):
        resolve_precision(cpu, "fp16")


def test_autocast_is_bf16_only_when_asked_for() -> None:
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with autocast_for(torch.device("cpu")):
        assert (a @ b).dtype == torch.float32
    with autocast_for(torch.device("cpu"), "bf16"):
        assert (a @ b).dtype == torch.bfloat16


def test_move_to_device_keeps_structure_and_non_tensors() -> None:
    batch = {"x": torch.ones(2), "nested": [torch.zeros(1), ("id", torch.ones(1))], "name": "a", "n": 3}
    moved = move_to_device(batch, torch.device("meta"))
    assert moved["x"].device.type == "meta" and moved["nested"][0].device.type == "meta"
    assert isinstance(moved["nested"][1], tuple) and moved["nested"][1][0] == "id"
    assert moved["nested"][1][1].device.type == "meta"
    assert moved["name"] == "a" and moved["n"] == 3


def test_a_device_string_torch_does_not_know_is_a_user_error_naming_the_flag() -> None:
    with pytest.raises(UserError, match=r"^--trainer\.device 'gpu0': not a torch device"):
        pick_device("gpu0", "--trainer.device")
    with pytest.raises(UserError, match=r"^--device 'cuda:x'"):
        pick_device("cuda:x")
