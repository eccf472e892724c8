"""Validated interactions as Parquet tables (``domains.recsys.ingest``'s output).

``interactions.parquet`` (raw user/item ids with their split), ``items.parquet`` (id, title, text,
attributes as JSON) and ``manifest.json`` (counts). The split follows the same seeded rule as training.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from domains.recsys.llmrec.interactions import InteractionData
from shared.atomic_files import atomic_output, write_json_atomically

TABLE_FILES = ("interactions.parquet", "items.parquet", "manifest.json")


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    with atomic_output(path, suffix=".parquet") as temporary:
        frame.to_parquet(temporary, index=False)


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
