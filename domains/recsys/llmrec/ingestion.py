"""The ingest step (``domains.recsys.ingest``'s work): validate an input and write it as Parquet tables.

Accepts a folder of RecBole atomic files (``.inter`` and optional ``.item/.user/.kg/.link``) or LLMRec's
released layout (``train/val/test.json`` …). Every file is validated (headers, field counts, numbers,
duplicates, unknown ids; pickles only through the restricted loader) and the result is written into
``runs/recsys/<run_name>/tables/`` by :func:`domains.recsys.llmrec.parquet_tables.write_tables`. The split
follows the same seeded rule as training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from domains.recsys.llmrec.datasets import MOVIELENS_100K, DatasetConfig, load_dataset
from domains.recsys.llmrec.parquet_tables import TABLE_FILES, write_tables
from shared.run_folder import CONFIG_FILE, RunFolder

COMMAND = "domains.recsys.ingest"
TABLES_DIR = "tables"
"""The tables' folder inside the run folder."""


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


@dataclass(frozen=True)
class IngestedTables:
    """What :func:`ingest_tables` wrote.

    Attributes:
        run: the finished run folder.
        tables_dir: its ``tables/`` folder (``interactions.parquet``, ``items.parquet``, ``manifest.json``).
        counts: users, items, train/val/test interactions and items with attributes.
    """

    run: RunFolder
    tables_dir: Path
    counts: dict[str, int]


def ingest_tables(config: IngestConfig) -> IngestedTables:
    """Reads and validates ``config.input``, then writes its tables into a new run folder.

    The input is read completely before the run folder is created, so bad input leaves nothing behind.

    Raises:
        UserError: the input is missing or a split setting is invalid.
        DataFormatError: a file of the input is malformed (file and line named).
        NothingProduced: the input holds no training interaction.
    """
    data, _ = load_dataset(config.input, config.dataset)
    run = RunFolder.create("recsys", config.run_name, config.runs_root)
    run.clear_finished()
    run.save_config(config)
    tables_dir = run.path / TABLES_DIR
    counts = write_tables(data, tables_dir)
    run.mark_finished(
        COMMAND,
        outputs=[CONFIG_FILE, *(f"{TABLES_DIR}/{name}" for name in TABLE_FILES)],
        summary=counts,
    )
    return IngestedTables(run=run, tables_dir=tables_dir, counts=counts)
