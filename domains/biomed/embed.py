"""Encode a shard set into the DuckDB embedding store (image and caption vectors with their identity).

Run ``python -m domains.biomed.embed --model runs/biomed/demo --shards runs/biomed/demo_corpus/test``.
Each vector is stored with the sample key, the model name/version and run id, and PHI-free metadata
(caption, image set, concept labels, licence); the samples table gets one row per key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DOMAIN = "biomed"


@dataclass
class EmbedConfig:
    """Encode a BIOMEDICA-format shard set into the embedding store."""

    model: str = "runs/biomed/demo"
    """A pretrain run folder, an exported local-dir folder, or a model source."""
    shards: str = "runs/biomed/demo_corpus/test"
    """Shard set: folder, brace pattern or URL (join sources with '::')."""
    store: str = "runs/embeddings.duckdb"
    """DuckDB embedding store (created if missing)."""
    run_id: str = ""
    """Run id recorded with the vectors; empty = the model folder's name."""
    model_name: str = ""
    """Model name recorded with the vectors; empty = 'biomed-clip:<model source>'."""
    model_version: str = ""
    """Model version; empty = the first 12 hex digits of the weights' SHA-256."""
    batch_size: int = 64
    """Samples per encoding batch."""
    device: str = "auto"
    """cpu, cuda or auto."""


def file_sha256(path: str | Path) -> str:
    """SHA-256 hex digest of a file (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def embed_into_store(
    model: Any,
    loaded: Any,
    shards: str,
    store_path: str | Path,
    run_id: str,
    model_name: str,
    model_version: str,
    run_config: dict[str, Any] | None = None,
    checkpoint_sha256: str | None = None,
    batch_size: int = 64,
    device: Any = "cpu",
) -> int:
    """Encode ``shards`` and write image and text vectors to the store; returns the number of samples."""
    import pandas as pd

    from domains.biomed.data import BiomedicaDecoder
    from domains.biomed.evaluate import encode_shards, make_eval_stream
    from shared.store import EmbeddingStore

    decoder = BiomedicaDecoder(loaded.preprocess_val, loaded.tokenizer)
    encoded = encode_shards(model, make_eval_stream(shards, decoder, batch_size), device)
    metadata = [{"caption": caption, **meta} for caption, meta in zip(encoded.captions, encoded.metadata)]
    store = EmbeddingStore(store_path)
    try:
        with store.writing() as writer:
            writer.register_run(run_id, DOMAIN, model_name, model_version, run_config or {}, checkpoint_sha256)
            for modality, vectors in (("image", encoded.image), ("text", encoded.text)):
                writer.write_embeddings(domain=DOMAIN, modality=modality, model_name=model_name,
                                        model_version=model_version, run_id=run_id, sample_ids=encoded.keys,
                                        vectors=vectors, metadata=metadata)  # fmt: skip
            frame = pd.DataFrame({"sample_id": encoded.keys, "caption": encoded.captions,
                                  "image_set": [m.get("image_set", "") for m in encoded.metadata],
                                  "concept": [", ".join(map(str, m.get("image_primary_label", []))) for m in encoded.metadata]})  # fmt: skip
            writer.upsert_samples(DOMAIN, frame)
    finally:
        store.close()
    return len(encoded.keys)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: ``python -m domains.biomed.embed --help``."""
    from shared.cli import parse_config
    from shared.device import pick_device

    config = parse_config(EmbedConfig, argv, prog="python -m domains.biomed.embed")
    from domains.biomed.model import load_model_for_inference

    device = pick_device(config.device)
    model, loaded = load_model_for_inference(config.model, device)
    model_dir = Path(config.model)
    weights = model_dir / "model.safetensors"
    if not weights.is_file():
        weights = model_dir / "open_clip_model.safetensors"
    sha = file_sha256(weights) if weights.is_file() else None
    run_id = config.run_id or model_dir.name or "biomed"
    model_name = config.model_name or f"biomed-clip:{loaded.source}"
    version = config.model_version or (sha[:12] if sha else "untrained")
    count = embed_into_store(model, loaded, config.shards, config.store, run_id, model_name, version,
                             {"model": config.model, "shards": config.shards}, sha, config.batch_size, device)  # fmt: skip
    print(
        f"Wrote {count} image and {count} text vectors to {config.store} (run {run_id}, model {model_name} {version})"
    )
    print(
        'Next: query the store, e.g. python -c "from shared.store import EmbeddingStore; '
        f"print(EmbeddingStore('{config.store}').nearest(sample_id='<a key>', domain='biomed', modality='image'))\""
    )
    return count


if __name__ == "__main__":
    main()
