"""The run folder: one contract for every command of every domain (documented in docs/run_folder.md).

``runs/<domain>/<run-name>/`` holds:

- ``config.yaml``: the resolved config, exactly what ran (saved after every derived value is settled);
- ``metrics.csv``: long form ``step, epoch, phase, metric, value`` (:class:`MetricsLog`);
- ``checkpoints/``: the trainer's last K checkpoints, ``latest.json`` and ``best.safetensors``;
- ``eval/metrics.json`` (``eval/<split>/metrics.json`` for other splits);
- ``run.json``: the marker that says the run finished, with its id, command, time, outputs and their
  SHA-256. A folder without it is unfinished (crashed, interrupted or still running).

Only the main process (rank 0 under torch.distributed) writes; every write is atomic
(:mod:`shared.atomic_files`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shared.atomic_files import atomic_output, write_json_atomically, write_text_atomically
from shared.cli import config_to_dict
from shared.user_errors import UserError

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.csv"
EVAL_DIR = "eval"
EVAL_METRICS_FILE = "metrics.json"
FINISHED_MARKER = "run.json"
CHECKPOINTS_DIR = "checkpoints"
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def is_main_process() -> bool:
    """True on rank 0 (or without torch.distributed): the process that writes run folders and stores."""
    return int(os.environ.get("RANK", "0")) == 0


def sha256_of(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class RunFolder:
    """A run folder ``<root>/<domain>/<name>/`` (or a sub-run inside one) and the files of the contract.

    Attributes:
        path: The folder.
        parent_id: For a sub-run made by :meth:`child`, the enclosing run's id.
    """

    path: Path
    parent_id: str | None = field(default=None, compare=False)

    @classmethod
    def create(cls, domain: str, name: str, root: str | Path = "runs") -> RunFolder:
        """The folder for a new (or resumed) run; names are restricted to safe characters.

        Raises:
            UserError: ``domain`` or ``name`` contains characters other than letters, digits, ``.``,
                ``_`` and ``-`` (flag ``--run_name``).
        """
        for label, value in (("domain", domain), ("run name (--run_name)", name)):
            if not _NAME_PATTERN.match(value):
                raise UserError(f"{label} {value!r}: use letters, digits, '.', '_' or '-' (at most 128)")
        folder = cls(Path(root) / domain / name)
        folder.path.mkdir(parents=True, exist_ok=True)
        return folder

    @classmethod
    def open(cls, path: str | Path, flag: str = "--run", require: str | None = None) -> RunFolder:
        """An existing run folder given by the user.

        Args:
            path: The folder.
            flag: The flag that named it (for the error message).
            require: A file that must exist inside (e.g. ``"model.safetensors"``), or None; with
                ``FINISHED_MARKER`` the run must have finished.

        Raises:
            UserError: the folder (or the required file) does not exist.
        """
        folder = cls(Path(path))
        if not folder.path.is_dir():
            raise UserError(f"{flag} {path}: no such run folder")
        if require is not None and not (folder.path / require).exists():
            what = "the run did not finish" if require == FINISHED_MARKER else f"{require} is missing"
            raise UserError(f"{flag} {path}: {what}")
        return folder

    # ------------------------------------------------------------------------------------ identity
    @property
    def name(self) -> str:
        """The run's name (the folder's name)."""
        return self.path.name

    @property
    def domain(self) -> str:
        """The domain (the parent folder's name)."""
        return self.path.parent.name

    @property
    def run_id(self) -> str:
        """``<domain>/<name>`` (``<domain>/<name>/<sub-run>`` for a sub-run): the run's id in the store.

        A finished run keeps the id its marker recorded, so a sub-run opened by path alone still knows it.
        """
        if self.parent_id is not None:
            return f"{self.parent_id}/{self.name}"
        recorded = self.marker().get("run_id")
        return recorded if recorded else f"{self.domain}/{self.name}"

    def child(self, name: str) -> RunFolder:
        """A sub-run folder inside this run (e.g. a baseline, a seed, an ablation variant), created.

        Raises:
            UserError: ``name`` is not a safe folder name.
        """
        if not _NAME_PATTERN.match(name):
            raise UserError(f"sub-run name {name!r}: use letters, digits, '.', '_' or '-' (at most 128)")
        sub = RunFolder(self.path / name, parent_id=self.run_id)
        sub.path.mkdir(parents=True, exist_ok=True)
        return sub

    # --------------------------------------------------------------------------------------- files
    @property
    def config_path(self) -> Path:
        """``config.yaml``."""
        return self.path / CONFIG_FILE

    @property
    def metrics_path(self) -> Path:
        """``metrics.csv``."""
        return self.path / METRICS_FILE

    @property
    def checkpoints_dir(self) -> Path:
        """``checkpoints/``."""
        return self.path / CHECKPOINTS_DIR

    def eval_dir(self, split: str | None = None) -> Path:
        """``eval/`` (test split or the only one) or ``eval/<split>/``."""
        return self.path / EVAL_DIR if split in (None, "test") else self.path / EVAL_DIR / split

    def save_config(self, config: Any) -> Path:
        """Write the resolved config (a dataclass or dict) as ``config.yaml``; returns its path."""
        text = yaml.safe_dump(config_to_dict(config), sort_keys=False)
        if is_main_process():
            write_text_atomically(self.config_path, text)
        return self.config_path

    def load_config(self) -> dict[str, Any]:
        """The saved ``config.yaml`` as a dict.

        Raises:
            UserError: there is no ``config.yaml``, or it does not parse.
        """
        try:
            loaded = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"{self.config_path}: missing; is {self.path} a run folder?") from None
        except UnicodeDecodeError:
            raise UserError(f"{self.config_path}: not UTF-8 text") from None
        except yaml.YAMLError as error:
            raise UserError(f"{self.config_path}: not valid YAML ({error})") from None
        return loaded or {}

    def write_eval_metrics(self, metrics: dict[str, Any], split: str | None = None) -> Path:
        """Write ``eval[/<split>]/metrics.json`` (undefined values as ``null``); returns its path."""
        path = self.eval_dir(split) / EVAL_METRICS_FILE
        if is_main_process():
            write_json_atomically(path, metrics)
        return path

    def read_eval_metrics(self, split: str | None = None) -> dict[str, Any]:
        """The evaluation metrics written by :meth:`write_eval_metrics`.

        Raises:
            UserError: the run has no evaluation for ``split``.
        """
        path = self.eval_dir(split) / EVAL_METRICS_FILE
        if not path.is_file():
            raise UserError(f"{path}: missing; the run has no evaluation{f' on {split}' if split else ''}")
        return json.loads(path.read_text(encoding="utf-8"))

    # -------------------------------------------------------------------------------------- marker
    def mark_finished(self, command: str, outputs: list[str], summary: dict[str, Any] | None = None) -> Path:
        """Write ``run.json``: the run finished, with its outputs' sizes and SHA-256 and a summary.

        Args:
            command: The module that ran (e.g. ``"domains.news.train"``).
            outputs: Files inside the folder the run produced (relative paths; missing ones are an error).
            summary: Headline metrics or counts shown by the explorer's Home page.
        """
        if not is_main_process():
            # The outputs are rank 0's to write (and may not exist yet here): only rank 0 checks and marks.
            return self.path / FINISHED_MARKER
        files = {}
        for relative in outputs:
            path = self.path / relative
            if not path.is_file():
                raise FileNotFoundError(f"{path}: listed as an output of the run but not written")
            files[relative] = {"bytes": path.stat().st_size, "sha256": sha256_of(path)}
        marker = {
            "run_id": self.run_id,
            "command": command,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "outputs": files,
            "summary": summary or {},
        }
        if is_main_process():
            write_json_atomically(self.path / FINISHED_MARKER, marker)
        return self.path / FINISHED_MARKER

    def record_outputs(self, outputs: list[str]) -> None:
        """Add (or refresh) files in a finished run's marker, for a later command that writes into the run.

        E.g. ``evaluate --run`` or ``export --run`` rewriting ``eval/metrics.json`` or ``export/``: the marker
        then still lists every output with its current hash. Does nothing for an unfinished run.
        """
        if not is_main_process():
            return
        marker = self.marker()
        if not marker:
            return
        for relative in outputs:
            path = self.path / relative
            if not path.is_file():
                raise FileNotFoundError(f"{path}: listed as an output of the run but not written")
            marker["outputs"][relative] = {"bytes": path.stat().st_size, "sha256": sha256_of(path)}
        if is_main_process():
            write_json_atomically(self.path / FINISHED_MARKER, marker)

    def clear_finished(self) -> None:
        """Remove the marker (a run that starts again in this folder is unfinished until it ends)."""
        if is_main_process():
            (self.path / FINISHED_MARKER).unlink(missing_ok=True)

    @property
    def is_finished(self) -> bool:
        """Whether the run wrote its ``run.json`` marker."""
        return (self.path / FINISHED_MARKER).is_file()

    def marker(self) -> dict[str, Any]:
        """The content of ``run.json`` (empty when the run did not finish)."""
        path = self.path / FINISHED_MARKER
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def finished_runs(root: str | Path, domain: str, command: str | None = None) -> list[RunFolder]:
    """Finished run folders of ``domain`` under ``root`` (one level, plus nested ``<run>/<sub>/``), newest first.

    Args:
        root: The runs root (``runs/``).
        domain: The domain folder.
        command: Only runs of this command (the marker's ``command``), e.g. ``"domains.news.train"``.
    """
    base = Path(root) / domain
    if not base.is_dir():
        return []
    markers = [*base.glob(f"*/{FINISHED_MARKER}"), *base.glob(f"*/*/{FINISHED_MARKER}")]
    folders = []
    for marker in markers:
        folder = RunFolder(marker.parent)
        if command is None or folder.marker().get("command") == command:
            folders.append(folder)
    return sorted(folders, key=lambda folder: (folder.path / FINISHED_MARKER).stat().st_mtime, reverse=True)


class MetricsLog:
    """``metrics.csv`` in long form (``step, epoch, phase, metric, value``), plus optional TensorBoard.

    The one schema of training metrics for every domain: ``phase`` is ``train``, ``val`` or ``test``;
    ``epoch`` is the data epoch (0 where it does not apply). Only the main process writes.
    """

    header = ["step", "epoch", "phase", "metric", "value"]

    def __init__(self, run_dir: str | Path, enabled: bool | None = None, tensorboard: bool = False) -> None:
        run_dir = Path(run_dir)
        self.path = run_dir / METRICS_FILE
        self.enabled = is_main_process() if enabled is None else enabled
        self.writer = None
        if self.enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """On resume, drop rows logged after the checkpoint by the interrupted run."""
        if not self.enabled or not self.path.is_file():
            return
        with self.path.open(newline="", encoding="utf-8") as stream:
            rows = [row for row in csv.DictReader(stream) if int(row["step"]) <= step]
        with atomic_output(self.path) as temporary, temporary.open("w", newline="", encoding="utf-8") as stream:
            writer = csv.DictWriter(stream, fieldnames=self.header)
            writer.writeheader()
            writer.writerows(rows)

    def write(self, step: int, epoch: int, phase: str, values: dict[str, float]) -> None:
        """Append one row per metric."""
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new_file = not self.path.is_file()
        with self.path.open("a", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream)
            if new_file:
                writer.writerow(self.header)
            for name, value in values.items():
                writer.writerow([step, epoch, phase, name, f"{value:.8g}"])
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(f"{phase}/{name}", value, step)

    def close(self) -> None:
        """Flush TensorBoard."""
        if self.writer is not None:
            self.writer.close()


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Rows of a run's ``metrics.csv`` with ``step``/``epoch`` as int and ``value`` as float."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as stream:
        return [
            {**row, "step": int(row["step"]), "epoch": int(row["epoch"]), "value": float(row["value"])}
            for row in csv.DictReader(stream)
        ]
