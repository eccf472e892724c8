"""Linear probe: standardized features + scikit-learn logistic regression, C chosen on a validation split."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from shared.evaluation._arrays import as_float_matrix, as_label_vector

#: Inverse regularization strengths tried by default (log-spaced, as in CLIP's linear-probe protocol).
DEFAULT_C_GRID: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


@dataclass
class LinearProbeFit:
    """A fitted probe and how its C was chosen.

    Attributes:
        model: The fitted ``StandardScaler -> LogisticRegression`` pipeline (refit on all training rows).
        best_c: The C with the best validation accuracy (the smallest such C on ties).
        validation_accuracy: Validation accuracy per tried C (empty when C was given).
    """

    model: Pipeline
    best_c: float
    validation_accuracy: dict[float, float] = field(default_factory=dict)


def _make_probe(c: float, max_iter: int, seed: int) -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter, random_state=seed))


def fit_linear_probe(
    train_x: Any,
    train_y: Any,
    C: float | None = None,
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    validation_fraction: float = 0.2,
    max_iter: int = 1000,
    seed: int = 0,
) -> LinearProbeFit:
    """Fits a logistic-regression probe on frozen embeddings.

    Without ``C``, every value of ``c_grid`` is fitted on a stratified (when every class has 2+ rows)
    ``1 - validation_fraction`` split of the training rows and scored on the rest; the best C is then
    refit on all training rows.

    Args:
        train_x: (N, D) training embeddings.
        train_y: (N,) training labels (any sortable type).
        C: A fixed inverse regularization strength; skips the sweep.
        c_grid: Candidate C values for the sweep.
        validation_fraction: Fraction of training rows held out for the sweep.
        max_iter: Solver iteration limit.
        seed: Seed of the validation split and the solver.

    Returns:
        The fitted probe with its chosen C.
    """
    x = as_float_matrix(train_x, "train_x")
    y = as_label_vector(train_y, "train_y")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"train_x has {x.shape[0]} rows but train_y has {y.shape[0]} labels")
    if np.unique(y).size < 2:
        raise ValueError("a linear probe needs at least two classes in train_y")
    if C is not None:
        return LinearProbeFit(model=_make_probe(C, max_iter, seed).fit(x, y), best_c=float(C))
    if not c_grid:
        raise ValueError("c_grid is empty; pass C or at least one candidate")
    _, class_counts = np.unique(y, return_counts=True)
    stratify = y if class_counts.min() >= 2 else None
    fit_x, val_x, fit_y, val_y = train_test_split(
        x, y, test_size=validation_fraction, random_state=seed, stratify=stratify
    )
    validation_accuracy = {}
    for c in sorted(c_grid):
        probe = _make_probe(c, max_iter, seed).fit(fit_x, fit_y)
        validation_accuracy[float(c)] = float(accuracy_score(val_y, probe.predict(val_x)))
    best_c = max(validation_accuracy, key=lambda c: (validation_accuracy[c], -c))
    return LinearProbeFit(
        model=_make_probe(best_c, max_iter, seed).fit(x, y),
        best_c=best_c,
        validation_accuracy=validation_accuracy,
    )


def linear_probe(
    train_x: Any,
    train_y: Any,
    test_x: Any,
    test_y: Any,
    C: float | None = None,
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    validation_fraction: float = 0.2,
    max_iter: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Fits a linear probe (see :func:`fit_linear_probe`) and scores it on the test rows.

    Returns:
        ``{"accuracy", "balanced_accuracy", "best_C", "validation_accuracy_by_C", "num_train",
        "num_test"}``; ``validation_accuracy_by_C`` maps ``str(C)`` to accuracy (JSON-ready).
    """
    fit = fit_linear_probe(train_x, train_y, C, c_grid, validation_fraction, max_iter, seed)
    x = as_float_matrix(test_x, "test_x")
    y = as_label_vector(test_y, "test_y")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"test_x has {x.shape[0]} rows but test_y has {y.shape[0]} labels")
    predicted = fit.model.predict(x)
    return {
        "accuracy": float(accuracy_score(y, predicted)),
        "balanced_accuracy": float(balanced_accuracy_score(y, predicted)),
        "best_C": fit.best_c,
        "validation_accuracy_by_C": {str(c): acc for c, acc in fit.validation_accuracy.items()},
        "num_train": int(as_label_vector(train_y, "train_y").shape[0]),
        "num_test": int(y.shape[0]),
    }
