"""``python -m domains.news.ablate``: FND-CLIP ablations × seeds on cached features → a markdown + JSON table.

The variants and the statistics are described in :mod:`domains.news.ablation_study`.
"""

from __future__ import annotations

from typing import Any

from domains.news.ablation_study import AblateConfig, run_ablation
from shared.cli import parse_config, run_command

__all__ = ["AblateConfig", "main"]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command entry point; returns the summary written to ``ablation.json``."""
    config = parse_config(AblateConfig, argv, prog="python -m domains.news.ablate")
    outcome = run_ablation(config)
    run_dir = outcome.folder.path
    print(outcome.table)
    print(f"wrote {run_dir / 'ablation.md'} and {run_dir / 'ablation.json'} (per-run folders beside them)")
    print("next: python -m domains.news.train   (the full model) or python -m domains.news.detect --help")
    return outcome.result


if __name__ == "__main__":
    run_command(main)
