"""Untrained vs trained demo model on held-out captions that are new attribute combinations, over seeds.

    python -m domains.biomed.heldout                                  # 5 seeds × 240 steps (demo preset)
    python -m domains.biomed.heldout --seeds [0,1] --max_steps 60     # a quick look
    python -m domains.biomed.heldout --out docs/results/biomed_heldout_table.md

Prints retrieval R@1 both ways and zero-shot top-1 over the 45 combinations, untrained and trained, as
mean [95% interval] over the seeds with the paired difference and its verdict. The work is
:func:`domains.biomed.heldout_study.run_heldout_study`.
"""

from __future__ import annotations

from collections.abc import Sequence

from domains.biomed.heldout_study import HeldoutStudyConfig, HeldoutStudyResult, run_heldout_study
from shared.cli import parse_config, run_command

__all__ = ["HeldoutStudyConfig", "main"]


def main(argv: Sequence[str] | None = None) -> HeldoutStudyResult:
    """Command-line entry point: ``python -m domains.biomed.heldout --help``; returns the study result."""
    config = parse_config(HeldoutStudyConfig, argv, prog="python -m domains.biomed.heldout")
    result = run_heldout_study(config)
    print()
    print(result.table)
    print(f"{len(result.per_seed)} seed(s) in {result.seconds / 60:.1f} min; runs in "
          f"{config.runs_root}/biomed/{config.run_name}-seed<k>" + (f"; table written to {config.out}" if config.out else ""))  # fmt: skip
    return result


if __name__ == "__main__":
    run_command(main)
