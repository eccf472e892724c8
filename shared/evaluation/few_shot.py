"""Training-free few-shot classification by Gaussian discriminant analysis on frozen embeddings.

The "hard-to-beat baseline" for CLIP adaptation (Wang et al., ICLR 2024): model every class as a
Gaussian with its own mean and one shared, shrunk covariance; the resulting linear classifier needs no
training and can be ensembled with zero-shot logits.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from shared.evaluation._arrays import as_float_matrix, as_label_vector


class GaussianFewShot:
    """Gaussian discriminant analysis with a shared covariance, as a few-shot classifier.

    For class means ``mu_c`` and the shared covariance ``S`` shrunk toward a scaled identity,
    ``S_a = (1 - a) S + a * trace(S) / D * I``, the logit of class c is
    ``x^T S_a^-1 mu_c - mu_c^T S_a^-1 mu_c / 2`` (uniform class priors). The fit is scikit-learn's
    ``LinearDiscriminantAnalysis(solver="lsqr")``.

    With zero-shot logits, :meth:`predict_logits` returns ``zero_shot_logits + ensemble_weight * gda_logits``.

    Args:
        shrinkage: ``a`` in [0, 1], or ``"auto"`` for the Ledoit-Wolf estimate (recommended when there
            are fewer shots than dimensions).
        ensemble_weight: Weight of the GDA logits when ensembling with zero-shot logits.
    """

    def __init__(self, shrinkage: float | str = "auto", ensemble_weight: float = 1.0) -> None:
        if isinstance(shrinkage, str) and shrinkage != "auto":
            raise ValueError(f"shrinkage must be a float in [0, 1] or 'auto'; got {shrinkage!r}")
        if not isinstance(shrinkage, str) and not 0.0 <= shrinkage <= 1.0:
            raise ValueError(f"shrinkage must be in [0, 1]; got {shrinkage}")
        self.shrinkage = shrinkage
        self.ensemble_weight = ensemble_weight
        self._model: LinearDiscriminantAnalysis | None = None

    @property
    def classes_(self) -> np.ndarray:
        """The class labels, in the column order of the logits."""
        if self._model is None:
            raise RuntimeError("GaussianFewShot is not fitted; call fit(x, y) first")
        return self._model.classes_

    def fit(self, x: Any, y: Any) -> GaussianFewShot:
        """Estimates class means and the shared covariance.

        Args:
            x: (N, D) support embeddings (numpy or torch).
            y: (N,) class labels; every class needs at least one row, and there must be 2+ classes.

        Returns:
            self.
        """
        features = as_float_matrix(x, "x")
        labels = as_label_vector(y, "y")
        if features.shape[0] != labels.shape[0]:
            raise ValueError(f"x has {features.shape[0]} rows but y has {labels.shape[0]} labels")
        classes = np.unique(labels)
        if classes.size < 2:
            raise ValueError("GaussianFewShot needs at least two classes")
        self._model = LinearDiscriminantAnalysis(
            solver="lsqr", shrinkage=self.shrinkage, priors=np.full(classes.size, 1.0 / classes.size)
        ).fit(features, labels)
        return self

    def predict_logits(self, x: Any, zero_shot_logits: Any = None) -> np.ndarray:
        """Class logits for ``x``, optionally ensembled with zero-shot logits.

        Args:
            x: (N, D) query embeddings.
            zero_shot_logits: Optional (N, C) logits whose columns follow :attr:`classes_`.

        Returns:
            (N, C) logits. For two classes the GDA part is ``[-d/2, d/2]`` with ``d`` the
            log-odds of the second class, which differs from the per-class form only by a per-row
            constant (so softmax and argmax agree).
        """
        if self._model is None:
            raise RuntimeError("GaussianFewShot is not fitted; call fit(x, y) first")
        decision = self._model.decision_function(as_float_matrix(x, "x"))
        gda_logits = np.stack([-decision / 2, decision / 2], axis=1) if decision.ndim == 1 else decision
        if zero_shot_logits is None:
            return gda_logits
        zero_shot = as_float_matrix(zero_shot_logits, "zero_shot_logits")
        if zero_shot.shape != gda_logits.shape:
            raise ValueError(
                f"zero_shot_logits has shape {zero_shot.shape}; expected {gda_logits.shape} "
                "(rows of x, classes in classes_ order)"
            )
        return zero_shot + self.ensemble_weight * gda_logits

    def predict(self, x: Any, zero_shot_logits: Any = None) -> np.ndarray:
        """Predicted class labels (the argmax of :meth:`predict_logits`)."""
        return self.classes_[self.predict_logits(x, zero_shot_logits).argmax(axis=1)]
