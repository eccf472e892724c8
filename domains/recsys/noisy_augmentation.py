"""Controlled augmentation experiment: ``python -m domains.recsys.noisy_augmentation``.

Oracle triplets from a held-out pool of MovieLens-100K ratings, 0/25/50% injected noise, LightGCN / +pruning
alone / +augmented edges / +edges and pruning / +MAE over 5 seeds (see
:mod:`domains.recsys.llmrec.noisy_augmentation`). Writes ``runs/recsys/<run_name>/noisy_augmentation.md``
(tables with 95% intervals, paired differences and verdicts) and ``noisy_augmentation.json`` (per seed).
"""

from __future__ import annotations

from domains.recsys.llmrec.noisy_augmentation import NoisyAugmentationConfig, run_noisy_augmentation
from shared.cli import parse_config, run_command


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    config = parse_config(NoisyAugmentationConfig, argv, prog="python -m domains.recsys.noisy_augmentation")
    experiment = run_noisy_augmentation(config)
    print(experiment.report, end="")
    print(f"Wrote {experiment.folder.path}/noisy_augmentation.md and noisy_augmentation.json")
    print("Next: python -m domains.recsys.ablate   # the cumulative LLMRec ablation with the KG backend")


if __name__ == "__main__":
    run_command(main)
