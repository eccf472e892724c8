"""ROC-AUC of fake-post scores, overall and per falsification kind; the CLIP similarity gauge's own ROC-AUC.

FND-CLIP's cross-modal branch can only be as good as its gauge: the frozen CLIP pair's cosine between a
post's text and image. Before any head is trained, :func:`similarity_gauge_auc` measures how well that raw
cosine alone separates real posts from fake ones on the test posts (a fake scored by ``−cosine``: the less
the pair agrees, the more likely fake). Near 0.5 means no head can exploit the cross-modal branch.

Per kind (:func:`roc_auc_by_kind`): every real post against the fakes of one kind (``strategy`` of a post in
the built-in set: ``hard_swap``, ``random_swap``, ``manipulated_image``). An AUC with one class missing is
undefined (``None``), never a number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from domains.news.data import FAKE, REAL

ALL_KINDS = "all"
PRISTINE = "pristine"


def binary_roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC-AUC of ``scores`` for ``labels == FAKE`` (ties count half); ``None`` when a class is missing."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return None
    return float(roc_auc_score(labels == FAKE, np.asarray(scores, dtype=np.float64)))


def post_strategies(meta: Sequence[dict[str, Any]]) -> list[str | None]:
    """The falsification kind recorded for each post (``extra.strategy``; None when the data has none)."""
    return [(m.get("extra") or {}).get("strategy") for m in meta]


def roc_auc_by_kind(
    labels: np.ndarray, scores: np.ndarray, strategies: Sequence[str | None]
) -> dict[str, float | None]:
    """``{"all": AUC, <kind>: AUC of all real posts vs the fakes of that kind, …}``.

    Kinds are the strategies of the fake posts, in sorted order; without strategies only ``all`` is given.
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores)
    result = {ALL_KINDS: binary_roc_auc(labels, scores)}
    kinds = sorted({s for s, label in zip(strategies, labels) if s is not None and label == FAKE})
    for kind in kinds:
        keep = np.array([label == REAL or s == kind for s, label in zip(strategies, labels)])
        result[kind] = binary_roc_auc(labels[keep], scores[keep])
    return result


def clip_cosine(clip_text: torch.Tensor, clip_image: torch.Tensor) -> np.ndarray:
    """Raw cosine between each post's CLIP text and CLIP image embedding (what FND-CLIP's branch is scaled by)."""
    return F.cosine_similarity(clip_text.float(), clip_image.float(), dim=-1).numpy()


def similarity_gauge_auc(
    features: dict[str, torch.Tensor], labels: np.ndarray, rows: np.ndarray, strategies: Sequence[str | None]
) -> dict[str, float | None]:
    """The frozen CLIP pair's own ROC-AUC on ``rows``: fake scored by ``−cos(CLIP text, CLIP image)``, per kind."""
    index = torch.as_tensor(np.asarray(rows, dtype=np.int64))
    cosine = clip_cosine(features["clip_text"][index], features["clip_image"][index])
    return roc_auc_by_kind(np.asarray(labels)[rows], -cosine, [strategies[i] for i in rows])
