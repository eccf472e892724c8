"""Encoding a shard set into the DuckDB embedding store: image and caption vectors with their identity.

Each vector is stored with the sample key, the model name/version and run id, and PHI-free metadata
(caption, image set, concept labels, licence); the samples table gets one row per key.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from domains.biomed.biomedica import BiomedicaDecoder, eval_stream
from domains.biomed.evaluation import encode_shards
from shared.user_errors import UserError

DOMAIN = "biomed"


@contextlib.contextmanager
def _store_file_errors_named(store_path: str | Path) -> Iterator[None]:
    """A store file DuckDB cannot open (not a database, a newer format) is the user's: name it."""
    import duckdb

    try:
        yield
    except duckdb.IOException as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"--store {store_path}: not a usable DuckDB store ({detail})") from error


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
    flag: str = "--input",
) -> int:
    """Encode ``shards`` and write image and text vectors to the store; returns the number of samples.

    Args:
        model: A :class:`~domains.biomed.model.BiomedClipModel`.
        loaded: Its :class:`~domains.biomed.open_clip_loading.LoadedOpenClip` (transform, tokenizer).
        shards: Shard set (folder, brace pattern, URL; joined with ``::``).
        store_path: The DuckDB store (created if missing).
        run_id: Run id recorded with the vectors (a run folder's ``RunFolder.run_id``).
        model_name: Model name recorded with the vectors.
        model_version: Model version (e.g. the first 12 hex digits of the weights' SHA-256).
        run_config: What produced the model, recorded with the run.
        checkpoint_sha256: SHA-256 of the weights.
        batch_size: Samples per encoding batch.
        device: Where to encode.
        flag: The flag that named ``shards`` (for error messages).

    Raises:
        UserError: A missing shard source, a store file DuckDB cannot open.
        NothingProduced: The shard set yielded no sample (nothing is written).
    """
    import pandas as pd

    from shared.store import EmbeddingStore

    decoder = BiomedicaDecoder(loaded.preprocess_val, loaded.tokenizer)
    encoded = encode_shards(model, eval_stream(shards, decoder, batch_size, flag), device, source=f"{flag} {shards}")
    metadata = [{"caption": caption, **meta} for caption, meta in zip(encoded.captions, encoded.metadata)]
    store = EmbeddingStore(store_path)
    try:
        with _store_file_errors_named(store_path), store.writing() as writer:
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
