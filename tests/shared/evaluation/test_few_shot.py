"""Gaussian discriminant analysis few-shot classifier against a numpy GDA."""

import numpy as np
import pytest

from shared.evaluation import GaussianFewShot


def _numpy_gda_logits(x, y, query, shrinkage):
    classes = np.unique(y)
    means = np.stack([x[y == c].mean(axis=0) for c in classes])
    centered = np.concatenate([x[y == c] - means[i] for i, c in enumerate(classes)])
    # Per-class biased covariances averaged with uniform weights (the model's uniform priors).
    covariance = np.mean([np.cov(x[y == c] - means[i], rowvar=False, bias=True) for i, c in enumerate(classes)], axis=0)
    del centered
    dim = x.shape[1]
    shrunk = (1 - shrinkage) * covariance + shrinkage * np.trace(covariance) / dim * np.eye(dim)
    precision_means = np.linalg.solve(shrunk, means.T)  # (D, C)
    return query @ precision_means - 0.5 * np.sum(means.T * precision_means, axis=0)


def _shots(seed, n_classes=4, shots=6, dim=5):
    rng = np.random.default_rng(seed)
    centers = 2.0 * rng.standard_normal((n_classes, dim))
    y = np.repeat(np.arange(n_classes), shots)
    return centers[y] + rng.standard_normal((y.size, dim)), y, centers


def _same_up_to_row_constant(a, b):
    np.testing.assert_allclose(a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True), atol=1e-6)


def test_logits_equal_numpy_gda_up_to_a_row_constant():
    x, y, centers = _shots(0)
    query = centers + 0.5 * np.random.default_rng(9).standard_normal(centers.shape)
    model = GaussianFewShot(shrinkage=0.3).fit(x, y)
    _same_up_to_row_constant(model.predict_logits(query), _numpy_gda_logits(x, y, query, 0.3))
    np.testing.assert_array_equal(model.predict(centers), np.arange(4))


def test_binary_logits_keep_the_per_class_form():
    x, y, centers = _shots(1, n_classes=2)
    model = GaussianFewShot(shrinkage=0.1).fit(x, y)
    _same_up_to_row_constant(model.predict_logits(centers), _numpy_gda_logits(x, y, centers, 0.1))


def test_zero_shot_ensemble_adds_weighted_gda_logits():
    x, y, centers = _shots(2)
    zero_shot = np.random.default_rng(5).standard_normal((4, 4))
    model = GaussianFewShot(shrinkage=0.2, ensemble_weight=0.25).fit(x, y)
    gda = model.predict_logits(centers)
    np.testing.assert_allclose(model.predict_logits(centers, zero_shot), zero_shot + 0.25 * gda)
    # A dominant zero-shot vote overrides GDA.
    flipped = np.roll(np.eye(4), 1, axis=1) * 1e6
    np.testing.assert_array_equal(model.predict(centers, flipped), np.roll(np.arange(4), -1))


def test_string_labels_and_errors():
    x, y, _ = _shots(3, n_classes=3)
    names = np.array(["a", "b", "c"])[y]
    model = GaussianFewShot().fit(x, names)
    assert list(model.classes_) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="shape"):
        model.predict_logits(x, np.zeros((len(x), 2)))
    with pytest.raises(RuntimeError, match="not fitted"):
        GaussianFewShot().predict_logits(x)
    with pytest.raises(ValueError, match="shrinkage"):
        GaussianFewShot(shrinkage=1.5)
