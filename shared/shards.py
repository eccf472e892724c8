"""Write webdataset shards with a manifest, and read manifests back.

A shard folder holds ``<prefix>-000000.tar``, ``<prefix>-000001.tar``, … (plain POSIX tar files in the
webdataset layout: one ``<key>.<field>`` member per field of a sample) and one ``manifest.json`` that
records what went in: per-shard sample counts, sizes and SHA-256 digests, per-field statistics, value
counts of the JSON fields asked for (concept counts for balanced sampling come from here), and every
input that was skipped with its reason.

Tar writing itself is webdataset's :class:`webdataset.ShardWriter`; this module adds atomic files
(each shard is written under a ``.partial`` name and renamed when complete), validation, statistics
and the manifest.

Example:
    >>> with ShardWriter("runs/biomed/shards", max_samples=10_000) as writer:  # doctest: +SKIP
    ...     writer.write({"__key__": "pmc1-fig1", "jpg": jpeg_bytes, "txt": caption, "json": meta})
    ...     writer.skip("pmc2/fig3.png", "caption empty")
"""

from __future__ import annotations

import collections
import datetime
import hashlib
import io
import json
import os
import re
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import webdataset as wds

from shared.atomic_files import write_text_atomically

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
PARTIAL_SUFFIX = ".partial"
SHARD_NAME_DIGITS = 6
# The first N skipped inputs are listed one by one; the per-reason totals are always complete.
MAX_LISTED_SKIPS = 10_000
# webdataset splits "<key>.<field>" at the first dot, so a key may not contain one.
_VALID_KEY = re.compile(r"^[^.]+$")
# Read command for s3:// URLs (AWS CLI streaming to stdout); the URL is shell-quoted into {url}.
S3_READ_COMMAND = "aws s3 cp {url} -"


class ManifestError(ValueError):
    """A manifest is missing, unreadable or not a shard manifest."""


class _HashingFile(io.RawIOBase):
    """A write-only file that hashes and counts the bytes it writes (the shard's SHA-256 and size)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._file: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.sha256 = hashlib.sha256()
        self.num_bytes = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(data)
        self._file.write(view)
        self.sha256.update(view)
        self.num_bytes += view.nbytes
        return view.nbytes

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        super().close()


def _json_field_values(metadata: Mapping[str, Any], field: str) -> list[Any]:
    """Values of a dotted field path in a JSON object; a list field gives each of its elements."""
    value: Any = metadata
    for part in field.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return []
        value = value[part]
    if value is None:
        return []
    if isinstance(value, list):
        return [item for item in value if item is not None]
    return [value]


def _count_key(value: Any) -> str:
    """JSON object keys must be strings; keep numbers and booleans readable."""
    return value if isinstance(value, str) else json.dumps(value)


class ShardWriter:
    """Writes samples into size- and count-limited webdataset shards plus a ``manifest.json``.

    Use it as a context manager. Each sample is a dict with a ``__key__`` (unique, no dots) and one
    entry per field; the field name is the file extension inside the tar and selects webdataset's
    encoder: ``jpg``/``png`` (bytes or PIL image), ``txt`` (str), ``json`` (dict or str), ``npy``
    (ndarray), ``cls`` (int), or any name with bytes.

    Shards are written as ``<name>.partial`` and renamed when complete, so a reader never sees half a
    shard, and an interrupted run keeps every shard it finished. The manifest is written (atomically)
    on close; after an exception inside the ``with`` block it is still written, with
    ``"complete": false`` and the error.

    Args:
        out_dir: Folder for the shards and the manifest (created if missing).
        prefix: Shard file name prefix: ``<prefix>-000000.tar``.
        max_samples: A shard is closed once it holds this many samples.
        max_bytes: A shard is closed once its payload reaches this many bytes (tar headers not
            counted; the sample that crosses the limit stays in the shard).
        track_json_fields: Dotted paths into each sample's ``json`` field whose value counts go into
            ``manifest["json_field_counts"]`` (a list field counts each element), e.g.
            ``("article_license", "image_panel_type")``.
        concept_fields: Dotted paths whose value counts go into ``manifest["concept_counts"]``; these
            are what concept-balanced streaming reads (e.g. ``("image_primary_label",)``).
        metadata_field: Name of the sample field holding the per-sample JSON.
        overwrite: Replace an existing manifest and shards with the same prefix instead of failing.

    Raises:
        FileExistsError: ``out_dir`` already holds a manifest or shards with this prefix and
            ``overwrite`` is false.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        prefix: str = "shard",
        max_samples: int = 10_000,
        max_bytes: int = 1 << 30,
        track_json_fields: Sequence[str] = (),
        concept_fields: Sequence[str] = (),
        metadata_field: str = "json",
        overwrite: bool = False,
    ) -> None:
        if max_samples < 1:
            raise ValueError(f"max_samples must be at least 1, got {max_samples}")
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
        if not prefix or "/" in prefix or "." in prefix:
            raise ValueError(f"prefix must be a plain name without '/' or '.', got {prefix!r}")
        self.out_dir = Path(out_dir)
        self.prefix = prefix
        self.max_samples = max_samples
        self.max_bytes = max_bytes
        self.track_json_fields = tuple(track_json_fields)
        self.concept_fields = tuple(concept_fields)
        self.metadata_field = metadata_field
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._check_target_is_free(overwrite)

        self._shards: list[dict[str, Any]] = []
        self._field_samples: collections.Counter[str] = collections.Counter()
        self._field_bytes: collections.Counter[str] = collections.Counter()
        self._label_counts: dict[str, collections.Counter[str]] = {}
        self._json_counts = {field: collections.Counter() for field in self.track_json_fields}
        self._concept_counts = {field: collections.Counter() for field in self.concept_fields}
        self._skipped: list[dict[str, str]] = []
        self._skipped_by_reason: collections.Counter[str] = collections.Counter()
        self._num_samples = 0
        self._last_key: str | None = None
        self._open_file: _HashingFile | None = None
        self._shard_samples = 0
        self._writer: wds.ShardWriter | None = None
        self._closed = False
        self._encode = wds.writer.make_encoder(True)

    # -- context manager -------------------------------------------------------------------------

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        error = None if exc is None else f"{type(exc).__name__}: {exc}"
        self.close(error=error)

    # -- public API --------------------------------------------------------------------------------

    def write(self, sample: Mapping[str, Any]) -> None:
        """Adds one sample to the current shard (opening the next shard when a limit is reached).

        Args:
            sample: ``{"__key__": str, field: value, ...}``; see the class docstring for field types.

        Raises:
            ValueError: The key is missing, contains a dot, repeats the previous key, or the sample
                has no fields; or a field value cannot be encoded.
            RuntimeError: The writer is already closed.
        """
        if self._closed:
            raise RuntimeError(f"ShardWriter for {self.out_dir} is closed")
        key = sample.get("__key__")
        if not isinstance(key, str) or not key:
            raise ValueError(f"sample has no string '__key__' (fields: {sorted(sample)})")
        if not _VALID_KEY.match(key):
            raise ValueError(f"sample key {key!r} contains a '.', which webdataset reads as a field separator")
        if key == self._last_key:
            raise ValueError(f"sample key {key!r} repeats the previous sample's key; keys must be unique")
        fields = {name: value for name, value in sample.items() if not name.startswith("_")}
        if not fields:
            raise ValueError(f"sample {key!r} has no fields besides its key")

        try:
            encoded = self._encode({"__key__": key, **fields})
        except (ValueError, TypeError, AssertionError) as error:
            raise ValueError(f"sample {key!r}: a field cannot be encoded: {error}") from error
        for name, value in encoded.items():
            if name != "__key__" and not isinstance(value, bytes | bytearray | memoryview):
                raise ValueError(f"sample {key!r}: field {name!r} did not encode to bytes ({type(value)})")

        metadata = self._parse_metadata(key, encoded)
        if self._writer is None:
            self._writer = wds.ShardWriter(
                str(self.out_dir / f"{self.prefix}-%0{SHARD_NAME_DIGITS}d.tar"),
                maxcount=self.max_samples,
                maxsize=self.max_bytes,
                opener=self._open_partial_shard,
                post=self._finish_shard,
                verbose=0,
                encoder=False,
                mtime=0,  # an int: a float mtime makes tarfile add a PAX header to every member
            )
        self._writer.write(encoded)
        self._shard_samples += 1
        self._num_samples += 1
        self._last_key = key
        self._update_statistics(encoded, metadata)

    def skip(self, source: str, reason: str) -> None:
        """Records an input that was not written, and why (it goes into the manifest).

        Args:
            source: What was skipped: a file path, a URL, a record id.
            reason: A short, stable reason (skips are also counted per reason), e.g. ``"caption empty"``.
        """
        self._skipped_by_reason[reason] += 1
        if len(self._skipped) < MAX_LISTED_SKIPS:
            self._skipped.append({"source": str(source), "reason": reason})

    def close(self, error: str | None = None) -> Path:
        """Finishes the last shard and writes ``manifest.json`` atomically.

        Args:
            error: If given, the manifest is marked incomplete and records this error.

        Returns:
            The manifest path.
        """
        if not self._closed:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            self._closed = True
            self._write_manifest(error)
        return self.out_dir / MANIFEST_NAME

    @property
    def num_samples(self) -> int:
        """Samples written so far."""
        return self._num_samples

    # -- internals -----------------------------------------------------------------------------------

    def _check_target_is_free(self, overwrite: bool) -> None:
        existing = sorted(self.out_dir.glob(f"{self.prefix}-*.tar"))
        manifest = self.out_dir / MANIFEST_NAME
        if manifest.exists():
            existing.append(manifest)
        if not existing:
            return
        if not overwrite:
            raise FileExistsError(
                f"{self.out_dir} already holds {existing[0].name}"
                f"{' and others' if len(existing) > 1 else ''}; choose another folder or pass overwrite=True"
            )
        for path in existing:
            path.unlink()

    def _open_partial_shard(self, final_name: str) -> _HashingFile:
        self._open_file = _HashingFile(Path(final_name + PARTIAL_SUFFIX))
        self._shard_samples = 0
        return self._open_file

    def _finish_shard(self, final_name: str) -> None:
        handle = self._open_file
        if handle is None:  # pragma: no cover - webdataset always opens before it posts
            return
        handle.close()
        self._open_file = None
        final = Path(final_name)
        if self._shard_samples == 0:
            handle.path.unlink(missing_ok=True)
            return
        os.replace(handle.path, final)
        self._shards.append(
            {
                "name": final.name,
                "samples": self._shard_samples,
                "bytes": handle.num_bytes,
                "sha256": handle.sha256.hexdigest(),
            }
        )

    def _parse_metadata(self, key: str, encoded: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The sample's JSON metadata when fields are tracked, checked before anything is written."""
        if not (self.track_json_fields or self.concept_fields):
            return None
        raw = encoded.get(self.metadata_field)
        if raw is None:
            return None
        try:
            metadata = json.loads(raw)
        except ValueError as error:
            raise ValueError(f"sample {key!r}: field {self.metadata_field!r} is not JSON: {error}") from None
        return metadata if isinstance(metadata, Mapping) else None

    def _update_statistics(self, encoded: Mapping[str, Any], metadata: Mapping[str, Any] | None) -> None:
        for name, value in encoded.items():
            if name.startswith("_"):
                continue
            self._field_samples[name] += 1
            self._field_bytes[name] += len(value)
            if name == "cls" or name.endswith(".cls"):
                label = bytes(value).decode("utf-8", errors="replace").strip()
                self._label_counts.setdefault(name, collections.Counter())[label] += 1
        if metadata is None:
            return
        for field, counter in self._json_counts.items():
            counter.update(_count_key(value) for value in _json_field_values(metadata, field))
        for field, counter in self._concept_counts.items():
            counter.update(_count_key(value) for value in _json_field_values(metadata, field))

    def _write_manifest(self, error: str | None) -> None:
        names = [shard["name"] for shard in self._shards]
        manifest = {
            "format": "webdataset",
            "manifest_version": MANIFEST_VERSION,
            "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "complete": error is None,
            "error": error,
            "prefix": self.prefix,
            "limits": {"max_samples": self.max_samples, "max_bytes": self.max_bytes},
            "num_samples": sum(shard["samples"] for shard in self._shards),
            "num_shards": len(self._shards),
            "num_bytes": sum(shard["bytes"] for shard in self._shards),
            "url_pattern": _brace_pattern(self.prefix, len(names)),
            "shards": self._shards,
            "fields": {
                name: {"samples": self._field_samples[name], "bytes": self._field_bytes[name]}
                for name in sorted(self._field_samples)
            },
            "label_counts": {name: dict(counts.most_common()) for name, counts in self._label_counts.items()},
            "json_field_counts": {field: dict(c.most_common()) for field, c in self._json_counts.items()},
            "concept_counts": {field: dict(c.most_common()) for field, c in self._concept_counts.items()},
            "skipped_total": sum(self._skipped_by_reason.values()),
            "skipped_by_reason": dict(self._skipped_by_reason.most_common()),
            "skipped": self._skipped,
        }
        write_text_atomically(self.out_dir / MANIFEST_NAME, json.dumps(manifest, indent=2, ensure_ascii=False))


def _brace_pattern(prefix: str, num_shards: int) -> str | None:
    """``shard-{000000..000003}.tar`` for the written shards (what ShardStream takes)."""
    if num_shards == 0:
        return None
    last = f"{num_shards - 1:0{SHARD_NAME_DIGITS}d}"
    if num_shards == 1:
        return f"{prefix}-{last}.tar"
    return f"{prefix}-{{{0:0{SHARD_NAME_DIGITS}d}..{last}}}.tar"


def _is_remote(location: str) -> bool:
    return location.startswith(("http://", "https://", "s3://", "pipe:"))


def _manifest_location(dir_or_url: str) -> str:
    if dir_or_url.endswith(".json") or dir_or_url.startswith("pipe:"):
        return dir_or_url
    return dir_or_url.rstrip("/") + "/" + MANIFEST_NAME


def _read_remote_bytes(url: str, timeout_s: float, s3_command: str) -> bytes:
    if url.startswith(("http://", "https://")):
        import requests

        response = requests.get(url, timeout=timeout_s)
        if response.status_code != 200:
            raise ManifestError(f"{url}: HTTP {response.status_code} while reading the shard manifest")
        return response.content
    command = url[len("pipe:") :] if url.startswith("pipe:") else s3_command.format(url=shlex.quote(url))
    result = subprocess.run(command, shell=True, capture_output=True, timeout=timeout_s, check=False)  # noqa: S602
    if result.returncode != 0:
        message = result.stderr.decode("utf-8", errors="replace").strip()[-300:]
        raise ManifestError(f"{url}: reading the manifest failed (exit {result.returncode}): {message}")
    return result.stdout


def read_manifest(
    dir_or_url: str | os.PathLike[str], timeout_s: float = 30.0, s3_command: str = S3_READ_COMMAND
) -> dict[str, Any]:
    """Reads a shard folder's ``manifest.json`` from a local folder or a URL.

    Args:
        dir_or_url: A local shard folder, a local ``manifest.json`` path, an ``http(s)://`` or
            ``s3://`` folder URL (``/manifest.json`` is appended) or manifest URL, or a ``pipe:``
            command printing the manifest.
        timeout_s: Network timeout in seconds for remote manifests.
        s3_command: Shell command printing an ``s3://`` object (``{url}`` is replaced by the quoted URL).

    Returns:
        The manifest as a dict (see :class:`ShardWriter` for its keys).

    Raises:
        ManifestError: The manifest is missing, not JSON, or not a shard manifest; the message names
            the location.
    """
    location = _manifest_location(os.fspath(dir_or_url))
    if _is_remote(location):
        raw = _read_remote_bytes(location, timeout_s, s3_command)
    else:
        path = Path(location)
        if not path.is_file():
            raise ManifestError(f"{path}: no shard manifest here (expected the {MANIFEST_NAME} a ShardWriter writes)")
        raw = path.read_bytes()
    try:
        manifest = json.loads(raw)
    except ValueError as error:
        raise ManifestError(f"{location}: manifest is not valid JSON ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "webdataset" or "shards" not in manifest:
        raise ManifestError(f"{location}: not a shard manifest (no 'format': 'webdataset' and 'shards')")
    return manifest


def shard_urls_from_manifest(dir_or_url: str | os.PathLike[str], manifest: Mapping[str, Any]) -> list[str]:
    """The full shard paths or URLs a manifest lists, in order.

    Args:
        dir_or_url: The folder or folder URL the manifest was read from.
        manifest: The manifest, as returned by :func:`read_manifest`.

    Returns:
        One path/URL per shard.
    """
    base = os.fspath(dir_or_url)
    if base.endswith(".json"):
        base = base.rsplit("/", 1)[0] if "/" in base else "."
    return [base.rstrip("/") + "/" + shard["name"] for shard in manifest["shards"]]
