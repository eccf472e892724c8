"""Linear probe: C sweep, refit, standardization."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from shared.evaluation import fit_linear_probe, linear_probe


def _blobs(seed: int, n: int, scale: float = 1.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    centers = np.array([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]])
    return centers[y] + scale * rng.standard_normal((n, 4)), y


def test_sweep_picks_the_c_with_best_validation_accuracy_and_refits_on_all_rows():
    x, y = _blobs(0, 150, scale=1.5)
    grid = (1e-3, 1e-1, 10.0)
    fit = fit_linear_probe(x, y, c_grid=grid, seed=4)
    fit_x, val_x, fit_y, val_y = train_test_split(x, y, test_size=0.2, random_state=4, stratify=y)
    scaler = StandardScaler().fit(fit_x)
    expected = {}
    for c in grid:
        clf = LogisticRegression(C=c, max_iter=1000).fit(scaler.transform(fit_x), fit_y)
        expected[c] = accuracy_score(val_y, clf.predict(scaler.transform(val_x)))
    assert fit.validation_accuracy == pytest.approx(expected)
    best = max(expected.values())
    assert fit.best_c == min(c for c in grid if expected[c] == best)
    assert fit.model[-1].n_features_in_ == 4
    assert fit.model[0].n_samples_seen_ == 150  # refit on every training row


def test_accuracy_on_separable_data_and_invariance_to_feature_scale():
    x, y = _blobs(1, 200, scale=0.3)
    tx, ty = _blobs(2, 100, scale=0.3)
    result = linear_probe(x, y, tx, ty, C=1.0)
    assert result["accuracy"] == 1.0
    assert result["balanced_accuracy"] == 1.0
    scale = np.array([1e4, 1e-3, 1.0, 50.0])
    rescaled = linear_probe(x * scale, y, tx * scale, ty, C=1.0)
    assert rescaled["accuracy"] == result["accuracy"]


def test_result_counts_and_json_ready_sweep():
    x, y = _blobs(3, 60)
    tx, ty = _blobs(4, 30)
    result = linear_probe(x, y, tx, ty, c_grid=(0.1, 1.0))
    assert result["num_train"] == 60 and result["num_test"] == 30
    assert set(result["validation_accuracy_by_C"]) == {"0.1", "1.0"}
    correct = np.sum(fit_linear_probe(x, y, C=result["best_C"]).model.predict(tx) == ty)
    assert result["accuracy"] == pytest.approx(correct / 30)


def test_single_class_is_rejected():
    with pytest.raises(ValueError, match="two classes"):
        linear_probe(np.ones((4, 2)), [1, 1, 1, 1], np.ones((2, 2)), [1, 1])
