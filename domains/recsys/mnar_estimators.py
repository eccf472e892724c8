"""Estimators for learning from missing-not-at-random (MNAR) implicit feedback.

The click model (Saito et al., WSDM 2020): a click ``Y = O·R`` needs exposure ``O ~ Bern(θ)`` and relevance
``R ~ Bern(γ)``. Training on clicks as if they were relevance (the *naive* loss) learns ``θ·γ``, which
favours popular, over-exposed items. This module provides one pointwise matrix factorisation model and the
losses that train it:

* ``oracle``: the ideal loss on the true relevance probability ``γ`` (only in simulations),
* ``naive``: clicks as labels,
* ``wmf``: clicks as labels with a down-weighted unlabeled term (weighted MF),
* ``relmf``: the unbiased inverse-propensity loss ``(Y/θ)δ¹ + (1 − Y/θ)δ⁰`` (Rel-MF),
* ``relmf_clipped``: the same with ``θ`` replaced by ``max(θ, M)``,
* ``ubpr``: the unbiased pairwise (BPR) loss ``(Y_ui/θ_ui)(1 − Y_uj/θ_uj)·(−log σ(ŝ_ui − ŝ_uj))``,
* ``expomf``: exposure-aware MF fitted by EM (Liang et al., WWW 2016), see :func:`fit_expomf`.

Local losses: ``log`` (``δ¹ = −log ŷ``, ``δ⁰ = −log(1 − ŷ)``) or ``squared`` (``δ¹ = (1 − ŷ)²``,
``δ⁰ = ŷ²``, the form of the authors' real-data code); ``ŷ = σ(logit)``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

POINTWISE_ESTIMATORS = ("oracle", "naive", "wmf", "relmf", "relmf_clipped")
"""Estimators trained with :func:`pointwise_debiasing_loss`."""

ALL_ESTIMATORS = (*POINTWISE_ESTIMATORS, "ubpr", "expomf")
"""Every estimator name the ``mnar`` command accepts."""

LocalLoss = Literal["log", "squared"]


def item_popularity_propensity(
    click_items: np.ndarray, n_items: int, eta: float = 0.5, min_count: float = 1.0
) -> np.ndarray:
    """Item exposure propensities from relative popularity: ``θ_i = (n_i / max_j n_j)^η``.

    Args:
        click_items: item index (0-based) of every positive interaction in the training log.
        n_items: number of items; items never clicked get ``min_count`` clicks so ``θ_i > 0``.
        eta: power ``η`` (0.5 in Saito et al.; 0 gives uniform propensities, i.e. the naive loss).
        min_count: floor on the click count (a click never seen cannot have zero exposure).

    Returns:
        ``(n_items,)`` float64 array of propensities in ``(0, 1]``.
    """
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    counts = np.bincount(np.asarray(click_items, dtype=np.int64), minlength=n_items).astype(np.float64)
    if counts.size > n_items:
        raise ValueError(f"click item index {counts.size - 1} is out of range for {n_items} items")
    counts = np.maximum(counts, min_count)
    return (counts / counts.max()) ** eta


@dataclass(frozen=True)
class ImplicitFeedback:
    """Positive (clicked) user–item pairs on a ``n_users × n_items`` grid; every other pair is unlabeled.

    Attributes:
        n_users: number of users (indices ``0..n_users-1``).
        n_items: number of items.
        users: user index of each click.
        items: item index of each click.
        propensity: exposure propensity ``θ`` of each click (1.0 when unknown).
    """

    n_users: int
    n_items: int
    users: np.ndarray
    items: np.ndarray
    propensity: np.ndarray

    @classmethod
    def from_clicks(
        cls,
        n_users: int,
        n_items: int,
        users: np.ndarray,
        items: np.ndarray,
        propensity: np.ndarray | None = None,
    ) -> ImplicitFeedback:
        """Validate and deduplicate clicks (a repeated pair keeps its first propensity)."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        if users.shape != items.shape:
            raise ValueError("users and items must have the same length")
        if users.size and (users.min() < 0 or users.max() >= n_users):
            raise ValueError(f"user index out of range [0, {n_users})")
        if items.size and (items.min() < 0 or items.max() >= n_items):
            raise ValueError(f"item index out of range [0, {n_items})")
        theta = np.ones(users.size) if propensity is None else np.asarray(propensity, dtype=np.float64)
        if theta.shape != users.shape:
            raise ValueError("propensity must have one value per click")
        if theta.size and (not np.all(np.isfinite(theta)) or theta.min() <= 0 or theta.max() > 1):
            raise ValueError("propensities of clicked pairs must lie in (0, 1]")
        keys, first = np.unique(users * n_items + items, return_index=True)
        return cls(n_users, n_items, keys // n_items, keys % n_items, theta[first])

    @cached_property
    def keys(self) -> np.ndarray:
        """Sorted flat pair keys ``user·n_items + item`` of the clicks."""
        return self.users * self.n_items + self.items

    def lookup(self, users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(click, propensity)`` for arbitrary pairs; unclicked pairs get click 0, propensity 1."""
        keys = self.keys
        query = np.asarray(users, dtype=np.int64) * self.n_items + np.asarray(items, dtype=np.int64)
        position = np.searchsorted(keys, query)
        position_clipped = np.minimum(position, max(keys.size - 1, 0))
        hit = (keys.size > 0) & (position < keys.size) & (keys[position_clipped] == query)
        theta = np.where(hit, self.propensity[position_clipped] if keys.size else 1.0, 1.0)
        return hit.astype(np.float32), theta

    def item_click_counts(self) -> np.ndarray:
        """Number of clicks per item."""
        return np.bincount(self.items, minlength=self.n_items)


@dataclass
class PairBatch:
    """A minibatch of user–item pairs with their training label and propensity."""

    users: torch.Tensor
    items: torch.Tensor
    labels: torch.Tensor
    propensity: torch.Tensor


class PairSampler:
    """Draws minibatches of pairs for the pointwise losses.

    Two modes: uniform over a set of candidate pairs (the semi-synthetic protocol; ``candidate_keys`` given),
    or positive/unlabeled balanced as in the authors' real-data code (``positive_fraction`` of each batch
    from the clicks, the rest uniform from the unclicked pairs of the grid).

    Args:
        feedback: the clicks (labels and propensities).
        candidate_keys: flat pair keys to sample uniformly from; ``None`` means the whole grid.
        positive_fraction: when set, the share of clicks in each batch (e.g. 0.5); overrides uniform sampling.
        soft_labels: optional dense ``(n_users, n_items)`` label matrix (e.g. true ``γ`` for the oracle) used
            instead of the clicks.
        seed: random seed.
    """

    def __init__(
        self,
        feedback: ImplicitFeedback,
        candidate_keys: np.ndarray | None = None,
        positive_fraction: float | None = None,
        soft_labels: np.ndarray | None = None,
        seed: int = 0,
    ) -> None:
        if positive_fraction is not None and not 0 < positive_fraction < 1:
            raise ValueError(f"positive_fraction must lie in (0, 1), got {positive_fraction}")
        if positive_fraction is not None and feedback.users.size == 0:
            raise ValueError("positive/unlabeled sampling needs at least one click")
        if soft_labels is not None and soft_labels.shape != (feedback.n_users, feedback.n_items):
            raise ValueError("soft_labels must have shape (n_users, n_items)")
        self.feedback = feedback
        self.candidate_keys = None if candidate_keys is None else np.asarray(candidate_keys, dtype=np.int64)
        self.positive_fraction = positive_fraction
        self.soft_labels = soft_labels
        self.rng = np.random.default_rng(seed)

    def _unclicked_keys(self, size: int) -> np.ndarray:
        grid = self.feedback.n_users * self.feedback.n_items
        if self.feedback.users.size >= grid:
            raise ValueError("every pair is clicked: there are no unlabeled pairs to sample")
        clicked = self.feedback.keys
        out = np.empty(0, dtype=np.int64)
        while out.size < size:  # rejection sampling; clicks are a small share of any real grid
            draw = self.rng.integers(0, grid, size=2 * (size - out.size) + 16)
            position = np.minimum(np.searchsorted(clicked, draw), clicked.size - 1)
            out = np.concatenate([out, draw[clicked[position] != draw] if clicked.size else draw])
        return out[:size]

    def sample_keys(self, batch_size: int) -> np.ndarray:
        """Draw ``batch_size`` flat pair keys (with replacement)."""
        if self.positive_fraction is not None:
            n_pos = int(round(batch_size * self.positive_fraction))
            pos = self.rng.integers(0, self.feedback.users.size, size=n_pos)
            return np.concatenate([self.feedback.keys[pos], self._unclicked_keys(batch_size - n_pos)])
        if self.candidate_keys is not None:
            return self.candidate_keys[self.rng.integers(0, self.candidate_keys.size, size=batch_size)]
        return self.rng.integers(0, self.feedback.n_users * self.feedback.n_items, size=batch_size)

    def batch_for_keys(self, keys: np.ndarray, device: torch.device | str = "cpu") -> PairBatch:
        """Labels and propensities of the given flat pair keys as tensors on ``device``."""
        users, items = keys // self.feedback.n_items, keys % self.feedback.n_items
        clicks, theta = self.feedback.lookup(users, items)
        labels = clicks if self.soft_labels is None else self.soft_labels[users, items]
        return PairBatch(
            users=torch.as_tensor(users, device=device),
            items=torch.as_tensor(items, device=device),
            labels=torch.as_tensor(labels, dtype=torch.float32, device=device),
            propensity=torch.as_tensor(theta, dtype=torch.float32, device=device),
        )

    def sample(self, batch_size: int, device: torch.device | str = "cpu") -> PairBatch:
        """Draw one minibatch."""
        return self.batch_for_keys(self.sample_keys(batch_size), device)


class PointwiseMF(nn.Module):
    """Matrix factorisation with a sigmoid link: ``ŷ_ui = σ(p_u·q_i + b_u + b_i + b)``.

    Args:
        n_users: number of users.
        n_items: number of items.
        dim: latent dimension.
        use_bias: add user, item and global biases (the semi-synthetic protocol does; Rel-MF real-data
            code does not).
        seed: seed of the Xavier-uniform initialisation.
    """

    def __init__(self, n_users: int, n_items: int, dim: int, use_bias: bool = True, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        bound_user = math.sqrt(6.0 / (n_users + dim))
        bound_item = math.sqrt(6.0 / (n_items + dim))
        self.user_factors = nn.Parameter((torch.rand(n_users, dim, generator=generator) * 2 - 1) * bound_user)
        self.item_factors = nn.Parameter((torch.rand(n_items, dim, generator=generator) * 2 - 1) * bound_item)
        self.use_bias = use_bias
        if use_bias:
            self.user_bias = nn.Parameter(torch.randn(n_users, generator=generator) * 0.01)
            self.item_bias = nn.Parameter(torch.randn(n_items, generator=generator) * 0.01)
            self.global_bias = nn.Parameter(torch.full((1,), 1e-3))

    def logits(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits of the given pairs, shape ``(B,)``."""
        out = (self.user_factors[users] * self.item_factors[items]).sum(-1)
        if self.use_bias:
            out = out + self.user_bias[users] + self.item_bias[items] + self.global_bias
        return out

    @torch.no_grad()
    def score_matrix(self, users: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of every item for the given users (all users by default), shape ``(U, n_items)``."""
        user_factors = self.user_factors if users is None else self.user_factors[users]
        out = user_factors @ self.item_factors.T
        if self.use_bias:
            user_bias = self.user_bias if users is None else self.user_bias[users]
            out = out + user_bias[:, None] + self.item_bias[None, :] + self.global_bias
        return out

    def l2_penalty(self) -> torch.Tensor:
        """``½‖P‖² + ½‖Q‖²`` (+ biases), the regulariser of the released code."""
        penalty = 0.5 * (self.user_factors.square().sum() + self.item_factors.square().sum())
        if self.use_bias:
            penalty = penalty + 0.5 * (self.user_bias.square().sum() + self.item_bias.square().sum())
        return penalty


class ReplicatedPointwiseMF(nn.Module):
    """``R`` independent :class:`PointwiseMF` models held in stacked tensors and trained in one pass.

    Summing the replicas' losses gives every replica exactly the gradient it would get alone (no parameter
    is shared), so SGD or Adam on the stack equals ``R`` separate fits, at a fraction of the Python overhead.
    Replica ``r`` starts from the same initialisation as ``PointwiseMF(..., seed=seeds[r])``.

    Args:
        n_users: number of users.
        n_items: number of items.
        dim: latent dimension.
        seeds: one initialisation seed per replica.
        use_bias: user/item/global biases.
    """

    def __init__(self, n_users: int, n_items: int, dim: int, seeds: list[int], use_bias: bool = True) -> None:
        super().__init__()
        singles = [PointwiseMF(n_users, n_items, dim, use_bias=use_bias, seed=s) for s in seeds]
        self.n_users, self.n_items, self.dim, self.use_bias = n_users, n_items, dim, use_bias
        self.user_factors = nn.Parameter(torch.stack([m.user_factors.data for m in singles]))
        self.item_factors = nn.Parameter(torch.stack([m.item_factors.data for m in singles]))
        if use_bias:
            self.user_bias = nn.Parameter(torch.stack([m.user_bias.data for m in singles]))
            self.item_bias = nn.Parameter(torch.stack([m.item_bias.data for m in singles]))
            self.global_bias = nn.Parameter(torch.stack([m.global_bias.data for m in singles]))

    @property
    def n_replicas(self) -> int:
        """Number of replicas ``R``."""
        return self.user_factors.shape[0]

    def logits(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits of replica-specific pairs: ``users`` and ``items`` of shape ``(R, B)`` → ``(R, B)``."""
        replicas = torch.arange(self.n_replicas, device=users.device)[:, None]
        # index_select on flattened views: its backward (index_add) is far cheaper than advanced indexing's
        user_rows = (users + replicas * self.n_users).reshape(-1)
        item_rows = (items + replicas * self.n_items).reshape(-1)
        user_vectors = self.user_factors.view(-1, self.dim).index_select(0, user_rows)
        item_vectors = self.item_factors.view(-1, self.dim).index_select(0, item_rows)
        out = (user_vectors * item_vectors).sum(-1).view(users.shape)
        if self.use_bias:
            out = (
                out
                + self.user_bias.view(-1).index_select(0, user_rows).view(users.shape)
                + self.item_bias.view(-1).index_select(0, item_rows).view(users.shape)
                + self.global_bias
            )
        return out

    @torch.no_grad()
    def score_matrices(self) -> torch.Tensor:
        """Logits of every user–item pair for every replica, shape ``(R, n_users, n_items)``."""
        if not self.use_bias:
            return torch.bmm(self.user_factors, self.item_factors.transpose(1, 2))
        # one batched matmul over augmented factors [p_u, b_u + b, 1]·[q_i, 1, b_i] includes all biases
        ones_u = torch.ones_like(self.user_bias)[:, :, None]
        ones_i = torch.ones_like(self.item_bias)[:, :, None]
        users = torch.cat([self.user_factors, (self.user_bias + self.global_bias)[:, :, None], ones_u], dim=2)
        items = torch.cat([self.item_factors, ones_i, self.item_bias[:, :, None]], dim=2)
        return torch.bmm(users, items.transpose(1, 2))

    def l2_penalty(self) -> torch.Tensor:
        """Sum over replicas of :meth:`PointwiseMF.l2_penalty`."""
        penalty = 0.5 * (self.user_factors.square().sum() + self.item_factors.square().sum())
        if self.use_bias:
            penalty = penalty + 0.5 * (self.user_bias.square().sum() + self.item_bias.square().sum())
        return penalty

    @torch.no_grad()
    def copy_replicas_from(self, other: ReplicatedPointwiseMF, mask: torch.Tensor) -> None:
        """Overwrite the replicas selected by the boolean ``mask`` (shape ``(R,)``) with ``other``'s."""
        for name, param in self.named_parameters():
            param[mask] = other.get_parameter(name)[mask]

    def replica(self, index: int) -> PointwiseMF:
        """Replica ``index`` as a stand-alone :class:`PointwiseMF` (a copy)."""
        model = PointwiseMF(self.n_users, self.n_items, self.dim, use_bias=self.use_bias)
        with torch.no_grad():
            for name, param in model.named_parameters():
                param.copy_(self.get_parameter(name)[index].cpu())
        return model


def local_losses(logits: torch.Tensor, loss: LocalLoss) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair ``(δ¹, δ⁰)``: the loss of predicting ``σ(logit)`` for a relevant / irrelevant pair."""
    if loss == "log":
        return F.softplus(-logits), F.softplus(logits)  # −log σ(x), −log(1 − σ(x)), overflow-safe
    if loss == "squared":
        prob = torch.sigmoid(logits)
        return (1 - prob).square(), prob.square()
    raise ValueError(f"unknown local loss {loss!r}; use 'log' or 'squared'")


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
        loss: local loss, ``"log"`` or ``"squared"``.
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
        if self.name == "relmf_clipped" and not 0 < self.clip_min <= 1:
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


@dataclass
class FitResult:
    """Outcome of one fit: the (best) model, the step it came from and the validation history."""

    model: PointwiseMF
    best_step: int
    best_validation: float
    history: list[tuple[int, float]]
    pairs_seen: int


def fit_mf(
    model: PointwiseMF,
    loss_for_batch: Callable[[PointwiseMF], torch.Tensor],
    *,
    iterations: int,
    optimizer: Literal["sgd", "adam"] = "adam",
    lr: float = 0.005,
    l2: float = 0.0,
    validate: Callable[[PointwiseMF], float] | None = None,
    validate_every: int = 10,
    pairs_per_step: int = 0,
) -> FitResult:
    """Minimise ``loss_for_batch(model) + l2·penalty`` for a fixed number of steps.

    The fits here are tiny (thousands of parameters, hundreds to thousands of steps, dozens of fits per
    experiment), so they run in this plain loop rather than through the checkpointing trainer; the model with
    the lowest validation value (when ``validate`` is given) is kept, as in the authors' protocol.

    Args:
        model: the model (updated in place; the returned model is the best copy).
        loss_for_batch: draws a batch and returns its loss.
        iterations: optimiser steps.
        optimizer: ``"sgd"`` or ``"adam"``.
        lr: learning rate.
        l2: weight of :meth:`PointwiseMF.l2_penalty`.
        validate: returns a value to minimise; called every ``validate_every`` steps and at the end.
        validate_every: validation period in steps.
        pairs_per_step: pairs per batch, only for the ``pairs_seen`` count.

    Returns:
        The :class:`FitResult`.
    """
    if iterations < 1:
        raise ValueError("iterations must be >= 1")
    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=lr) if optimizer == "sgd" else torch.optim.Adam(params, lr=lr)
    history: list[tuple[int, float]] = []
    best_state, best_step, best_value = None, iterations, math.inf
    for step in range(1, iterations + 1):
        model.train()
        loss = loss_for_batch(model)
        if l2 > 0:
            loss = loss + l2 * model.l2_penalty()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss at step {step}; lower the learning rate")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if validate is not None and (step % validate_every == 0 or step == iterations):
            model.eval()
            with torch.no_grad():
                value = float(validate(model))
            history.append((step, value))
            if value < best_value:
                best_value, best_step = value, step
                best_state = copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    return FitResult(model, best_step, best_value, history, pairs_per_step * iterations)


def fit_pointwise(
    sampler: PairSampler,
    spec: EstimatorSpec,
    *,
    dim: int,
    iterations: int,
    batch_size: int,
    optimizer: Literal["sgd", "adam"] = "adam",
    lr: float = 0.005,
    l2: float = 1e-4,
    use_bias: bool = False,
    seed: int = 0,
    validate: Callable[[PointwiseMF], float] | None = None,
    validate_every: int = 10,
    device: torch.device | str = "cpu",
) -> FitResult:
    """Train a :class:`PointwiseMF` with a pointwise estimator (``oracle``, ``naive``, ``wmf``, ``relmf*``).

    Args:
        sampler: draws the training pairs (its labels are ``γ`` for the oracle, clicks otherwise).
        spec: the estimator.
        dim: latent dimension.
        iterations: optimiser steps.
        batch_size: pairs per step.
        optimizer: ``"sgd"`` or ``"adam"``.
        lr: learning rate.
        l2: L2 weight ``λ``.
        use_bias: user/item/global biases.
        seed: initialisation seed (the sampler carries its own).
        validate: optional model-selection criterion (lower is better).
        validate_every: validation period.
        device: torch device.

    Returns:
        The :class:`FitResult`.
    """
    if spec.name not in POINTWISE_ESTIMATORS:
        raise ValueError(f"{spec.name!r} is not a pointwise estimator")
    fb = sampler.feedback
    model = PointwiseMF(fb.n_users, fb.n_items, dim, use_bias=use_bias, seed=seed).to(device)

    def loss_for_batch(m: PointwiseMF) -> torch.Tensor:
        batch = sampler.sample(batch_size, device)
        return spec.pointwise_loss(m.logits(batch.users, batch.items), batch)

    return fit_mf(
        model,
        loss_for_batch,
        iterations=iterations,
        optimizer=optimizer,
        lr=lr,
        l2=l2,
        validate=validate,
        validate_every=validate_every,
        pairs_per_step=batch_size,
    )


def fit_ubpr(
    feedback: ImplicitFeedback,
    spec: EstimatorSpec,
    *,
    dim: int,
    iterations: int,
    batch_size: int,
    optimizer: Literal["sgd", "adam"] = "adam",
    lr: float = 0.005,
    l2: float = 1e-4,
    seed: int = 0,
    validate: Callable[[PointwiseMF], float] | None = None,
    validate_every: int = 10,
    device: torch.device | str = "cpu",
) -> FitResult:
    """Train MF with the unbiased pairwise loss: clicked ``(u, i)`` against uniformly drawn items ``j``.

    Args mirror :func:`fit_pointwise`; ``spec.clip_min`` clips propensities and ``spec.nonnegative_beta``
    enables the non-negative clip.
    """
    if feedback.users.size == 0:
        raise ValueError("UBPR needs at least one click")
    model = PointwiseMF(feedback.n_users, feedback.n_items, dim, use_bias=False, seed=seed).to(device)
    rng = np.random.default_rng(seed)

    def loss_for_batch(m: PointwiseMF) -> torch.Tensor:
        pick = rng.integers(0, feedback.users.size, size=batch_size)
        users, items = feedback.users[pick], feedback.items[pick]
        negatives = rng.integers(0, feedback.n_items, size=batch_size)
        neg_clicks, neg_theta = feedback.lookup(users, negatives)
        users_t = torch.as_tensor(users, device=device)
        return unbiased_pairwise_loss(
            m.logits(users_t, torch.as_tensor(items, device=device)),
            m.logits(users_t, torch.as_tensor(negatives, device=device)),
            torch.as_tensor(feedback.propensity[pick], dtype=torch.float32, device=device),
            torch.as_tensor(neg_clicks, dtype=torch.float32, device=device),
            torch.as_tensor(neg_theta, dtype=torch.float32, device=device),
            clip_min=spec.clip_min,
            nonnegative_beta=spec.nonnegative_beta,
        )

    return fit_mf(
        model,
        loss_for_batch,
        iterations=iterations,
        optimizer=optimizer,
        lr=lr,
        l2=l2,
        validate=validate,
        validate_every=validate_every,
        pairs_per_step=batch_size,
    )


@dataclass
class ExpoMFResult:
    """Factors and exposure priors of a fitted ExpoMF model.

    Attributes:
        user_factors: ``(n_users, dim)`` user factors θ_u.
        item_factors: ``(n_items, dim)`` item factors β_i.
        exposure_prior: ``(n_items,)`` per-item exposure prior μ_i.
        exposure_posterior_mean: mean posterior exposure of unclicked pairs after the last E-step.
    """

    user_factors: np.ndarray
    item_factors: np.ndarray
    exposure_prior: np.ndarray
    exposure_posterior_mean: float

    def as_model(self) -> PointwiseMF:
        """The factors as a :class:`PointwiseMF` (no biases) so the same evaluation code applies."""
        n_users, dim = self.user_factors.shape
        model = PointwiseMF(n_users, self.item_factors.shape[0], dim, use_bias=False)
        with torch.no_grad():
            model.user_factors.copy_(torch.as_tensor(self.user_factors))
            model.item_factors.copy_(torch.as_tensor(self.item_factors))
        return model


def _weighted_ridge_rows(
    weights: torch.Tensor, targets: torch.Tensor, other: torch.Tensor, ridge: float, chunk: int
) -> torch.Tensor:
    """Solve ``(Σ_j w_rj o_j o_jᵀ + ridge·I) x_r = Σ_j w_rj y_rj o_j`` for every row ``r``."""
    dim = other.shape[1]
    eye = torch.eye(dim, dtype=other.dtype, device=other.device) * ridge
    rows = []
    for start in range(0, weights.shape[0], chunk):
        w = weights[start : start + chunk]
        gram = torch.einsum("rj,jd,je->rde", w, other, other) + eye
        rhs = (w * targets[start : start + chunk]) @ other
        rows.append(torch.linalg.solve(gram, rhs.unsqueeze(-1)).squeeze(-1))
    return torch.cat(rows)


def fit_expomf(
    feedback: ImplicitFeedback,
    *,
    dim: int = 30,
    iterations: int = 10,
    lam: float = 1e-4,
    noise_precision: float = 1.0,
    init_exposure: float = 0.01,
    prior_a: float = 1.0,
    prior_b: float = 1.0,
    seed: int = 0,
    max_grid: int = 50_000_000,
    device: torch.device | str = "cpu",
) -> ExpoMFResult:
    """Exposure MF (Liang et al., WWW 2016) by EM, with per-item exposure priors μ_i.

    Generative model: ``a_ui ~ Bern(μ_i)``; ``y_ui | a_ui = 1 ~ N(θ_uᵀβ_i, 1/λ_y)``; ``y_ui = 0`` if
    ``a_ui = 0``. E-step: for unclicked pairs
    ``p_ui = μ_i N(0 | θ_uᵀβ_i, 1/λ_y) / (μ_i N(0 | θ_uᵀβ_i, 1/λ_y) + 1 − μ_i)`` (clicked pairs: 1).
    M-step: exposure-weighted ridge regressions for θ and β, then
    ``μ_i = (a + Σ_u p_ui − 1) / (a + b + n_users − 2)``.

    Args:
        feedback: the clicks (propensities unused).
        dim: latent dimension.
        iterations: EM iterations.
        lam: ridge weight on the factors (λ_θ = λ_β).
        noise_precision: λ_y.
        init_exposure: initial μ_i.
        prior_a: Beta prior ``a`` on μ_i.
        prior_b: Beta prior ``b`` on μ_i.
        seed: initialisation seed.
        max_grid: refuse grids with more pairs than this (the E-step is dense).
        device: torch device.

    Returns:
        The fitted :class:`ExpoMFResult`.
    """
    n_users, n_items = feedback.n_users, feedback.n_items
    if n_users * n_items > max_grid:
        raise ValueError(
            f"ExpoMF's dense E-step needs {n_users}x{n_items} pairs (> max_grid={max_grid}); "
            "use a smaller dataset or raise max_grid"
        )
    generator = torch.Generator().manual_seed(seed)
    clicks = torch.zeros(n_users, n_items, dtype=torch.float32)
    clicks[torch.as_tensor(feedback.users), torch.as_tensor(feedback.items)] = 1.0
    clicks = clicks.to(device)
    user_f = (0.01 * torch.randn(n_users, dim, generator=generator)).to(device)
    item_f = (0.01 * torch.randn(n_items, dim, generator=generator)).to(device)
    mu = torch.full((n_items,), init_exposure, device=device)
    chunk = max(1, int(2e7 // max(1, n_items * dim)))
    log_norm_const = 0.5 * math.log(noise_precision / (2 * math.pi))
    exposure = clicks.clone()
    for _ in range(iterations):
        pred = user_f @ item_f.T
        log_likelihood_zero = log_norm_const - 0.5 * noise_precision * pred.square()
        log_mu = torch.log(mu.clamp(1e-12, 1 - 1e-12))
        log_not = torch.log1p(-mu.clamp(1e-12, 1 - 1e-12))
        exposure_unclicked = torch.sigmoid(log_mu + log_likelihood_zero - log_not)
        exposure = torch.where(clicks > 0, torch.ones_like(clicks), exposure_unclicked)
        user_f = _weighted_ridge_rows(noise_precision * exposure, clicks, item_f, lam, chunk)
        item_f = _weighted_ridge_rows(noise_precision * exposure.T, clicks.T, user_f, lam, chunk)
        mu = ((prior_a + exposure.sum(0) - 1) / (prior_a + prior_b + n_users - 2)).clamp(1e-6, 1 - 1e-6)
    unclicked = clicks == 0
    posterior_mean = float(exposure[unclicked].mean()) if bool(unclicked.any()) else 1.0
    return ExpoMFResult(
        user_f.cpu().numpy(), item_f.cpu().numpy(), mu.cpu().numpy(), exposure_posterior_mean=posterior_mean
    )
