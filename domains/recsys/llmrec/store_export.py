"""A trained run's user and item vectors into the DuckDB embedding store.

The final representations ``h_u`` (modality ``user``) and ``h_i`` (modality ``item``) are written with a
``samples_recsys`` row per item (title, text) and user, so ``EmbeddingStore.nearest`` finds similar
items/users. The store lives under ``runs/`` (never in the repository: MovieLens rows may not be
redistributed). :func:`embed_run` is ``domains.recsys.embed``'s work.

Under ``torchrun`` the rows are split between ranks (:func:`shared.distributed.rows_across_ranks`): each rank
hands over its contiguous share of the user and item rows, rank 0 receives them in order and writes each
vector once. The representations come from whole-graph propagation, which every rank runs in full (a row's
``h`` needs every neighbour's); only the rows handed over are split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from domains.recsys.llmrec.training import WEIGHTS_FILE, LoadedRun, load_run
from shared.distributed import main_process_first, rows_across_ranks
from shared.run_folder import RunFolder, sha256_of

DEFAULT_MODEL_NAME = "llmrec-lightgcn"


@dataclass
class EmbedConfig:
    """Write a trained run's user and item embeddings into the embedding store."""

    run: str = "runs/recsys/demo"
    """Run folder written by domains.recsys.train."""
    store: str = "runs/embeddings.duckdb"
    """DuckDB embedding store (created if missing)."""
    model_name: str = DEFAULT_MODEL_NAME
    """Model name recorded with every vector."""


@dataclass(frozen=True)
class StoreExport:
    """What :func:`embed_run` wrote.

    Attributes:
        users: user vectors written.
        items: item vectors written.
        first_item_sample_id: the store's sample id of the data's first item (``<dataset>:item:<id>``), for
            a nearest-neighbour query to try.
    """

    users: int
    items: int
    first_item_sample_id: str


def embed_into_store(
    loaded: LoadedRun,
    store_path: str | Path,
    model_name: str = DEFAULT_MODEL_NAME,
    vectors: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[int, int]:
    """Writes user and item vectors (sample ids ``<dataset>:user:<id>`` / ``<dataset>:item:<id>``).

    The run is registered under its run id (``recsys/<run-name>``) with its ``config.yaml``; the model
    version is the first 12 hex digits of the weights' SHA-256.

    Args:
        loaded: The trained run.
        store_path: The DuckDB store.
        model_name: Recorded with every vector.
        vectors: ``(users, items)`` already computed (e.g. gathered across ranks); computed here when None.

    Returns:
        (users written, items written).
    """
    from shared.store import EmbeddingStore

    data = loaded.data
    checkpoint_sha = sha256_of(loaded.run_dir / WEIGHTS_FILE)
    version = checkpoint_sha[:12]
    run_id = RunFolder(loaded.run_dir).run_id
    if vectors is None:
        user_tensor, item_tensor = loaded.model.user_item_embeddings()
        vectors = (user_tensor.float().cpu().numpy(), item_tensor.float().cpu().numpy())
    users, items = vectors
    user_ids = [f"{data.name}:user:{raw}" for raw in data.user_ids]
    item_ids = [f"{data.name}:item:{raw}" for raw in data.item_ids]
    store = EmbeddingStore(store_path)
    try:
        with store.writing() as writer:
            writer.register_run(run_id, "recsys", model_name, version, loaded.config, checkpoint_sha)
            common = {"domain": "recsys", "model_name": model_name, "model_version": version, "run_id": run_id}
            writer.write_embeddings(modality="user", sample_ids=user_ids, vectors=users, **common)
            writer.write_embeddings(modality="item", sample_ids=item_ids, vectors=items, **common)
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


def embed_run(config: EmbedConfig) -> StoreExport | None:
    """Writes the user and item vectors of the run ``config.run`` into the store ``config.store``.

    Under torchrun every rank computes its share of the rows and rank 0 writes them all, once.

    Returns:
        What was written, on rank 0; None on the other ranks.

    Raises:
        UserError: ``config.run`` is not a finished ``domains.recsys.train`` run.
    """
    with main_process_first("loading the trained run"):  # rank 0 builds any feature cache, the others read it
        loaded = load_run(config.run)
    user_tensor, item_tensor = loaded.model.user_item_embeddings()
    n_users = int(user_tensor.shape[0])
    every_row = np.concatenate([user_tensor.float().cpu().numpy(), item_tensor.float().cpu().numpy()])
    gathered = rows_across_ranks(len(every_row), lambda rows: {"vector": every_row[rows.start : rows.stop]})
    if gathered is None:
        return None
    vectors = (gathered["vector"][:n_users], gathered["vector"][n_users:])
    users, items = embed_into_store(loaded, config.store, config.model_name, vectors)
    data = loaded.data
    return StoreExport(users=users, items=items, first_item_sample_id=f"{data.name}:item:{data.item_ids[0]}")
