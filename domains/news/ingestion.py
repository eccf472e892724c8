"""Ingestion: raw news posts in one of the supported layouts (or the built-in set) → shards + manifest.

:func:`ingest_posts` reads the configured input (:func:`read_posts`), applies the image/text policy of
:func:`domains.news.data.write_post_shards` and writes ``shard-*.tar``, ``manifest.json`` and
``ingest_report.json``. A run that keeps no post raises :class:`~shared.user_errors.NothingProduced`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domains.news.data import (
    TEXT_ONLY_REFUSAL,
    NewsPost,
    read_fakeddit,
    read_fakenewsnet,
    read_jsonl_posts,
    read_weibo,
    write_post_shards,
)
from shared.user_errors import NothingProduced, UserError

FORMATS = ("builtin", "jsonl", "fakenewsnet", "fakeddit", "weibo")
DEFAULT_SHARDS = "runs/news/shards-builtin"
"""Where the built-in set's shards go (and where training looks for them by default)."""
INGEST_COMMAND = "python -m domains.news.ingest"
_FILE_FORMATS = ("jsonl", "fakeddit")


@dataclass
class IngestConfig:
    """Validate raw news posts and write them as shards (policy for images and text: see domains/news/data.py)."""

    format: str = "builtin"
    """Input layout: builtin (the offline out-of-context set), jsonl, fakenewsnet, fakeddit, weibo."""
    input: str | None = None
    """jsonl/fakeddit: the file; fakenewsnet/weibo: the dataset root folder; builtin: ignored."""
    image_dir: str | None = None
    """fakeddit only: folder of <id>.jpg images (default: images/ beside the TSV)."""
    out_dir: str = DEFAULT_SHARDS
    """Output folder for shard-*.tar, manifest.json and ingest_report.json."""
    default_split: str | None = None
    """Split recorded for posts whose source has none (train/val/test); None lets training split them."""
    max_samples_per_shard: int = 5000
    """Samples per shard file."""
    overwrite: bool = False
    """Replace shards already in out_dir."""


def check_config(config: IngestConfig) -> None:
    """Refuse a configuration that cannot work, before reading anything.

    Raises:
        UserError: unknown format or split, a missing or wrong kind of ``--input``, a bad shard size, or an
            ``--out_dir`` that already holds shards (without ``--overwrite``); the message names the flag.
    """
    if config.format not in FORMATS:
        raise UserError(f"--format: must be one of {', '.join(FORMATS)}, got {config.format!r}")
    if config.default_split not in (None, "train", "val", "test"):
        raise UserError(f"--default_split: must be train, val or test, got {config.default_split!r}")
    if config.max_samples_per_shard < 1:
        raise UserError(f"--max_samples_per_shard: must be >= 1, got {config.max_samples_per_shard}")
    if config.format != "builtin":
        if not config.input:
            raise UserError(f"--input: required for --format {config.format}")
        source = Path(config.input)
        if not source.exists():
            raise UserError(f"--input {source}: no such file or folder")
        if config.format in _FILE_FORMATS and source.is_dir():
            raise UserError(f"--input {source}: is a folder; --format {config.format} reads a file")
        if config.format not in _FILE_FORMATS and not source.is_dir():
            raise UserError(f"--input {source}: is a file; --format {config.format} reads the dataset's root folder")
    if config.image_dir is not None and not Path(config.image_dir).is_dir():
        raise UserError(f"--image_dir {config.image_dir}: no such folder")
    out_dir = Path(config.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out_dir {out_dir}: is a file; expected a folder")
    if not config.overwrite and _holds_finished_shards(out_dir):
        raise UserError(f"--out_dir {out_dir}: already holds shards; pass --overwrite true or choose another folder")


def _holds_finished_shards(out_dir: Path) -> bool:
    """Whether ``out_dir`` holds the shards of a finished ingest (left-overs of a failed one do not count)."""
    manifest = out_dir / "manifest.json"
    if not manifest.is_file():
        return any(out_dir.glob("shard-*.tar"))
    try:
        return json.loads(manifest.read_text(encoding="utf-8")).get("complete", True) is not False
    except (ValueError, AttributeError):
        return True


def read_posts(config: IngestConfig) -> Iterator[NewsPost]:
    """The posts of the configured input (the built-in set is built first when needed).

    Raises:
        UserError: see :func:`check_config`; a file that does not have its format's layout
            (:class:`~domains.news.data.NewsFormatError`, raised while iterating).
    """
    check_config(config)
    if config.format == "builtin":
        from domains.news.demo import build_emoji_outofcontext

        return read_jsonl_posts(build_emoji_outofcontext(), source_dataset="builtin-emoji-ooc")
    source = Path(config.input or "")
    if config.format == "jsonl":
        return read_jsonl_posts(source)
    if config.format == "fakenewsnet":
        return read_fakenewsnet(source)
    if config.format == "fakeddit":
        return read_fakeddit(source, config.image_dir)
    return read_weibo(source)


def ingest_posts(config: IngestConfig) -> dict[str, Any]:
    """Read, validate and write the posts as shards; returns the ingest report (``ingest_report.json``).

    Raises:
        UserError: bad configuration or input (see :func:`read_posts`).
        NothingProduced: no post was kept (none read, or every one dropped); the reasons are in the
            message and in ``ingest_report.json``, and no ``manifest.json`` is left behind.
    """
    report = write_post_shards(
        read_posts(config),
        config.out_dir,
        max_samples_per_shard=config.max_samples_per_shard,
        default_split=config.default_split,
        # Left-overs of a failed ingest are replaced; finished shards only with --overwrite (checked above).
        overwrite=config.overwrite or not _holds_finished_shards(Path(config.out_dir)),
    ).as_dict()
    if report["written"] == 0:
        # An empty manifest would pass for a shard set; without it training names the ingest command.
        (Path(config.out_dir) / "manifest.json").unlink(missing_ok=True)
        source = config.input if config.format != "builtin" else "the built-in set"
        if report["read"] == 0:
            raise NothingProduced(f"{source}: no posts in the input")
        reasons = ", ".join(f"{count} {reason}" for reason, count in report["dropped"].items())
        imageless = report["dropped"].get("no image", 0) + report["dropped"].get("image file missing", 0)
        hint = f"; {TEXT_ONLY_REFUSAL}" if imageless else ""
        raise NothingProduced(f"{source}: all {report['read']} posts were dropped ({reasons}){hint}")
    return report


def ensure_builtin_shards(shards: str | Path, flag: str = "--input") -> Path:
    """The shard folder ``shards``; the built-in set's default folder is built through ingestion when missing.

    Before building, one line says so and names the ingest command that does the same.

    Raises:
        UserError: ``shards`` is not the built-in default and is not a shard folder (names the ingest command).
    """
    from domains.news.feature_cache import require_shard_folder

    path = Path(shards)
    if Path(DEFAULT_SHARDS) == path and not (path / "manifest.json").is_file():
        print(f"{path}: no shards yet; building the built-in set first ({INGEST_COMMAND} --out_dir {path})")
        ingest_posts(IngestConfig(out_dir=str(path)))
    return require_shard_folder(path, flag)
