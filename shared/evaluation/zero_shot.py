"""Zero-shot classification from class names and prompt templates, following open_clip's conventions."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import balanced_accuracy_score

from shared.evaluation._arrays import as_float_matrix, as_label_vector, l2_normalize_rows

PromptTemplate = str | Callable[[str], str]

#: open_clip multiplies cosine similarities by the (clamped) learned logit scale, 100 for trained CLIPs.
DEFAULT_LOGIT_SCALE = 100.0


def _fill_template(template: PromptTemplate, classname: str) -> str:
    if callable(template):
        return template(classname)
    if "{}" not in template and "{c}" not in template:
        raise ValueError(f"prompt template {template!r} has no '{{}}' or '{{c}}' slot for the class name")
    return template.replace("{c}", classname).replace("{}", classname)


def zero_shot_classifier(
    encode_text: Callable[[list[str]], Any],
    classnames: Sequence[str],
    templates: Sequence[PromptTemplate],
) -> np.ndarray:
    """Builds zero-shot class weights from class names and prompt templates.

    Each class weight is the mean of its L2-normalized template embeddings, re-normalized to unit length
    (open_clip's ``build_zero_shot_classifier``).

    Args:
        encode_text: Maps a list of prompts to an (N, D) array or tensor of text embeddings. Call it under
            ``torch.no_grad()`` yourself if it runs a model.
        classnames: The C class names, in label order.
        templates: Prompt templates: strings with a ``{}`` (or ``{c}``) slot, or callables
            ``classname -> prompt`` (open_clip's template lambdas).

    Returns:
        (C, D) float32 array of unit-norm class weights.

    Raises:
        ValueError: If there are no classes or templates, or a template has no slot.
    """
    if not classnames:
        raise ValueError("zero_shot_classifier needs at least one class name")
    if not templates:
        raise ValueError("zero_shot_classifier needs at least one prompt template")
    weights = []
    for classname in classnames:
        prompts = [_fill_template(template, classname) for template in templates]
        embeddings = as_float_matrix(encode_text(prompts), f"text embeddings of class {classname!r}")
        if embeddings.shape[0] != len(prompts):
            raise ValueError(
                f"encode_text returned {embeddings.shape[0]} rows for {len(prompts)} prompts of class {classname!r}"
            )
        mean = l2_normalize_rows(embeddings, f"text embeddings of class {classname!r}").mean(axis=0)
        weights.append(mean / np.linalg.norm(mean))
    return np.stack(weights).astype(np.float32)


def zero_shot_predict(emb: Any, weights: Any, logit_scale: float = DEFAULT_LOGIT_SCALE) -> np.ndarray:
    """Zero-shot logits ``logit_scale * normalize(emb) @ weights.T``.

    Args:
        emb: (N, D) image (or other modality) embeddings; rows are L2-normalized here.
        weights: (C, D) class weights from :func:`zero_shot_classifier`.
        logit_scale: Multiplier of the cosine similarities (100 as in open_clip).

    Returns:
        (N, C) float32 logits.
    """
    features = l2_normalize_rows(as_float_matrix(emb, "emb"), "emb")
    class_weights = as_float_matrix(weights, "weights")
    if features.shape[1] != class_weights.shape[1]:
        raise ValueError(f"emb has dimension {features.shape[1]} but weights have {class_weights.shape[1]}")
    return (logit_scale * features @ class_weights.T).astype(np.float32)


def top_k_accuracy(logits: Any, labels: Any, k: int) -> float:
    """Fraction of rows whose true class index is among the ``k`` highest logits (ties by index order)."""
    scores = as_float_matrix(logits, "logits")
    truth = as_label_vector(labels, "labels").astype(np.int64)
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean((top == truth[:, None]).any(axis=1)))


def zero_shot_evaluate(
    emb: Any, labels: Any, weights: Any, logit_scale: float = DEFAULT_LOGIT_SCALE
) -> dict[str, float]:
    """Top-1, top-5 and balanced accuracy of zero-shot classification.

    Args:
        emb: (N, D) embeddings to classify.
        labels: (N,) integer class indices into the rows of ``weights``.
        weights: (C, D) class weights from :func:`zero_shot_classifier`.
        logit_scale: Multiplier of the cosine similarities.

    Returns:
        ``{"top1", "top5", "balanced_accuracy"}`` (top-5 is top-C when there are fewer than 5 classes).
    """
    logits = zero_shot_predict(emb, weights, logit_scale)
    truth = as_label_vector(labels, "labels").astype(np.int64)
    if truth.shape[0] != logits.shape[0]:
        raise ValueError(f"{truth.shape[0]} labels for {logits.shape[0]} embeddings")
    if truth.size and (truth.min() < 0 or truth.max() >= logits.shape[1]):
        raise ValueError(f"labels must be class indices in [0, {logits.shape[1]})")
    with warnings.catch_warnings():
        # Predicting a class no test item has is expected when the class list holds distractors (e.g. trained
        # combinations against held-out ones); balanced accuracy is the mean recall over the true classes,
        # well defined either way, and scikit-learn's warning about it is noise.
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        balanced = float(balanced_accuracy_score(truth, logits.argmax(axis=1)))
    return {
        "top1": top_k_accuracy(logits, truth, 1),
        "top5": top_k_accuracy(logits, truth, 5),
        "balanced_accuracy": balanced,
    }
