"""classification_metrics against hand counts, and the PNG plots round-tripped."""

import numpy as np
import pytest
from PIL import Image

from shared.evaluation import (
    classification_metrics,
    expected_calibration_error,
    save_confusion_matrix_png,
    save_roc_png,
)


def _auc_by_pairs(positive_scores, negative_scores):
    wins = sum((p > n) + 0.5 * (p == n) for p in positive_scores for n in negative_scores)
    return wins / (len(positive_scores) * len(negative_scores))


def test_binary_metrics_against_hand_counts():
    y_true = ["neg", "neg", "pos", "pos", "pos", "neg"]
    p_pos = np.array([0.1, 0.6, 0.8, 0.4, 0.9, 0.3])
    m = classification_metrics(y_true, np.stack([1 - p_pos, p_pos], axis=1), ["neg", "pos"])
    # predictions: neg, pos, pos, neg, pos, neg -> TP=2, FP=1, FN=1, TN=2
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion_matrix"] == [[2, 1], [1, 2]]
    assert m["per_class"]["pos"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    assert m["macro_f1"] == pytest.approx(2 / 3)
    assert m["roc_auc"] == pytest.approx(_auc_by_pairs(p_pos[[2, 3, 4]], p_pos[[0, 1, 5]]))


def test_multiclass_one_vs_rest_auc_and_ece():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=40)
    logits = rng.standard_normal((40, 3)) + 1.5 * np.eye(3)[y]
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    m = classification_metrics(y, prob, [0, 1, 2], n_bins=10)
    aucs = [_auc_by_pairs(prob[y == c, c], prob[y != c, c]) for c in range(3)]
    assert m["roc_auc"] == pytest.approx(np.mean(aucs))
    # ECE by an explicit loop over the 10 bins (lo, hi].
    conf, pred = prob.max(axis=1), prob.argmax(axis=1)
    ece = 0.0
    for b in range(10):
        lo, hi = b / 10, (b + 1) / 10
        rows = [i for i in range(40) if lo < conf[i] <= hi]
        if rows:
            ece += len(rows) / 40 * abs(np.mean(pred[rows] == y[rows]) - np.mean(conf[rows]))
    assert m["ece"] == pytest.approx(ece)
    assert np.sum(m["confusion_matrix"]) == 40


def test_perfectly_calibrated_and_missing_class():
    prob = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(np.array([0, 1]), prob) == 0.0
    m = classification_metrics([0, 0], np.array([[0.7, 0.3], [0.4, 0.6]]), [0, 1])
    assert m["roc_auc"] is None
    assert m["ece"] == pytest.approx(0.5 * abs(1 - 0.7) + 0.5 * abs(0 - 0.6))


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="not in labels"):
        classification_metrics(["x"], np.array([[0.5, 0.5]]), ["a", "b"])
    with pytest.raises(ValueError, match="expected"):
        classification_metrics(["a"], np.array([[1.0, 0.0, 0.0]]), ["a", "b"])


def test_plots_are_written_as_png(tmp_path):
    y = np.array([0, 1, 2, 2, 1, 0])
    prob = np.eye(3)[[0, 1, 2, 1, 1, 0]] * 0.8 + 0.2 / 3
    m = classification_metrics(y, prob, [0, 1, 2])
    cm_path = save_confusion_matrix_png(m["confusion_matrix"], ["a", "b", "c"], tmp_path / "eval" / "cm.png")
    roc_path = save_roc_png(y, prob, [0, 1, 2], tmp_path / "roc.png")
    for path in (cm_path, roc_path):
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert image.width > 100 and image.height > 100
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["cm.png", "roc.png"]
