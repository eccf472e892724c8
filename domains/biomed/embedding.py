"""Encoding a shard set into the DuckDB embedding store: image and caption vectors with their identity.

Each vector is stored with the sample key, the model name/version and run id, and PHI-free metadata
(caption, image set, concept labels, licence); the samples table gets one row per key.
:func:`embed_to_store` is the whole ``python -m domains.biomed.embed`` step (an :class:`EmbedConfig`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from domains.biomed.biomedica import BiomedicaDecoder, eval_stream
from domains.biomed.evaluation import EncodedShards, encode_shards
from domains.biomed.model import load_trained_model
from shared.distributed import ensure_process_group, gather_to_main
from shared.user_errors import NothingProduced, UserError

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
    across_ranks: bool = False,
) -> int:
    """Encode ``shards`` and write image and text vectors to the store; returns the number of samples.

    With ``across_ranks`` under torchrun every rank must call it: each encodes its share of the samples and
    rank 0 writes every vector once (the other ranks return 0).

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
        across_ranks: Split the encoding between the ranks of a torchrun job (all ranks call this).

    Raises:
        UserError: A missing shard source, a store file DuckDB cannot open.
        NothingProduced: The shard set yielded no sample (nothing is written).
    """
    import pandas as pd

    from shared.store import EmbeddingStore

    decoder = BiomedicaDecoder(loaded.preprocess_val, loaded.tokenizer)
    stream = eval_stream(shards, decoder, batch_size, flag)
    if across_ranks and ensure_process_group().enabled:
        stream.node_split = "sample"  # each rank encodes every world-size-th sample; rank 0 writes them all
        parts = gather_to_main(encode_shards_or_none(model, stream, device))
        if parts is None:
            return 0
        encoded = concatenate_encoded([part for part in parts if part is not None], f"{flag} {shards}")
    else:
        encoded = encode_shards(model, stream, device, source=f"{flag} {shards}")
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


def encode_shards_or_none(model: Any, stream: Any, device: Any) -> EncodedShards | None:
    """:func:`encode_shards`, or None when this rank's share of the stream is empty."""
    try:
        return encode_shards(model, stream, device)
    except NothingProduced:
        return None


def concatenate_encoded(parts: list[EncodedShards], source: str) -> EncodedShards:
    """The ranks' encoded shares as one :class:`EncodedShards` (rank order).

    Raises:
        NothingProduced: No rank encoded a sample.
    """
    if not parts:
        raise NothingProduced(f"{source}: no sample could be read on any rank; check the path")
    return EncodedShards(
        [key for part in parts for key in part.keys],
        [caption for part in parts for caption in part.captions],
        [label for part in parts for label in part.labels],
        [meta for part in parts for meta in part.metadata],
        np.concatenate([part.image for part in parts]),
        np.concatenate([part.text for part in parts]),
    )


@dataclass
class EmbedConfig:
    """Encode a BIOMEDICA-format shard set into the embedding store."""

    run: str | None = None
    """Pretrain run folder whose model encodes (config.yaml + model.safetensors). Default: runs/biomed/demo unless --model is given."""
    model: str | None = None
    """Instead of --run: an open_clip model that is not a run folder: a preset, a JSON config, an exported or hub-layout folder (local-dir:DIR) or hf-hub:org/repo."""
    input: str = "runs/biomed/demo_corpus/test"
    """Shard set to encode: a folder, a brace pattern or a URL (join sources with '::')."""
    store: str = "runs/embeddings.duckdb"
    """DuckDB embedding store (created if missing)."""
    run_id: str = ""
    """Run id recorded with the vectors in the store; empty = the run's id (biomed/<run name>), or the model folder's name."""
    model_name: str = ""
    """Model name recorded with the vectors; empty = 'biomed-clip:<model source>'."""
    model_version: str = ""
    """Model version; empty = the first 12 hex digits of the weights' SHA-256."""
    batch_size: int = 64
    """Samples per encoding batch."""
    device: str = "auto"
    """cpu, cuda or auto."""


@dataclass
class EmbedResult:
    """What :func:`embed_to_store` wrote."""

    num_samples: int
    """Samples encoded (each has one image and one text vector in the store)."""
    run_id: str
    """Run id recorded with the vectors."""
    model_name: str
    """Model name recorded with the vectors."""
    model_version: str
    """Model version recorded with the vectors."""


def embed_to_store(config: EmbedConfig) -> EmbedResult:
    """Encode ``config.input`` with the model ``config`` names and write the vectors to ``config.store``.

    Raises:
        UserError: A bad batch size, a folder given as the store, a model or shard source that names
            nothing loadable, a store file DuckDB cannot open.
        NothingProduced: The shard set yielded no sample (nothing is written).
    """
    from shared.device import pick_device

    if config.batch_size < 1:
        raise UserError(f"--batch_size: must be >= 1, got {config.batch_size}")
    if Path(config.store).is_dir():
        raise UserError(f"--store {config.store}: is a folder; expected a DuckDB file")
    device = pick_device(config.device)
    trained = load_trained_model(config.run, config.model, device)
    sha = trained.weights_sha256()
    run_id = config.run_id or (
        trained.run.run_id if trained.run else Path(trained.source.removeprefix("local-dir:")).name or "biomed"
    )
    model_name = config.model_name or trained.name
    version = config.model_version or (sha[:12] if sha else "untrained")
    produced_by = {"run": str(trained.run.path) if trained.run else None, "model": config.model, "shards": config.input}
    count = embed_into_store(trained.model, trained.loaded, config.input, config.store, run_id, model_name, version,
                             produced_by, sha, config.batch_size, device, flag="--input",
                             across_ranks=True)  # fmt: skip
    return EmbedResult(count, run_id, model_name, version)
