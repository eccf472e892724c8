"""User and item embeddings into the DuckDB store: ``python -m domains.recsys.embed --run runs/recsys/demo``.

Writes the final representations ``h_u`` (modality ``user``) and ``h_i`` (modality ``item``) of a trained run,
plus a ``samples_recsys`` row per item (title, text) and user, so ``EmbeddingStore.nearest`` finds similar
items/users. The store lives under ``runs/`` (never in the repository: MovieLens rows may not be redistributed).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from domains.recsys.recommender import LoadedRun, load_run
from shared.cli import parse_config


@dataclass
class EmbedConfig:
    """Write a trained run's user and item embeddings into the embedding store."""

    run: str = "runs/recsys/demo"
    """Run folder written by domains.recsys.train."""
    store: str = "runs/embeddings.duckdb"
    """DuckDB embedding store (created if missing)."""
    model_name: str = "llmrec-lightgcn"
    """Model name recorded with every vector."""


def embed_into_store(loaded: LoadedRun, store_path: str | Path, model_name: str = "llmrec-lightgcn") -> tuple[int, int]:
    """Writes user and item vectors (sample ids ``<dataset>:user:<id>`` / ``<dataset>:item:<id>``).

    Returns:
        (users written, items written).
    """
    from shared.store import EmbeddingStore

    data = loaded.data
    weights = loaded.run_dir / "model.safetensors"
    checkpoint_sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    version = checkpoint_sha[:12]
    run_id = f"recsys-{loaded.run_dir.name}-{version}"
    users, items = loaded.model.user_item_embeddings()
    user_ids = [f"{data.name}:user:{raw}" for raw in data.user_ids]
    item_ids = [f"{data.name}:item:{raw}" for raw in data.item_ids]
    store = EmbeddingStore(store_path)
    try:
        with store.writing() as writer:
            writer.register_run(run_id, "recsys", model_name, version, loaded.config, checkpoint_sha)
            common = {"domain": "recsys", "model_name": model_name, "model_version": version, "run_id": run_id}
            writer.write_embeddings(modality="user", sample_ids=user_ids, vectors=users.float().cpu().numpy(), **common)
            writer.write_embeddings(modality="item", sample_ids=item_ids, vectors=items.float().cpu().numpy(), **common)
            samples = pd.DataFrame(
                {
                    "sample_id": item_ids + user_ids,
                    "dataset": data.name,
                    "kind": ["item"] * len(item_ids) + ["user"] * len(user_ids),
                    "raw_id": list(data.item_ids) + list(data.user_ids),
                    "title": list(data.item_titles) + [""] * len(user_ids),
                    "text": list(data.item_texts) + [""] * len(user_ids),
                }
            )
            writer.upsert_samples("recsys", samples)
    finally:
        store.close()
    return len(user_ids), len(item_ids)


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    config = parse_config(EmbedConfig, argv, prog="python -m domains.recsys.embed")
    loaded = load_run(config.run)
    n_users, n_items = embed_into_store(loaded, config.store, config.model_name)
    print(f"Wrote {n_users} user and {n_items} item vectors to {config.store}")
    print(
        "Next: python -c \"from shared.store import EmbeddingStore; print(EmbeddingStore('"
        f"{config.store}').nearest(sample_id='{loaded.data.name}:item:{loaded.data.item_ids[0]}', k=5, "
        "domain='recsys', modality='item'))\""
    )


if __name__ == "__main__":
    main()
