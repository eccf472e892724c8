"""Metrics of a detector on rows of a post table, and the evaluation of a trained run on one split.

Used by training (validation selection, the test split), by ``domains.news.evaluate`` (any split of a
trained run, with the splits rebuilt exactly as in training) and by the store export (scores of every post).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from domains.news.data import LABEL_NAMES
from domains.news.feature_cache import DEFAULT_CACHE_DIR, load_post_table, require_shard_folder, set_cpu_threads
from domains.news.model import FEATURE_KEYS, FNDCLIPModel
from domains.news.similarity_gauge import post_strategies, roc_auc_by_kind, similarity_gauge_auc
from domains.news.splits import SPLITS, split_rows
from shared.user_errors import UserError

CONFUSION_PICTURE = "confusion_matrix.png"
ROC_PICTURE = "roc.png"
EVAL_PICTURES = (f"eval/{CONFUSION_PICTURE}", f"eval/{ROC_PICTURE}")
"""The pictures training writes beside ``eval/metrics.json`` (outputs of the run)."""


@dataclass
class EvaluateConfig:
    """Evaluate a trained FND-CLIP run: accuracy, per-class P/R/F1, ROC-AUC, ECE, confusion matrix and ROC."""

    run: str = "runs/news/demo"
    """Run folder written by domains.news.train."""
    input: str | None = None
    """Shard folder (default: the one the run trained on)."""
    split: str = "test"
    """Split to evaluate: train, val or test (splits are rebuilt exactly as in training)."""
    weights: str = "best"
    """best (validation-selected) or last."""
    cache_dir: str | None = DEFAULT_CACHE_DIR
    """Frozen-feature cache (None: recompute)."""
    device: str = "auto"
    """auto, cpu or cuda."""


@torch.no_grad()
def predict_rows(
    model: FNDCLIPModel, features: dict[str, torch.Tensor], rows: np.ndarray, device: torch.device
) -> dict[str, np.ndarray]:
    """Model outputs (numpy) for the given rows, in eval mode, in chunks."""
    model.eval()
    rows = np.asarray(rows, dtype=np.int64)
    outputs: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(rows), 512):
        index = torch.as_tensor(rows[start : start + 512])
        batch = {k: features[k][index].to(device) for k in FEATURE_KEYS if k in features}
        output = model(batch)
        for name in ("probs", "attention", "similarity", "fused"):
            outputs.setdefault(name, []).append(output[name].float().cpu().numpy())
    return {name: np.concatenate(parts) for name, parts in outputs.items()}


def metrics_for_rows(
    model: FNDCLIPModel, features: dict[str, torch.Tensor], labels: np.ndarray, rows: np.ndarray, device: torch.device
) -> dict[str, Any]:
    """Core classification metrics (accuracy, per-class P/R/F1, ROC-AUC, ECE) plus mean attention per branch."""
    from shared.evaluation import classification_metrics

    predicted = predict_rows(model, features, rows, device)
    metrics = classification_metrics(labels[rows], predicted["probs"], labels=[0, 1])
    metrics["per_class"] = {LABEL_NAMES[int(k)]: v for k, v in metrics["per_class"].items()}
    metrics["labels"] = list(LABEL_NAMES)
    metrics["mean_attention"] = dict(zip(model.branches, predicted["attention"].mean(axis=0).tolist()))
    metrics["num_posts"] = len(rows)
    return metrics


def write_eval_pictures(
    eval_dir: Path, metrics: dict[str, Any], probs_fake: np.ndarray, labels: np.ndarray
) -> list[Path]:
    """Confusion-matrix and ROC pictures (positive = fake) into ``eval_dir``; returns their paths."""
    from shared.evaluation import save_confusion_matrix_png, save_roc_png

    eval_dir.mkdir(parents=True, exist_ok=True)
    confusion, roc = (eval_dir / name for name in (CONFUSION_PICTURE, ROC_PICTURE))
    save_confusion_matrix_png(metrics["confusion_matrix"], list(LABEL_NAMES), confusion)
    probs = np.stack([1 - probs_fake, probs_fake], axis=1)
    save_roc_png(labels, probs, labels=[0, 1], path=roc, title="ROC (positive = fake)")
    return [confusion, roc]


def trained_input(saved: dict[str, Any]) -> str:
    """The shard folder a run trained on, from its saved config (runs saved before ``--input`` said ``data``)."""
    return str(saved.get("input") or saved.get("data"))


@dataclass
class EvaluationResult:
    """What :func:`evaluate_run` computed and where it wrote it."""

    metrics: dict[str, Any]
    metrics_path: Path


def evaluate_run(config: EvaluateConfig) -> EvaluationResult:
    """Metrics of a trained run on one split, written to the run's ``eval/[<split>/]metrics.json`` with pictures.

    Raises:
        UserError: a bad ``--split`` or ``--weights``, a missing run or shard folder (named).
    """
    from domains.news.trained_detector import check_weights, load_detector, open_detector_run
    from shared.device import pick_device

    if config.split not in SPLITS:
        raise UserError(f"--split: must be train, val or test, got {config.split!r}")
    check_weights(config.weights)
    folder = open_detector_run(config.run)
    trained = folder.load_config()
    shards = require_shard_folder(config.input or trained_input(trained), "--input")
    set_cpu_threads(int(trained.get("cpu_threads", 0)))  # the features of training, bit for bit
    detector = load_detector(folder.path, config.weights, device=pick_device(config.device))
    table = load_post_table(shards, detector.encoders, config.cache_dir)
    rows = split_rows(table, trained["val_fraction"], trained["test_fraction"], trained["trainer"]["seed"])
    features = detector.encoders.finish(table.base)
    selected = rows[config.split]
    device = detector.encoders.device
    metrics = metrics_for_rows(detector.model, features, table.labels, selected, device)
    metrics |= {"split": config.split, "data": str(shards), "weights": config.weights}
    predicted = predict_rows(detector.model, features, selected, device)
    strategies = post_strategies(table.meta)
    selected_strategies = [strategies[i] for i in selected]
    metrics["roc_auc_by_kind"] = roc_auc_by_kind(table.labels[selected], predicted["probs"][:, 1], selected_strategies)
    metrics["similarity_gauge_roc_auc"] = similarity_gauge_auc(features, table.labels, selected, strategies)
    eval_dir = folder.eval_dir(config.split)
    pictures = write_eval_pictures(eval_dir, metrics, predicted["probs"][:, 1], table.labels[selected])
    metrics_path = folder.write_eval_metrics(metrics, config.split)
    # The training run's marker keeps listing its outputs with their current hashes.
    folder.record_outputs([str(path.relative_to(folder.path)) for path in (metrics_path, *pictures)])
    return EvaluationResult(metrics, metrics_path)
