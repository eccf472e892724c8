"""``python -m domains.news.evaluate``: metrics of a trained detector on one split of ingested shards."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass
class EvaluateConfig:
    """Evaluate a trained FND-CLIP run: accuracy, per-class P/R/F1, ROC-AUC, ECE, confusion matrix and ROC."""

    run: str = "runs/news/demo"
    """Run folder written by domains.news.train."""
    data: str | None = None
    """Shard folder (default: the one the run trained on)."""
    split: str = "test"
    """Split to evaluate: train, val or test (splits are rebuilt exactly as in training)."""
    weights: str = "best"
    """best (validation-selected) or last."""
    cache_dir: str | None = ".tmp/news/features"
    """Frozen-feature cache (None: recompute)."""
    device: str = "auto"
    """auto, cpu or cuda."""


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command entry point; returns the metrics written to ``<run>/eval[-<split>]/metrics.json``."""
    from domains.news.detector import load_detector, load_post_table
    from domains.news.train import metrics_for_rows, predict_rows, split_rows, write_eval
    from shared.cli import parse_config
    from shared.device import pick_device

    config = parse_config(EvaluateConfig, argv, prog="python -m domains.news.evaluate")
    run_dir = Path(config.run)
    trained = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    detector = load_detector(run_dir, config.weights, device=pick_device(config.device))
    data = config.data or trained["data"]
    table = load_post_table(data, detector.encoders, config.cache_dir)
    rows = split_rows(table, trained["val_fraction"], trained["test_fraction"], trained["trainer"]["seed"])
    if config.split not in rows:
        raise ValueError(f"--split must be train, val or test, got {config.split!r}")
    features = detector.encoders.finish(table.base)
    selected = rows[config.split]
    metrics = metrics_for_rows(detector.model, features, table.labels, selected, detector.encoders.device)
    metrics |= {"split": config.split, "data": str(data), "weights": config.weights}
    predicted = predict_rows(detector.model, features, selected, detector.encoders.device)
    eval_dir = run_dir if config.split == "test" else run_dir / f"split-{config.split}"
    path = write_eval(eval_dir, metrics, predicted["probs"][:, 1], table.labels[selected])
    print(
        f"{config.split}: accuracy {metrics['accuracy']:.3f}, ROC-AUC {metrics['roc_auc']}, "
        f"macro-F1 {metrics['macro_f1']:.3f}, ECE {metrics['ece']:.3f} on {metrics['num_posts']} posts"
    )
    print(f"wrote {path} and the confusion-matrix/ROC pictures beside it")
    print(f"next: python -m domains.news.embed --run {run_dir}")
    return metrics


if __name__ == "__main__":
    main()
