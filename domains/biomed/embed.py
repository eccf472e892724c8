"""Encode a shard set into the DuckDB embedding store (image and caption vectors with their identity).

    python -m domains.biomed.embed --run runs/biomed/demo --input runs/biomed/demo_corpus/test

Each vector is stored with the sample key, the model name/version and run id, and PHI-free metadata.
The work is :func:`domains.biomed.embedding.embed_into_store`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from domains.biomed.embedding import embed_into_store
from domains.biomed.model import load_trained_model
from shared.cli import parse_config, run_command
from shared.user_errors import UserError


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


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: ``python -m domains.biomed.embed --help``; returns the number of samples."""
    from shared.device import pick_device

    config = parse_config(EmbedConfig, argv, prog="python -m domains.biomed.embed")
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
                             produced_by, sha, config.batch_size, device, flag="--input")  # fmt: skip
    print(
        f"Wrote {count} image and {count} text vectors to {config.store} (run {run_id}, model {model_name} {version})"
    )
    print(
        'Next: query the store, e.g. python -c "from shared.store import EmbeddingStore; '
        f"print(EmbeddingStore('{config.store}').nearest(sample_id='<a key>', domain='biomed', modality='image'))\""
    )
    return count


if __name__ == "__main__":
    run_command(main)
