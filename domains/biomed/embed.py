"""Encode a shard set into the DuckDB embedding store (image and caption vectors with their identity).

    python -m domains.biomed.embed --run runs/biomed/demo --input runs/biomed/demo_corpus/test

Each vector is stored with the sample key, the model name/version and run id, and PHI-free metadata.
The work is :func:`domains.biomed.embedding.embed_to_store`.
"""

from __future__ import annotations

from collections.abc import Sequence

from domains.biomed.embedding import EmbedConfig, embed_to_store
from shared.cli import parse_config, run_command

__all__ = ["EmbedConfig", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: ``python -m domains.biomed.embed --help``; returns the number of samples."""
    config = parse_config(EmbedConfig, argv, prog="python -m domains.biomed.embed")
    result = embed_to_store(config)
    count = result.num_samples
    print(f"Wrote {count} image and {count} text vectors to {config.store} "
          f"(run {result.run_id}, model {result.model_name} {result.model_version})")  # fmt: skip
    print(
        'Next: query the store, e.g. python -c "from shared.store import EmbeddingStore; '
        f"print(EmbeddingStore('{config.store}').nearest(sample_id='<a key>', domain='biomed', modality='image'))\""
    )
    return count


if __name__ == "__main__":
    run_command(main)
