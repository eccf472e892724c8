"""Evaluate fine-tuned AstroM3 classifiers: accuracy, per-class precision/recall/F1, confusion matrix.

    python -m domains.astro.evaluate --run runs/astro/finetune-demo           # every seed of a run
    python -m domains.astro.evaluate --run runs/astro/finetune-demo/seed-42 --split val

For each seed folder writes ``eval/metrics.json`` (``eval/val/`` for the validation split) (from the core's
``classification_metrics``: accuracy, macro-F1, per-class P/R/F1/support, confusion matrix, ROC-AUC, ECE),
``eval/confusion_matrix.png`` and ``eval/predictions.csv`` (sample id, true and predicted class,
probabilities); the run folder gets ``eval/summary_<split>.json`` with the mean, standard deviation and
95% interval over seeds. The work is done by :mod:`domains.astro.classifier_evaluation`.
"""

from __future__ import annotations

from typing import Any

from domains.astro.classifier_evaluation import EvaluateConfig, evaluate_run, format_summary
from shared.cli import parse_config, run_command


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point (``python -m domains.astro.evaluate --help``)."""
    config = parse_config(EvaluateConfig, argv, prog="python -m domains.astro.evaluate", description=__doc__)
    summary = evaluate_run(config)
    print(f"{config.split} accuracy over seeds {summary['seeds']}: {format_summary(summary['accuracy'])}")
    where = "eval/" if config.split == "test" else f"eval/{config.split}/"
    print(f"wrote {where}metrics.json, confusion_matrix.png, predictions.csv in each seed folder of {config.run}")
    print("next: python -m domains.astro.table   (the full modality x CLIP x label-budget table)")
    return summary


if __name__ == "__main__":
    run_command(main)
