"""Export of a trained detector's post embeddings and fake scores into the core's DuckDB embedding store.

Three vectors per post: ``post`` (the fused 64-d FND-CLIP feature the classifier reads), ``text`` and
``image`` (the CLIP embeddings). The ``samples_news`` table gets each post's text, split, true label, fake
probability and CLIP similarity. The run is registered under its run-folder id (``news/<run-name>``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domains.news.data import LABEL_NAMES
from domains.news.feature_cache import DEFAULT_CACHE_DIR, load_post_table, require_shard_folder
from shared.user_errors import UserError

MODEL_NAME = "fnd-clip"
_DUCKDB_MAGIC = b"DUCK"


@dataclass
class EmbedConfig:
    """Write news post embeddings and scores into the embedding store."""

    run: str = "runs/news/demo"
    """Run folder written by domains.news.train."""
    input: str | None = None
    """Shard folder (default: the one the run trained on)."""
    store: str = "runs/embeddings.duckdb"
    """DuckDB embedding store file."""
    weights: str = "best"
    """best (validation-selected) or last."""
    cache_dir: str | None = DEFAULT_CACHE_DIR
    """Frozen-feature cache (None: recompute)."""
    device: str = "auto"
    """auto, cpu or cuda."""


def check_store_path(path: str | Path, flag: str = "--store") -> Path:
    """``path`` if it is a DuckDB file or does not exist yet (a new store).

    Raises:
        UserError: a folder, or a file that is not a DuckDB database.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a folder; expected a DuckDB file (e.g. runs/embeddings.duckdb)")
    if path.exists():
        with path.open("rb") as stream:
            header = stream.read(12)
        if header[8:12] != _DUCKDB_MAGIC:
            raise UserError(f"{flag} {path}: not a DuckDB database file")
    return path


def export_run(config: EmbedConfig) -> dict[str, Any]:
    """Write a trained run's post vectors and scores into the store; returns what was written.

    Re-running replaces the run's rows (the store's keys are idempotent), never duplicates them.

    Raises:
        UserError: a bad ``--weights``, ``--store``, run folder or shard folder (named).
    """
    import pandas as pd

    from domains.news.detector_metrics import predict_rows, trained_input
    from domains.news.trained_detector import check_weights, load_detector, open_detector_run, weights_file
    from shared.device import pick_device
    from shared.distributed import main_process_first, rows_across_ranks
    from shared.run_folder import sha256_of
    from shared.store import EmbeddingStore

    check_weights(config.weights)
    store_path = check_store_path(config.store)
    folder = open_detector_run(config.run)
    trained = folder.load_config()
    shards = require_shard_folder(config.input or trained_input(trained), "--input")
    detector = load_detector(folder.path, config.weights, device=pick_device(config.device))
    with main_process_first("building the feature cache"):  # under torchrun: rank 0 encodes, the others read
        table = load_post_table(shards, detector.encoders, config.cache_dir)
    features = detector.encoders.finish(table.base)
    # Under torchrun each rank scores its share of the posts; rank 0 gets them all and writes each once.
    predicted = rows_across_ranks(
        len(table.keys), lambda rows: predict_rows(detector.model, features, list(rows), detector.encoders.device)
    )
    if predicted is None:
        return {"run_id": folder.run_id, "model_name": MODEL_NAME, "model_version": "", "written": {}}
    checkpoint_sha = sha256_of(weights_file(folder.path, config.weights))
    run_id = folder.run_id
    model_version = checkpoint_sha[:12]
    prob_fake = predicted["probs"][:, 1]
    metadata = [
        {"prob_fake": float(p), "label": LABEL_NAMES[int(y)] if y >= 0 else None}
        for p, y in zip(prob_fake, table.labels)
    ]
    written = {}
    store = EmbeddingStore(store_path)
    try:
        with store.writing() as writer:
            writer.register_run(
                run_id, "news", MODEL_NAME, model_version, config=trained, checkpoint_sha256=checkpoint_sha
            )
            for modality, vectors in (
                ("post", predicted["fused"]),
                ("text", features["clip_text"].numpy()),
                ("image", features["clip_image"].numpy()),
            ):
                written[modality] = writer.write_embeddings(
                    domain="news",
                    modality=modality,
                    model_name=MODEL_NAME,
                    model_version=model_version,
                    run_id=run_id,
                    sample_ids=table.keys,
                    vectors=vectors,
                    metadata=metadata,
                )
            frame = pd.DataFrame(
                {
                    "sample_id": table.keys,
                    "split": [s or "" for s in table.splits],
                    "label": [LABEL_NAMES[int(y)] if y >= 0 else "" for y in table.labels],
                    "text": table.texts,
                    "source_dataset": [m.get("source_dataset", "") for m in table.meta],
                    "prob_fake": prob_fake.astype(float),
                    "clip_similarity": predicted["similarity"].astype(float),
                }
            )
            writer.upsert_samples("news", frame)
    finally:
        store.close()
    return {"run_id": run_id, "model_name": MODEL_NAME, "model_version": model_version, "written": written}
