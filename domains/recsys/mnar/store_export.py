"""User and item factors of trained MNAR models into the DuckDB embedding store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from shared.store import EmbeddingStore


def write_factor_embeddings(
    store_path: str | Path,
    run_id: str,
    dataset_name: str,
    models: list[tuple[str, str, Any]],
    user_ids: np.ndarray,
    item_ids: np.ndarray,
) -> int:
    """Write user and item factors of ``(model_name, model_version, PointwiseMF)`` triples; returns rows written.

    Each model is registered as run ``<run_id>/<model_name>/<model_version>``; sample ids are
    ``<dataset>:<user|item>:<original id>``. All-zero factors (rows never updated) have no direction and are
    skipped.

    Args:
        store_path: the DuckDB file.
        run_id: the run folder's id (``recsys/<run-name>``).
        dataset_name: data name in the sample ids.
        models: the models and their names.
        user_ids: original id of each user row.
        item_ids: original id of each item row.
    """
    store = EmbeddingStore(store_path)
    written = 0
    with store.writing() as writer:
        for model_name, model_version, model in models:
            model_run_id = f"{run_id}/{model_name}/{model_version}"
            writer.register_run(model_run_id, "recsys", model_name, model_version, {"dataset": dataset_name})
            for modality, factors, ids in (
                ("user", model.user_factors.detach().cpu().numpy(), user_ids),
                ("item", model.item_factors.detach().cpu().numpy(), item_ids),
            ):
                keep = np.linalg.norm(factors, axis=1) > 1e-12
                written += writer.write_embeddings(
                    domain="recsys",
                    modality=modality,
                    model_name=model_name,
                    model_version=model_version,
                    run_id=model_run_id,
                    sample_ids=[f"{dataset_name}:{modality}:{i}" for i in np.asarray(ids)[keep]],
                    vectors=factors[keep],
                )
    return written
