"""User and item embeddings into the DuckDB store: ``python -m domains.recsys.embed --run runs/recsys/demo``.

Writes the final representations ``h_u`` (modality ``user``) and ``h_i`` (modality ``item``) of a trained run,
plus a ``samples_recsys`` row per item (title, text) and user, so ``EmbeddingStore.nearest`` finds similar
items/users. The store lives under ``runs/`` (never in the repository: MovieLens rows may not be redistributed).
The work is :func:`domains.recsys.llmrec.store_export.embed_run`.
"""

from __future__ import annotations

from domains.recsys.llmrec.store_export import EmbedConfig, embed_run
from shared.cli import parse_config, run_command


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    config = parse_config(EmbedConfig, argv, prog="python -m domains.recsys.embed")
    export = embed_run(config)  # under torchrun: rows split between ranks, rank 0 writes each vector once
    if export is None:  # not rank 0: its rows went to rank 0
        return
    print(f"Wrote {export.users} user and {export.items} item vectors to {config.store}")
    print(
        "Next: python -c \"from shared.store import EmbeddingStore; print(EmbeddingStore('"
        f"{config.store}').nearest(sample_id='{export.first_item_sample_id}', k=5, "
        "domain='recsys', modality='item'))\""
    )


if __name__ == "__main__":
    run_command(main)
