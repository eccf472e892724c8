"""``python -m domains.news.embed``: post embeddings and fake scores of a trained detector into the store.

Three vectors per post go into the core's DuckDB embedding store: ``post`` (the fused 64-d FND-CLIP
feature the classifier reads), ``text`` and ``image`` (the CLIP embeddings). The ``samples_news`` table
gets each post's text, split, true label, fake probability and CLIP similarity.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from domains.news.data import LABEL_NAMES


@dataclass
class EmbedConfig:
    """Write news post embeddings and scores into the embedding store."""

    run: str = "runs/news/demo"
    """Run folder written by domains.news.train."""
    data: str | None = None
    """Shard folder (default: the one the run trained on)."""
    store: str = "runs/embeddings.duckdb"
    """DuckDB embedding store file."""
    weights: str = "best"
    """best (validation-selected) or last."""
    cache_dir: str | None = ".tmp/news/features"
    """Frozen-feature cache (None: recompute)."""
    device: str = "auto"
    """auto, cpu or cuda."""


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command entry point; returns counts of what was written."""
    import pandas as pd

    from domains.news.detector import load_detector, load_post_table
    from domains.news.train import predict_rows
    from shared.cli import parse_config
    from shared.device import pick_device
    from shared.store import EmbeddingStore

    config = parse_config(EmbedConfig, argv, prog="python -m domains.news.embed")
    run_dir = Path(config.run)
    trained = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    detector = load_detector(run_dir, config.weights, device=pick_device(config.device))
    data = config.data or trained["data"]
    table = load_post_table(data, detector.encoders, config.cache_dir)
    features = detector.encoders.finish(table.base)
    predicted = predict_rows(detector.model, features, list(range(len(table.keys))), detector.encoders.device)
    weights_file = (
        run_dir / "checkpoints" / "best.safetensors" if config.weights == "best" else run_dir / "model.safetensors"
    )
    checkpoint_sha = hashlib.sha256(weights_file.read_bytes()).hexdigest()
    run_id = f"news-{run_dir.name}"
    model_name = "fnd-clip"
    model_version = checkpoint_sha[:12]
    prob_fake = predicted["probs"][:, 1]
    store = EmbeddingStore(config.store)
    try:
        metadata = [
            {"prob_fake": float(p), "label": LABEL_NAMES[int(y)] if y >= 0 else None}
            for p, y in zip(prob_fake, table.labels)
        ]
        written = {}
        with store.writing() as writer:
            writer.register_run(
                run_id, "news", model_name, model_version, config=trained, checkpoint_sha256=checkpoint_sha
            )
            for modality, vectors in (
                ("post", predicted["fused"]),
                ("text", features["clip_text"].numpy()),
                ("image", features["clip_image"].numpy()),
            ):
                written[modality] = writer.write_embeddings(
                    domain="news",
                    modality=modality,
                    model_name=model_name,
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
    print(f"wrote {written} vectors for run {run_id} (model {model_name} {model_version}) into {config.store}")
    print("next: streamlit run apps/explorer.py   (or query samples_news in DuckDB)")
    return {"run_id": run_id, "model_version": model_version, "written": written}


if __name__ == "__main__":
    main()
