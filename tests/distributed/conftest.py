"""Launch a command as a user would: one process, ``torchrun --nproc_per_node 2`` or ``accelerate launch`` (gloo, CPU).

Tests reach these helpers through the ``dist`` fixture (``dist.launch(...)``): the suite's own ``conftest``
module name is taken by ``tests/conftest.py``. Each test runs the command in a fresh working folder (so built-in data are built there, from nothing, as from a
clean checkout) with the repository on ``PYTHONPATH``, and compares the run folders it wrote.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ACCELERATE_CPU_CONFIG = REPO_ROOT / "shared" / "accelerate" / "cpu.yaml"


def free_port() -> int:
    """A free TCP port on the loopback interface (for a rendezvous that must not collide with another test's)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def launch(
    module: str, args: list[str], cwd: Path, processes: int = 1, launcher: str = "torchrun", timeout: int = 600
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m module args`` in ``cwd`` with 1 process, or with ``processes`` under ``launcher``.

    ``launcher``: ``"torchrun"`` (``python -m torch.distributed.run --standalone``) or ``"accelerate"``
    (``accelerate launch --config_file shared/accelerate/cpu.yaml``, the file the README names).

    Raises:
        AssertionError: the command failed (with the end of its output).
    """
    if processes == 1:
        command = [sys.executable, "-m", module, *args]
    elif launcher == "torchrun":
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes)]
        # "--" ends torchrun's own options: without it torchrun reads the commands' --run as its --run-path.
        command += ["--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{free_port()}", "-m", module, "--", *args]
    else:
        command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ACCELERATE_CPU_CONFIG)]
        command += ["--num_processes", str(processes), "--main_process_port", str(free_port()), "-m", module, *args]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    result.wall_seconds = round(time.perf_counter() - started, 1)  # type: ignore[attr-defined]
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result


def eval_metrics(run_dir: Path) -> dict[str, Any]:
    """``eval/metrics.json`` of a finished run (asserting the run is marked finished)."""
    assert (run_dir / "run.json").is_file(), f"{run_dir} is not marked finished"
    return json.loads((run_dir / "eval" / "metrics.json").read_text())


def train_losses(run_dir: Path) -> list[float]:
    """The logged training losses of ``metrics.csv`` in step order."""
    with open(run_dir / "metrics.csv", newline="") as stream:
        rows = [row for row in csv.DictReader(stream) if row["phase"] == "train" and row["metric"] == "loss"]
    return [float(row["value"]) for row in sorted(rows, key=lambda row: int(row["step"]))]


def record(test: str, **values: Any) -> None:
    """Append one JSON line of measurements to ``$DISTRIBUTED_MEASUREMENTS`` when set (docs/distributed.md)."""
    target = os.environ.get("DISTRIBUTED_MEASUREMENTS")
    if target:
        with open(target, "a", encoding="utf-8") as stream:
            stream.write(json.dumps({"test": test, **values}, default=float) + "\n")


def printed_once(output: str, line_start: str) -> bool:
    """Whether exactly one line of ``output`` starts with ``line_start`` (rank 0 alone prints the summary)."""
    return sum(1 for line in output.splitlines() if line.startswith(line_start)) == 1


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty working folder: the command builds its built-in data here, as in a clean checkout."""
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


@pytest.fixture
def dist() -> types.ModuleType:
    """This module: ``dist.launch``, ``dist.eval_metrics``, ``dist.train_losses``, ``dist.printed_once``, ``dist.free_port``."""
    return sys.modules[__name__]
