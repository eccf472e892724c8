"""User and item embeddings into the DuckDB store: ``python -m domains.recsys.embed --run runs/recsys/demo``.

Writes the final representations ``h_u`` (modality ``user``) and ``h_i`` (modality ``item``) of a trained run,
plus a ``samples_recsys`` row per item (title, text) and user, so ``EmbeddingStore.nearest`` finds similar
items/users. The store lives under ``runs/`` (never in the repository: MovieLens rows may not be redistributed).
"""

from __future__ import annotations

from dataclasses import dataclass

from domains.recsys.llmrec.store_export import DEFAULT_MODEL_NAME, embed_into_store
from domains.recsys.llmrec.training import load_run
from shared.cli import parse_config, run_command


@dataclass
class EmbedConfig:
    """Write a trained run's user and item embeddings into the embedding store."""

    run: str = "runs/recsys/demo"
    """Run folder written by domains.recsys.train."""
    store: str = "runs/embeddings.duckdb"
    """DuckDB embedding store (created if missing)."""
    model_name: str = DEFAULT_MODEL_NAME
    """Model name recorded with every vector."""


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
    run_command(main)
