"""``python -m domains.news.train``: train FND-CLIP with validation-only model selection, then test once.

With no arguments it builds the built-in out-of-context set (if needed, saying so), ingests it, caches the
frozen features and trains the demo configuration on CPU in a few minutes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from domains.news.detector_training import TrainConfig, train_detector
from shared.cli import parse_config, run_command

__all__ = ["TrainConfig", "main"]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command entry point; returns the config as it ran plus the test metrics."""
    config = parse_config(TrainConfig, argv, prog="python -m domains.news.train")
    outcome = train_detector(config)
    test, run_dir = outcome.test, outcome.folder.path
    roc_auc = "undefined" if test["roc_auc"] is None else f"{test['roc_auc']:.3f}"
    print(
        f"test accuracy {test['accuracy']:.3f}, ROC-AUC {roc_auc}, ECE {test['ece']:.3f} "
        f"({test['num_posts']} posts; model selected on validation: {test['selected_on']})"
    )
    by_kind = {kind: auc for kind, auc in test.get("roc_auc_by_kind", {}).items() if kind != "all"}
    if by_kind:
        print("test ROC-AUC per kind: " + ", ".join(f"{k} {_auc(v)}" for k, v in by_kind.items()))
    gauge = test.get("similarity_gauge_roc_auc") or {}
    print("CLIP similarity gauge (raw cosine) test ROC-AUC: " + ", ".join(f"{k} {_auc(v)}" for k, v in gauge.items()))
    print(f"wrote {run_dir}/ (config.yaml, metrics.csv, checkpoints/, detector.json, eval/metrics.json, eval/*.png)")
    print(f"next: python -m domains.news.detect --run {run_dir} --text 'a caption' --image picture.png")
    print(f"      python -m domains.news.ablate    python -m domains.news.embed --run {run_dir}")
    return dataclasses.asdict(outcome.config) | {"test": test}


def _auc(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    run_command(main)
