"""Losses of the MNAR estimators, and the named estimators that combine them.

Training on clicks as if they were relevance (the *naive* loss) learns ``θ·γ``, which favours popular,
over-exposed items. The estimators:

* ``oracle``: the ideal loss on the true relevance probability ``γ`` (only in simulations),
* ``naive``: clicks as labels,
* ``wmf``: clicks as labels with a down-weighted unlabeled term (weighted MF),
* ``relmf``: the unbiased inverse-propensity loss ``(Y/θ)δ¹ + (1 − Y/θ)δ⁰`` (Rel-MF),
* ``relmf_clipped``: the same with ``θ`` replaced by ``max(θ, M)``,
* ``ubpr``: the unbiased pairwise (BPR) loss ``(Y_ui/θ_ui)(1 − Y_uj/θ_uj)·(−log σ(ŝ_ui − ŝ_uj))``,
* ``expomf``: exposure-aware MF fitted by EM (Liang et al., WWW 2016), see :mod:`domains.recsys.mnar.expomf`.

Local losses: ``log`` (``δ¹ = −log ŷ``, ``δ⁰ = −log(1 − ŷ)``) or ``squared`` (``δ¹ = (1 − ŷ)²``,
``δ⁰ = ŷ²``, the form of the authors' real-data code); ``ŷ = σ(logit)``. ``squared_linear`` is the squared
loss on the linear score itself (``ŷ = logit``, as in WMF): the objective that
:mod:`domains.recsys.mnar.alternating_least_squares` minimises in closed form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from domains.recsys.mnar.sampling import PairBatch

POINTWISE_ESTIMATORS = ("oracle", "naive", "wmf", "relmf", "relmf_clipped")
"""Estimators trained with :func:`pointwise_debiasing_loss`."""

ALS_ESTIMATORS = ("naive_als", "wmf_als", "relmf_als", "relmf_clipped_als")
"""The squared-loss estimators on a linear score, fitted in closed form (:mod:`~domains.recsys.mnar.alternating_least_squares`)."""

ALL_ESTIMATORS = (*POINTWISE_ESTIMATORS, "ubpr", "expomf", *ALS_ESTIMATORS)
"""Every estimator name the ``mnar`` command accepts."""

LocalLoss = Literal["log", "squared", "squared_linear"]


def local_losses(logits: torch.Tensor, loss: LocalLoss) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair ``(δ¹, δ⁰)``: the loss of predicting ``σ(logit)`` for a relevant / irrelevant pair."""
    if loss == "log":
        return F.softplus(-logits), F.softplus(logits)  # −log σ(x), −log(1 − σ(x)), overflow-safe
    if loss == "squared":
        prob = torch.sigmoid(logits)
        return (1 - prob).square(), prob.square()
    if loss == "squared_linear":
        return (1 - logits).square(), logits.square()
    raise ValueError(f"unknown local loss {loss!r}; use 'log', 'squared' or 'squared_linear'")


def pointwise_debiasing_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    propensity: torch.Tensor | None = None,
    *,
    loss: LocalLoss = "log",
    clip_min: float = 0.0,
    unlabeled_weight: float = 1.0,
    normalization: Literal["mean", "weighted"] = "mean",
) -> torch.Tensor:
    """Inverse-propensity-weighted pointwise loss ``Σ[(Y/θ)δ¹ + w(1 − Y/θ)δ⁰] / N``.

    With ``propensity=None`` (θ = 1) this is the naive loss (``unlabeled_weight`` = 1) or WMF (< 1); with
    true propensities it is Rel-MF's unbiased estimator of the ideal loss; ``clip_min = M`` replaces θ by
    ``max(θ, M)``.

    Args:
        logits: model logits, shape ``(B,)``.
        labels: clicks ``Y`` (or soft relevance labels for the oracle), shape ``(B,)``.
        propensity: exposure propensities θ, shape ``(B,)``; only clicked pairs' values matter.
        loss: local loss, ``"log"``, ``"squared"`` or ``"squared_linear"`` (no link).
        clip_min: lower clip ``M`` on θ (0 = no clipping).
        unlabeled_weight: weight ``w`` of the second term.
        normalization: ``"mean"`` divides by ``B``; ``"weighted"`` by ``Σ[Y + w(1 − Y)]`` as in the authors'
            real-data code.

    Returns:
        Scalar loss.
    """
    relevant, irrelevant = local_losses(logits, loss)
    weight = labels
    if propensity is not None:
        theta = propensity.clamp_min(clip_min) if clip_min > 0 else propensity
        weight = labels / theta
    total = (weight * relevant + unlabeled_weight * (1 - weight) * irrelevant).sum()
    if normalization == "mean":
        return total / logits.numel()
    if normalization == "weighted":
        return total / (labels + unlabeled_weight * (1 - labels)).sum().clamp_min(1e-12)
    raise ValueError(f"unknown normalization {normalization!r}")


def unbiased_pairwise_loss(
    positive_logits: torch.Tensor,
    negative_logits: torch.Tensor,
    positive_propensity: torch.Tensor,
    negative_labels: torch.Tensor,
    negative_propensity: torch.Tensor,
    *,
    clip_min: float = 0.0,
    nonnegative_beta: float | None = None,
) -> torch.Tensor:
    """UBPR (Saito, ICTIR 2020): ``mean[(1/θ_ui)(1 − Y_uj/θ_uj)·(−log σ(ŝ_ui − ŝ_uj))]`` over clicked ``(u, i)``.

    Args:
        positive_logits: scores of clicked pairs ``(u, i)``.
        negative_logits: scores of sampled pairs ``(u, j)`` (any item, clicked or not).
        positive_propensity: θ of the clicked pairs.
        negative_labels: clicks ``Y_uj`` of the sampled pairs.
        negative_propensity: θ of the sampled pairs (only matters where ``Y_uj = 1``).
        clip_min: lower clip ``M`` on all propensities.
        nonnegative_beta: when set, the batch loss is clipped from below at ``−β`` (the estimator can go
            negative because ``1 − Y/θ < 0`` for clicked ``j``).

    Returns:
        Scalar loss.
    """
    theta_pos = positive_propensity.clamp_min(clip_min) if clip_min > 0 else positive_propensity
    theta_neg = negative_propensity.clamp_min(clip_min) if clip_min > 0 else negative_propensity
    weight = (1.0 / theta_pos) * (1.0 - negative_labels / theta_neg)
    value = (weight * F.softplus(-(positive_logits - negative_logits))).mean()
    if nonnegative_beta is not None:
        value = torch.clamp(value, min=-nonnegative_beta)
    return value


@dataclass
class EstimatorSpec:
    """How one named estimator turns a batch into a loss.

    Attributes:
        name: one of :data:`ALL_ESTIMATORS`.
        loss: local loss for pointwise estimators.
        clip_min: ``M`` for ``relmf_clipped`` (and UBPR's propensity clip).
        unlabeled_weight: ``w`` for WMF.
        normalization: see :func:`pointwise_debiasing_loss`.
        nonnegative_beta: UBPR's non-negative clip ``β`` (None: off).
    """

    name: str
    loss: LocalLoss = "log"
    clip_min: float = 0.0
    unlabeled_weight: float = 1.0
    normalization: Literal["mean", "weighted"] = "mean"
    nonnegative_beta: float | None = None

    def __post_init__(self) -> None:
        if self.name not in ALL_ESTIMATORS:
            raise ValueError(f"unknown estimator {self.name!r}; choose from {', '.join(ALL_ESTIMATORS)}")
        if self.name.startswith("relmf_clipped") and not 0 < self.clip_min <= 1:
            raise ValueError(f"relmf_clipped needs a clip M in (0, 1], got {self.clip_min}")

    def pointwise_loss(self, logits: torch.Tensor, batch: PairBatch) -> torch.Tensor:
        """The estimator's pointwise loss on ``batch`` (not for ``ubpr``/``expomf``)."""
        uses_propensity = self.name in ("relmf", "relmf_clipped")
        return pointwise_debiasing_loss(
            logits,
            batch.labels,
            batch.propensity if uses_propensity else None,
            loss=self.loss,
            clip_min=self.clip_min if self.name == "relmf_clipped" else 0.0,
            unlabeled_weight=self.unlabeled_weight if self.name == "wmf" else 1.0,
            normalization=self.normalization,
        )
