"""``python -m domains.news.embed``: post embeddings and fake scores of a trained detector into the store.

Three vectors per post go into the core's DuckDB embedding store: ``post`` (the fused 64-d FND-CLIP
feature the classifier reads), ``text`` and ``image`` (the CLIP embeddings). The ``samples_news`` table
gets each post's text, split, true label, fake probability and CLIP similarity.
"""

from __future__ import annotations

from typing import Any

from domains.news.store_export import EmbedConfig, export_run
from shared.cli import parse_config, run_command

__all__ = ["EmbedConfig", "main"]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command entry point; returns counts of what was written."""
    config = parse_config(EmbedConfig, argv, prog="python -m domains.news.embed")
    result = export_run(config)
    print(
        f"wrote {result['written']} vectors for run {result['run_id']} "
        f"(model {result['model_name']} {result['model_version']}) into {config.store}"
    )
    print("next: streamlit run apps/explorer.py   (or query samples_news in DuckDB)")
    return result


if __name__ == "__main__":
    run_command(main)
