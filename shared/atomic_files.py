"""The one way the suite writes a file that must never be seen half-written.

Every writer goes through :func:`atomic_output`: the content goes to a temporary file in the target's
folder, is flushed and fsynced, renamed over the target (``os.replace`` is atomic on POSIX within one
file system) and the folder entry is fsynced, so after a crash the target holds either the old or the
new content, never a mix. The text/JSON/bytes helpers and the checkpoint, manifest, store and picture
writers are thin wrappers around it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def fsync_directory(path: str | Path) -> None:
    """Flush a directory entry so that a rename inside it survives a crash."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_file(path: str | Path) -> None:
    """Flush a closed file's content to disk."""
    with open(path, "rb") as stream:
        os.fsync(stream.fileno())


@contextlib.contextmanager
def atomic_output(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    The caller writes the temporary file by any means (``torch.save``, ``safetensors``, ``PIL``,
    ``matplotlib``); on leaving the block without an exception the file is fsynced and renamed into
    place. On an exception the temporary file is removed and ``path`` is left as it was.

    Args:
        path: The file to (re)write.
        suffix: Suffix of the temporary name (some writers pick the format from it, e.g. ``".png"``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(handle)
    temporary = Path(tmp_name)
    try:
        yield temporary
        fsync_file(temporary)
        os.replace(temporary, path)
        fsync_directory(path.parent)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield an empty staging folder beside ``path``; on success it replaces the folder ``path``.

    For outputs that are several files (an exported model, a Parquet export): the caller fills the staging
    folder; on leaving the block every file in it is fsynced, an existing ``path`` is moved aside, the
    staging folder is renamed into place and the old one removed. A reader sees the old folder or the new
    one, never a mix (a folder cannot be swapped in one rename, so for an instant ``path`` is absent). On an
    exception the staging folder is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".staging", dir=path.parent))
    try:
        yield staging
        for file in staging.rglob("*"):
            if file.is_file():
                fsync_file(file)
        for folder in [*(f for f in staging.rglob("*") if f.is_dir()), staging]:
            fsync_directory(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    previous = None
    if path.exists():
        previous = path.with_name(f".{path.name}.old-{uuid.uuid4().hex}")
        os.replace(path, previous)
    os.replace(staging, path)
    fsync_directory(path.parent)
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)


def _is_rank_zero() -> bool:
    # The launcher's RANK (torchrun / accelerate launch); no torch import on this path.
    return int(os.environ.get("RANK", "0")) == 0


def write_bytes_atomically(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_output`); returns ``path``.

    Under ``torchrun`` / ``accelerate launch`` only rank 0 writes (the other ranks return at once): every rank
    may run the same code, and the run folder, caches and markers get one writer. A rank that reads what it
    just wrote must let rank 0 write first (:func:`shared.distributed.main_process_first`).
    """
    if not _is_rank_zero():
        return Path(path)
    with atomic_output(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def write_text_atomically(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns ``path``."""
    return write_bytes_atomically(path, text.encode("utf-8"))


def write_json_atomically(path: str | Path, value: Any, indent: int | None = 2) -> Path:
    """Write ``value`` as JSON to ``path`` atomically; non-finite floats are written as ``null``.

    JSON has no NaN or infinity: a metric that is undefined (e.g. ROC-AUC of a one-class test set) is
    stored as ``null`` so that readers see "undefined" rather than a number.
    """
    text = json.dumps(_finite_or_none(value), indent=indent, allow_nan=False)
    return write_text_atomically(path, text + "\n")


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    if hasattr(value, "item") and hasattr(value, "dtype") and getattr(value, "ndim", 1) == 0:
        return _finite_or_none(value.item())  # numpy / torch scalars
    return value
