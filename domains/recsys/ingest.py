"""Validate a dataset and write it as tables: ``python -m domains.recsys.ingest --source <folder>``.

Accepts a folder of RecBole atomic files (``.inter`` and optional ``.item/.user/.kg/.link``) or LLMRec's
released layout (``train/val/test.json`` …). Every file is validated (headers, field counts, numbers,
duplicates, unknown ids; pickles only through the restricted loader) and the result is written as Parquet:
``interactions.parquet`` (raw user/item ids with their split), ``items.parquet`` (id, title, text,
attributes as JSON) and ``manifest.json`` (counts). The split follows the same seeded rule as training.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from domains.recsys.data import InteractionData, write_bytes_atomically
from domains.recsys.recommender import MOVIELENS_100K, DatasetConfig, load_dataset, write_json_atomically
from shared.cli import parse_config, run_dir_for


@dataclass
class IngestConfig:
    """Validate RecBole atomic files or an LLMRec layout and write Parquet tables."""

    dataset: DatasetConfig = field(default_factory=lambda: DatasetConfig(text_features=False))
    """Source folder (or 'movielens-100k') and split settings."""
    run_name: str = "ingest"
    """Output goes to runs/recsys/<run_name>/tables/."""
    runs_root: str = "runs"
    """Root folder of run folders."""


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    write_bytes_atomically(path, buffer.getvalue())


def write_tables(data: InteractionData, out_dir: str | Path) -> dict[str, int]:
    """Writes ``interactions.parquet``, ``items.parquet`` and ``manifest.json``; returns the counts."""
    out_dir = Path(out_dir)
    parts = []
    for split in ("train", "val", "test"):
        pairs = getattr(data, split)
        parts.append(
            pd.DataFrame(
                {
                    "user_id": np.asarray(data.user_ids, dtype=object)[pairs[:, 0]],
                    "item_id": np.asarray(data.item_ids, dtype=object)[pairs[:, 1]],
                    "split": split,
                }
            )
        )
    interactions = pd.concat(parts, ignore_index=True)
    items = pd.DataFrame(
        {
            "item_id": data.item_ids,
            "title": data.item_titles,
            "text": data.item_texts,
            "attributes": [json.dumps(attributes, sort_keys=True) for attributes in data.item_attributes],
        }
    )
    _write_parquet(interactions, out_dir / "interactions.parquet")
    _write_parquet(items, out_dir / "items.parquet")
    counts = {
        "users": data.n_users,
        "items": data.n_items,
        "train": len(data.train),
        "val": len(data.val),
        "test": len(data.test),
        "items_with_attributes": sum(1 for attributes in data.item_attributes if attributes),
    }
    write_json_atomically(out_dir / "manifest.json", {"dataset": data.name, "counts": counts})
    return counts


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    config = parse_config(IngestConfig, argv, prog="python -m domains.recsys.ingest")
    data, _ = load_dataset(config.dataset)
    out = run_dir_for("recsys", config.run_name, config.runs_root) / "tables"
    counts = write_tables(data, out)
    print(f"Validated {config.dataset.source}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"Wrote {out}/interactions.parquet, items.parquet, manifest.json")
    source = config.dataset.source
    hint = "" if source == MOVIELENS_100K else f" --dataset.source {source}"
    print(f"Next: python -m domains.recsys.train{hint}")


if __name__ == "__main__":
    main()
