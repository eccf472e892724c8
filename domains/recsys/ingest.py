"""Validate a dataset and write it as tables: ``python -m domains.recsys.ingest --input <folder>``.

Accepts a folder of RecBole atomic files (``.inter`` and optional ``.item/.user/.kg/.link``) or LLMRec's
released layout (``train/val/test.json`` …). Every file is validated (headers, field counts, numbers,
duplicates, unknown ids; pickles only through the restricted loader) and the result is written as Parquet
into ``runs/recsys/<run_name>/tables/``: ``interactions.parquet`` (raw user/item ids with their split),
``items.parquet`` (id, title, text, attributes as JSON) and ``manifest.json`` (counts). The split follows
the same seeded rule as training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from domains.recsys.llmrec.datasets import MOVIELENS_100K, DatasetConfig, load_dataset
from domains.recsys.llmrec.parquet_tables import TABLE_FILES, write_tables
from shared.cli import parse_config, run_command
from shared.run_folder import CONFIG_FILE, RunFolder

TABLES_DIR = "tables"


@dataclass
class IngestConfig:
    """Validate RecBole atomic files or an LLMRec layout and write Parquet tables."""

    input: str = MOVIELENS_100K
    """'movielens-100k' (built in), a folder of RecBole atomic files, or a folder in LLMRec's layout."""
    dataset: DatasetConfig = field(default_factory=lambda: DatasetConfig(text_features=False))
    """How the input is read and split (the same seeded rule as training)."""
    run_name: str = "ingest"
    """Output goes to runs/recsys/<run_name>/tables/."""
    runs_root: str = "runs"
    """Root folder of run folders."""


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    config = parse_config(IngestConfig, argv, prog="python -m domains.recsys.ingest")
    data, _ = load_dataset(config.input, config.dataset)
    run = RunFolder.create("recsys", config.run_name, config.runs_root)
    run.clear_finished()
    run.save_config(config)
    counts = write_tables(data, run.path / TABLES_DIR)
    run.mark_finished(
        "domains.recsys.ingest",
        outputs=[CONFIG_FILE, *(f"{TABLES_DIR}/{name}" for name in TABLE_FILES)],
        summary=counts,
    )
    print(f"Validated {config.input}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"Wrote {run.path / TABLES_DIR}/interactions.parquet, items.parquet, manifest.json")
    hint = "" if config.input == MOVIELENS_100K else f" --input {config.input}"
    print(f"Next: python -m domains.recsys.train{hint}")


if __name__ == "__main__":
    run_command(main)
