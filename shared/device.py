"""Device selection and mixed precision: the same code runs on CPU (fp32) and CUDA (bf16 autocast)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from shared.user_errors import UserError


def pick_device(preferred: str = "auto", flag: str = "--device") -> torch.device:
    """Return the device to run on.

    Args:
        preferred: ``"auto"`` (CUDA when available, else CPU), or an explicit torch device string.
        flag: The flag that gave ``preferred`` (named in the error).

    Raises:
        UserError: ``preferred`` is not a device string torch knows.
    """
    if preferred == "auto":
        if torch.cuda.is_available():
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                return torch.device("cuda", torch.cuda.current_device())
            return torch.device("cuda")
        return torch.device("cpu")
    try:
        return torch.device(preferred)
    except RuntimeError as error:
        raise UserError(f"{flag} {preferred!r}: not a torch device ({error})") from None


def resolve_precision(device: torch.device, precision: str = "auto") -> str:
    """Map ``"auto"`` to ``"bf16"`` on CUDA and ``"fp32"`` elsewhere; validate explicit values."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {precision!r}")
    return precision


@contextlib.contextmanager
def autocast_for(device: torch.device, precision: str = "auto") -> Iterator[None]:
    """Context manager: bf16 autocast where the resolved precision is bf16, plain fp32 otherwise."""
    if resolve_precision(device, precision) == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    else:
        yield


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Recursively move tensors inside dicts, lists and tuples to ``device``; leave other values alone."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {key: move_to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, list):
        return [move_to_device(value, device) for value in batch]
    if isinstance(batch, tuple):
        return tuple(move_to_device(value, device) for value in batch)
    return batch
