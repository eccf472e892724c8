"""``python -m domains.news.ingest``: raw news posts (or the built-in set) → webdataset shards + manifest."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from domains.news.data import (
    NewsPost,
    read_fakeddit,
    read_fakenewsnet,
    read_jsonl_posts,
    read_weibo,
    write_post_shards,
)

FORMATS = ("builtin", "jsonl", "fakenewsnet", "fakeddit", "weibo")
DEFAULT_SHARDS = "runs/news/shards-builtin"


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


def read_posts(config: IngestConfig) -> Iterator[NewsPost]:
    """The posts of the configured input.

    Raises:
        ValueError: unknown format or a missing ``input``.
    """
    if config.format not in FORMATS:
        raise ValueError(f"--format must be one of {FORMATS}, got {config.format!r}")
    if config.format == "builtin":
        from domains.news.demo import build_emoji_outofcontext

        return read_jsonl_posts(build_emoji_outofcontext(), source_dataset="builtin-emoji-ooc")
    if not config.input:
        raise ValueError(f"--input is required for --format {config.format}")
    source = Path(config.input)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file or folder")
    if config.format == "jsonl":
        return read_jsonl_posts(source)
    if config.format == "fakenewsnet":
        return read_fakenewsnet(source)
    if config.format == "fakeddit":
        return read_fakeddit(source, config.image_dir)
    return read_weibo(source)


def main(argv: list[str] | None = None) -> dict:
    """Run the command; returns the ingest report."""
    from shared.cli import parse_config

    config = parse_config(IngestConfig, argv, prog="python -m domains.news.ingest")
    report = write_post_shards(
        read_posts(config),
        config.out_dir,
        max_samples_per_shard=config.max_samples_per_shard,
        default_split=config.default_split,
        overwrite=config.overwrite,
    )
    summary = report.as_dict()
    print(f"read {summary['read']} posts, wrote {summary['written']}, dropped {summary['dropped'] or 'none'}")
    print(f"shards, manifest.json and ingest_report.json in {config.out_dir}")
    print(f"next: python -m domains.news.train --data {config.out_dir}")
    return summary


if __name__ == "__main__":
    main()
