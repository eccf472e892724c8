"""Domain-agnostic evaluation over embedding arrays: retrieval, zero-shot, linear probe, few-shot GDA,
classification metrics and their plots."""

from shared.evaluation.classification import (
    classification_metrics,
    expected_calibration_error,
    save_confusion_matrix_png,
    save_roc_png,
)
from shared.evaluation.few_shot import GaussianFewShot
from shared.evaluation.linear_probe import LinearProbeFit, fit_linear_probe, linear_probe
from shared.evaluation.retrieval import retrieval_metrics
from shared.evaluation.zero_shot import (
    top_k_accuracy,
    zero_shot_classifier,
    zero_shot_evaluate,
    zero_shot_predict,
)

__all__ = [
    "GaussianFewShot",
    "LinearProbeFit",
    "classification_metrics",
    "expected_calibration_error",
    "fit_linear_probe",
    "linear_probe",
    "retrieval_metrics",
    "save_confusion_matrix_png",
    "save_roc_png",
    "top_k_accuracy",
    "zero_shot_classifier",
    "zero_shot_evaluate",
    "zero_shot_predict",
]
