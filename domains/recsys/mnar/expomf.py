"""ExpoMF (Liang et al., WWW 2016): exposure-aware matrix factorisation fitted by EM, a baseline of the MNAR runs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from domains.recsys.mnar.alternating_least_squares import batched_conjugate_gradient
from domains.recsys.mnar.feedback import ImplicitFeedback
from domains.recsys.mnar.models import PointwiseMF


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
        return PointwiseMF.from_factors(self.user_factors, self.item_factors)


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


def _weighted_ridge_rows_by_conjugate_gradient(
    start: torch.Tensor, weights: torch.Tensor, targets: torch.Tensor, other: torch.Tensor, ridge: float, steps: int
) -> torch.Tensor:
    """A few CG steps on every row's ridge system at once, warm-started at ``start``; the Gram matrices are never
    formed: ``A_r v = Σ_j w_rj (o_j·v) o_j + ridge·v`` is two dense products for all rows, ``O(R·J·d)`` instead
    of the exact solver's ``O(R·J·d²)``."""

    def multiply(vectors: torch.Tensor) -> torch.Tensor:
        return (weights * (vectors @ other.T)) @ other + ridge * vectors

    return batched_conjugate_gradient(multiply, (weights * targets) @ other, start, steps)


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
    row_solver: Literal["exact", "cg"] = "exact",
    cg_steps: int = 3,
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
        row_solver: ``exact`` (one d×d system per row: ``O(n_users·n_items·d²)`` per M-step, as in Liang et
            al.'s code) or ``cg`` (``cg_steps`` warm-started conjugate-gradient steps per M-step,
            ``O(n_users·n_items·d)``: what makes the paper's dimension 200 affordable on a CPU).
        cg_steps: conjugate-gradient steps per M-step and side.

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
        if row_solver == "cg":
            user_f = _weighted_ridge_rows_by_conjugate_gradient(
                user_f, noise_precision * exposure, clicks, item_f, lam, cg_steps
            )
            item_f = _weighted_ridge_rows_by_conjugate_gradient(
                item_f, noise_precision * exposure.T, clicks.T, user_f, lam, cg_steps
            )
        else:
            user_f = _weighted_ridge_rows(noise_precision * exposure, clicks, item_f, lam, chunk)
            item_f = _weighted_ridge_rows(noise_precision * exposure.T, clicks.T, user_f, lam, chunk)
        mu = ((prior_a + exposure.sum(0) - 1) / (prior_a + prior_b + n_users - 2)).clamp(1e-6, 1 - 1e-6)
    unclicked = clicks == 0
    posterior_mean = float(exposure[unclicked].mean()) if bool(unclicked.any()) else 1.0
    return ExpoMFResult(
        user_f.cpu().numpy(), item_f.cpu().numpy(), mu.cpu().numpy(), exposure_posterior_mean=posterior_mean
    )
