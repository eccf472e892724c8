"""``python -m domains.news.ingest``: raw news posts (or the built-in set) → webdataset shards + manifest."""

from __future__ import annotations

from typing import Any

from domains.news.ingestion import IngestConfig, ingest_posts
from shared.cli import parse_config, run_command

__all__ = ["IngestConfig", "main"]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the command; returns the ingest report."""
    config = parse_config(IngestConfig, argv, prog="python -m domains.news.ingest")
    summary = ingest_posts(config)
    print(f"read {summary['read']} posts, wrote {summary['written']}, dropped {summary['dropped'] or 'none'}")
    print(f"shards, manifest.json and ingest_report.json in {config.out_dir}")
    print(f"next: python -m domains.news.train --input {config.out_dir}")
    return summary


if __name__ == "__main__":
    run_command(main)
