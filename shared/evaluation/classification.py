"""Classification metrics over predicted class probabilities, and their confusion-matrix and ROC plots."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    RocCurveDisplay,
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

from shared.atomic_files import atomic_output
from shared.evaluation._arrays import as_float_matrix, as_label_vector

#: Equal-width confidence bins of the expected calibration error (the common choice, Guo et al. 2017).
DEFAULT_ECE_BINS = 15


def expected_calibration_error(y_true_index: np.ndarray, y_prob: np.ndarray, n_bins: int = DEFAULT_ECE_BINS) -> float:
    """Top-label expected calibration error.

    Rows are binned by their top probability into ``n_bins`` equal-width bins on (0, 1]; the ECE is the
    row-weighted mean over bins of ``|accuracy(bin) - mean confidence(bin)|``.

    Args:
        y_true_index: (N,) true class indices.
        y_prob: (N, C) probabilities.
        n_bins: Number of bins.
    """
    confidence = y_prob.max(axis=1)
    correct = (y_prob.argmax(axis=1) == y_true_index).astype(np.float64)
    # Bin b holds confidences in (b/n, (b+1)/n]; a confidence of exactly 0 goes to the first bin.
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    error = 0.0
    for b in np.unique(bins):
        in_bin = bins == b
        error += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(error)


def _validated(y_true: Any, y_prob: Any, labels: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, list]:
    truth = as_label_vector(y_true, "y_true")
    prob = as_float_matrix(y_prob, "y_prob")
    labels = list(labels)
    if len(set(labels)) != len(labels) or len(labels) < 2:
        raise ValueError(f"labels must list 2+ distinct classes; got {labels}")
    if prob.shape != (truth.shape[0], len(labels)):
        raise ValueError(f"y_prob has shape {prob.shape}; expected ({truth.shape[0]}, {len(labels)}) = (rows, labels)")
    unknown = set(truth.tolist()) - set(labels)
    if unknown:
        raise ValueError(f"y_true holds labels not in labels: {sorted(map(str, unknown))[:5]}")
    index_of = {label: i for i, label in enumerate(labels)}
    return np.array([index_of[v] for v in truth.tolist()], dtype=np.int64), prob, labels


def classification_metrics(
    y_true: Any, y_prob: Any, labels: Sequence[Any], n_bins: int = DEFAULT_ECE_BINS
) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1, macro-F1, confusion matrix, ROC-AUC and calibration error.

    Args:
        y_true: (N,) true labels, each one of ``labels``.
        y_prob: (N, C) predicted probabilities; column j belongs to ``labels[j]``. Predictions are the
            row-wise argmax.
        labels: The C class labels, in column order.
        n_bins: Bins of the expected calibration error.

    Returns:
        A JSON-ready dict: ``accuracy``, ``macro_f1``, ``per_class`` (``{str(label): {precision, recall,
        f1, support}}``), ``confusion_matrix`` (rows = true, columns = predicted, in ``labels`` order),
        ``labels``, ``roc_auc`` (binary: AUC of ``labels[1]`` as positive; multiclass: macro one-vs-rest;
        ``None`` when a class is absent from ``y_true``), ``ece``.
    """
    truth, prob, labels = _validated(y_true, y_prob, labels)
    classes = np.arange(len(labels))
    predicted = prob.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, labels=classes, zero_division=0)
    if np.unique(truth).size < len(labels):
        roc_auc = None
    elif len(labels) == 2:
        roc_auc = float(roc_auc_score(truth, prob[:, 1]))
    else:
        row_sums = prob.sum(axis=1, keepdims=True)
        roc_auc = float(roc_auc_score(truth, prob / row_sums, multi_class="ovr", labels=classes))
    return {
        "accuracy": float(accuracy_score(truth, predicted)),
        "macro_f1": float(f1_score(truth, predicted, labels=classes, average="macro", zero_division=0)),
        "per_class": {
            str(label): {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": confusion_matrix(truth, predicted, labels=classes).tolist(),
        "labels": [str(label) for label in labels],
        "roc_auc": roc_auc,
        "ece": expected_calibration_error(truth, prob, n_bins),
    }


def _save_figure_atomically(figure: Any, path: Path) -> Path:
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 writes (as the atomic file helpers)
        return Path(path)
    with atomic_output(path, suffix=".png") as temporary:
        figure.savefig(temporary, format="png", dpi=100, bbox_inches="tight")
    return Path(path)


def _new_figure(width_in: float, height_in: float) -> tuple[Any, Any]:
    # A bare Figure renders with the Agg canvas and never touches pyplot's global state or a display.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_in, height_in))
    return figure, figure.add_subplot()


def save_confusion_matrix_png(
    confusion: Any, labels: Sequence[Any], path: str | Path, title: str = "Confusion matrix"
) -> Path:
    """Saves a confusion matrix (rows = true, columns = predicted) as a PNG, written atomically.

    Args:
        confusion: (C, C) counts, e.g. ``classification_metrics(...)["confusion_matrix"]``.
        labels: The C class labels.
        path: Output ``.png`` path (parent folders are created).
        title: Figure title.

    Returns:
        The written path.
    """
    matrix = np.asarray(confusion)
    if matrix.shape != (len(labels), len(labels)):
        raise ValueError(f"confusion has shape {matrix.shape} for {len(labels)} labels")
    side = 2.0 + 0.6 * len(labels)
    figure, axes = _new_figure(side, side)
    ConfusionMatrixDisplay(matrix, display_labels=[str(label) for label in labels]).plot(
        ax=axes, colorbar=False, xticks_rotation="vertical"
    )
    axes.set_title(title)
    return _save_figure_atomically(figure, Path(path))


def save_roc_png(y_true: Any, y_prob: Any, labels: Sequence[Any], path: str | Path, title: str = "ROC") -> Path:
    """Saves ROC curves as a PNG (one curve for binary tasks, one-vs-rest per class otherwise).

    Args:
        y_true: (N,) true labels, each one of ``labels``.
        y_prob: (N, C) predicted probabilities in ``labels`` column order.
        labels: The C class labels.
        path: Output ``.png`` path (parent folders are created).
        title: Figure title.

    Returns:
        The written path.
    """
    truth, prob, labels = _validated(y_true, y_prob, labels)
    figure, axes = _new_figure(6.0, 5.0)
    curves = [1] if len(labels) == 2 else list(range(len(labels)))
    chance_drawn = False
    for column in curves:
        positives = truth == column
        if positives.all() or not positives.any():
            continue  # ROC is undefined for a class that is always or never present
        RocCurveDisplay.from_predictions(
            positives, prob[:, column], name=str(labels[column]), ax=axes, plot_chance_level=not chance_drawn
        )
        chance_drawn = True
    axes.set_title(title)
    return _save_figure_atomically(figure, Path(path))
