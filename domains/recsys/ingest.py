"""Validate a dataset and write it as tables: ``python -m domains.recsys.ingest --input <folder>``.

Accepts a folder of RecBole atomic files (``.inter`` and optional ``.item/.user/.kg/.link``) or LLMRec's
released layout (``train/val/test.json`` …). Every file is validated (headers, field counts, numbers,
duplicates, unknown ids; pickles only through the restricted loader) and the result is written as Parquet
into ``runs/recsys/<run_name>/tables/``: ``interactions.parquet`` (raw user/item ids with their split),
``items.parquet`` (id, title, text, attributes as JSON) and ``manifest.json`` (counts). The split follows
the same seeded rule as training. The work is :func:`domains.recsys.llmrec.ingestion.ingest_tables`.
"""

from __future__ import annotations

from domains.recsys.llmrec.datasets import MOVIELENS_100K
from domains.recsys.llmrec.ingestion import IngestConfig, ingest_tables
from shared.cli import parse_config, run_command


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    config = parse_config(IngestConfig, argv, prog="python -m domains.recsys.ingest")
    ingested = ingest_tables(config)
    print(f"Validated {config.input}: " + ", ".join(f"{k} {v}" for k, v in ingested.counts.items()))
    print(f"Wrote {ingested.tables_dir}/interactions.parquet, items.parquet, manifest.json")
    hint = "" if config.input == MOVIELENS_100K else f" --input {config.input}"
    print(f"Next: python -m domains.recsys.train{hint}")


if __name__ == "__main__":
    run_command(main)
