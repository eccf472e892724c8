"""Ablation on MovieLens-100K: ``python -m domains.recsys.ablate`` (3 seeds by default).

LightGCN → +side features → +augmented edges → +pruning → +MAE (see :mod:`domains.recsys.llmrec.ablation`).
Writes ``runs/recsys/<run_name>/ablation.json`` (per seed), ``ablation.md`` (mean ± sample std with the 95%
interval, and paired differences from the first variant) and ``ablation_summary.json``.
"""

from __future__ import annotations

from domains.recsys.llmrec.ablation import AblateConfig, run_ablation
from shared.cli import parse_config, run_command


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    config = parse_config(AblateConfig, argv, prog="python -m domains.recsys.ablate")
    ablation = run_ablation(config)
    print(ablation.table, end="")
    print(f"Wrote {ablation.folder.path}/ablation.json, ablation.md and ablation_summary.json")
    print("Next: python -m domains.recsys.train   # the full demo pipeline on one seed")


if __name__ == "__main__":
    run_command(main)
