"""Atomic checkpoints: weights as safetensors, training state loadable with ``torch.load(weights_only=True)``.

Layout in ``<run>/checkpoints/``: ``step_00000100.safetensors`` (model weights), ``step_00000100.pt``
(optimizer, schedule, counters, RNG states as tensors and plain values), ``latest.json`` (pointer to the
newest complete pair, written last). The last K pairs are kept.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model
from torch import nn

from shared.atomic_files import atomic_output, write_text_atomically
from shared.user_errors import UserError

_STEP_PATTERN = re.compile(r"^step_(\d{8})\.pt$")


class CheckpointError(UserError, RuntimeError):
    """A checkpoint is missing, truncated or otherwise unusable (a resume without a checkpoint is the user's)."""


def save_weights_atomically(model: nn.Module, path: str | Path) -> Path:
    """Write ``model``'s weights to ``path`` as safetensors, atomically."""
    with atomic_output(path) as temporary:
        save_model(model, str(temporary))
    return Path(path)


def save_state_atomically(state: dict[str, Any], path: str | Path) -> Path:
    """``torch.save`` ``state`` to ``path``, atomically."""
    with atomic_output(path) as temporary:
        torch.save(state, temporary)
    return Path(path)


def load_weights(model: nn.Module, path: str | Path, strict: bool = True) -> nn.Module:
    """Load weights into ``model`` from a ``.safetensors`` file (or the weights beside a trainer ``.pt`` state).

    Raises:
        CheckpointError: the file is missing, truncated or does not match the model.
    """
    path = Path(path)
    if path.suffix == ".pt":
        path = path.with_suffix(".safetensors")
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    try:
        missing, unexpected = load_model(model, str(path), strict=strict)
    except Exception as error:  # safetensors raises several types for truncated or foreign files
        raise CheckpointError(f"cannot load weights from {path}: {error}") from error
    if strict and (missing or unexpected):
        raise CheckpointError(f"weights in {path} do not match the model: missing {missing}, unexpected {unexpected}")
    return model


def load_training_state(path: str | Path) -> dict[str, Any]:
    """Read a trainer state file with ``weights_only=True``; a truncated or foreign file is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"checkpoint {path} is unreadable (truncated or not a trainer state): {error}") from error


def capture_rng_state() -> dict[str, Any]:
    """RNG states of torch (CPU, CUDA), numpy and Python as tensors and plain values (weights_only-safe)."""
    numpy_state = np.random.get_state()  # noqa: NPY002 - the global RNG is what we must restore
    python_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(np.asarray(numpy_state[1], dtype=np.int64)),
            "position": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "cached_gaussian": float(numpy_state[4]),
        },
        "python": {"version": python_state[0], "state": list(python_state[1]), "gauss": python_state[2]},
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy_state = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (
            "MT19937",
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["state"]), python_state["gauss"]))


class CheckpointManager:
    """Writes, finds and prunes the step checkpoints of one run.

    Args:
        directory: ``<run>/checkpoints``.
        keep_last: number of step checkpoints kept (older ones are deleted after a successful save).
    """

    def __init__(self, directory: str | Path, keep_last: int = 3) -> None:
        self.directory = Path(directory)
        self.keep_last = max(1, keep_last)

    def path_for(self, step: int) -> Path:
        """The state file of ``step`` (weights sit beside it with ``.safetensors``)."""
        return self.directory / f"step_{step:08d}.pt"

    def save(self, step: int, model: nn.Module, state: dict[str, Any]) -> Path:
        """Write weights, then state, then the ``latest.json`` pointer; prune old checkpoints."""
        self.directory.mkdir(parents=True, exist_ok=True)
        state_path = self.path_for(step)
        save_weights_atomically(model, state_path.with_suffix(".safetensors"))
        save_state_atomically(state, state_path)
        write_text_atomically(self.directory / "latest.json", json.dumps({"step": step, "state": state_path.name}))
        self._prune()
        return state_path

    def latest(self) -> Path | None:
        """The newest complete checkpoint, or None when the run has none."""
        pointer = self.directory / "latest.json"
        if not pointer.is_file():
            return None
        target = self.directory / json.loads(pointer.read_text(encoding="utf-8"))["state"]
        if not target.is_file() or not target.with_suffix(".safetensors").is_file():
            raise CheckpointError(f"{pointer} points to {target.name}, which is missing")
        return target

    def resolve(self, resume: str) -> Path:
        """Map ``--resume latest`` or a path to a checkpoint state file; never a silent fresh start."""
        if resume == "latest":
            found = self.latest()
            if found is None:
                raise CheckpointError(
                    f"--trainer.resume latest: no checkpoint in {self.directory}; run without --trainer.resume to start"
                )
            return found
        path = Path(resume)
        if path.is_dir():
            found = CheckpointManager(path if path.name == "checkpoints" else path / "checkpoints").latest()
            if found is None:
                raise CheckpointError(f"--trainer.resume {resume}: no checkpoint in that folder")
            return found
        if not path.is_file():
            raise CheckpointError(f"--trainer.resume {resume}: no such checkpoint file")
        return path

    def _prune(self) -> None:
        steps = sorted(
            int(match.group(1)) for match in (_STEP_PATTERN.match(p.name) for p in self.directory.iterdir()) if match
        )
        for step in steps[: -self.keep_last]:
            state_path = self.path_for(step)
            state_path.unlink(missing_ok=True)
            state_path.with_suffix(".safetensors").unlink(missing_ok=True)


def check_resume(resume: str | None, checkpoints_dir: str | Path) -> None:
    """Refuse a ``--trainer.resume`` with nothing to resume from, before any data or model is built.

    The same resolution the trainer makes when it starts (:meth:`CheckpointManager.resolve`), done early so
    that a command fails in one line instead of after loading its data and model. ``None`` passes.

    Raises:
        CheckpointError: (a ``UserError``) ``latest`` with no checkpoint in ``checkpoints_dir``, or a path that
            holds none.
    """
    if resume:
        CheckpointManager(checkpoints_dir).resolve(resume)
