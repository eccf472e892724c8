"""``python -m domains.news.evaluate``: metrics of a trained detector on one split of ingested shards."""

from __future__ import annotations

from typing import Any

from domains.news.detector_metrics import EvaluateConfig, evaluate_run
from shared.cli import parse_config, run_command

__all__ = ["EvaluateConfig", "main"]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command entry point; returns the metrics written to ``<run>/eval/[<split>/]metrics.json``."""
    config = parse_config(EvaluateConfig, argv, prog="python -m domains.news.evaluate")
    result = evaluate_run(config)
    metrics = result.metrics
    print(
        f"{config.split}: accuracy {metrics['accuracy']:.3f}, ROC-AUC {metrics['roc_auc']}, "
        f"macro-F1 {metrics['macro_f1']:.3f}, ECE {metrics['ece']:.3f} on {metrics['num_posts']} posts"
    )
    print(f"wrote {result.metrics_path} and the confusion-matrix/ROC pictures beside it")
    print(f"next: python -m domains.news.embed --run {config.run}")
    return metrics


if __name__ == "__main__":
    run_command(main)
