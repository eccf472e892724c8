"""Closed-form alternating least squares for WMF and the linear-score Rel-MF objectives.

Every objective here is a weighted least-squares fit of a linear score ``r_ui = x_u·y_i`` over ALL user–item
pairs, with one weight for unclicked pairs and per-click weights and targets:

    L(X, Y) = Σ_{clicked} b_ui (t_ui − r_ui)² + a Σ_{unclicked} r_ui² + λ (‖X‖² + ‖Y‖²).

* WMF / ``implicit``'s ALS (Hu et al., 2008): ``a = 1``, ``b = α`` (confidence of a click), ``t = 1``. The
  paper's WMF weights unlabeled pairs by ``w`` instead: ``a = w``, ``b = 1``, ``t = 1``.
* Rel-MF with the squared local loss on a linear score: the unbiased loss over all pairs
  ``Σ [(Y/θ)(1 − r)² + (1 − Y/θ) r²]`` expands to ``Σ [r² − 2 (Y/θ) r + Y/θ]`` = ``Σ (r − Y/θ)²`` + a constant
  that does not depend on the factors. So it is least squares with unit weight on every pair (``a = b = 1``)
  and target ``t = 1/θ`` on clicked pairs (0 elsewhere); clipped Rel-MF uses ``1/max(θ, M)``. With the
  authors' down-weighted second term ``w (1 − Y/θ) r²`` it is ``a = w``, ``b = w + (1 − w)/θ``,
  ``t = (1/θ)/b`` (see :func:`relmf_least_squares_terms`).

With the other side fixed, each row has the closed-form solution
``x_u = (a YᵀY + Σ_{i clicked by u} (b_ui − a) y_i y_iᵀ + λI)⁻¹ Σ_{i clicked by u} b_ui t_ui y_i``.
When every ``b = a`` (Rel-MF) the matrix is the same for all rows: one Cholesky factorisation per half-sweep,
a sparse–dense product and a triangular solve, cheaper than WMF's per-row systems. The paper's Rel-MF uses a
sigmoid link and the log loss, which has no closed form; it stays a gradient fit
(:mod:`domains.recsys.mnar.training`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch

from domains.recsys.mnar.feedback import ImplicitFeedback
from domains.recsys.mnar.models import PointwiseMF


@dataclass(frozen=True)
class LeastSquaresProblem:
    """The clicked pairs of a weighted least-squares objective (every other pair: weight ``a``, target 0).

    Attributes:
        n_users: number of users.
        n_items: number of items.
        users: user of each clicked pair (no duplicates).
        items: item of each clicked pair.
        targets: ``t_ui`` of each clicked pair.
        weights: ``b_ui`` of each clicked pair (≥ 0).
        unlabeled_weight: ``a``, the weight of every unclicked pair (> 0).
    """

    n_users: int
    n_items: int
    users: np.ndarray
    items: np.ndarray
    targets: np.ndarray
    weights: np.ndarray
    unlabeled_weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.users.shape == self.items.shape == self.targets.shape == self.weights.shape:
            raise ValueError("users, items, targets and weights must have one value per clicked pair")
        if self.unlabeled_weight <= 0 or (self.weights.size and self.weights.min() < 0):
            raise ValueError("weights must be >= 0 and the unlabeled weight > 0")


def relmf_least_squares_terms(
    propensity: np.ndarray, clip_min: float = 0.0, unlabeled_weight: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Per-click weights ``b`` and targets ``t`` of Rel-MF's squared loss on a linear score.

    ``(Y/θ)(1 − r)² + w (1 − Y/θ) r²`` on a clicked pair is ``b (t − r)²`` + const with
    ``b = w + (1 − w)/θ`` and ``t = (1/θ)/b``; unclicked pairs contribute ``w r²``. With ``w = 1`` (the unbiased
    loss): ``b = 1``, ``t = 1/θ``.

    Args:
        propensity: θ of each click, in (0, 1].
        clip_min: ``M``: θ is replaced by ``max(θ, M)`` (0: no clipping).
        unlabeled_weight: ``w``.

    Returns:
        ``(weights b, targets t)``.
    """
    theta = np.maximum(np.asarray(propensity, dtype=np.float64), clip_min)
    inverse = 1.0 / theta
    weights = unlabeled_weight + (1.0 - unlabeled_weight) * inverse
    return weights, inverse / weights


def relmf_problem(
    feedback: ImplicitFeedback, clip_min: float = 0.0, unlabeled_weight: float = 1.0
) -> LeastSquaresProblem:
    """Rel-MF (clipped when ``clip_min > 0``) on ``feedback``'s clicks and propensities, as least squares."""
    weights, targets = relmf_least_squares_terms(feedback.propensity, clip_min, unlabeled_weight)
    return LeastSquaresProblem(
        feedback.n_users, feedback.n_items, feedback.users, feedback.items, targets, weights, unlabeled_weight
    )


def wmf_problem(
    feedback: ImplicitFeedback, click_weight: float = 1.0, unlabeled_weight: float = 1.0
) -> LeastSquaresProblem:
    """WMF: target 1 on clicks with weight ``click_weight`` (``implicit``'s α), 0 elsewhere with ``unlabeled_weight``.

    ``click_weight = unlabeled_weight = 1`` is the naive squared loss on clicks.
    """
    ones = np.ones(feedback.users.size)
    return LeastSquaresProblem(
        feedback.n_users,
        feedback.n_items,
        feedback.users,
        feedback.items,
        ones,
        ones * click_weight,
        unlabeled_weight,
    )


@dataclass
class AlsFactors:
    """Factors of a linear score ``r_ui = x_u·y_i``.

    Attributes:
        user_factors: ``(n_users, dim)``.
        item_factors: ``(n_items, dim)``.
        objective: the objective after each sweep (when tracked).
    """

    user_factors: np.ndarray
    item_factors: np.ndarray
    objective: list[float]

    def as_model(self) -> PointwiseMF:
        """The factors as a bias-free :class:`PointwiseMF` (its logits are the linear scores)."""
        return PointwiseMF.from_factors(self.user_factors, self.item_factors)


def least_squares_objective(
    problem: LeastSquaresProblem, user_factors: np.ndarray, item_factors: np.ndarray, regularization: float
) -> float:
    """``L(X, Y)`` of the module docstring, without forming the dense score matrix."""
    x = np.asarray(user_factors, dtype=np.float64)
    y = np.asarray(item_factors, dtype=np.float64)
    all_pairs = problem.unlabeled_weight * float(np.sum((x.T @ x) * (y.T @ y)))  # a Σ_all r² = a tr(XᵀX YᵀY)
    scores = np.einsum("nd,nd->n", x[problem.users], y[problem.items])
    clicked = np.sum(problem.weights * (problem.targets - scores) ** 2 - problem.unlabeled_weight * scores**2)
    return float(all_pairs + clicked + regularization * (np.sum(x * x) + np.sum(y * y)))


def _gram(other: torch.Tensor, unlabeled_weight: float, regularization: float) -> torch.Tensor:
    dim = other.shape[1]
    return unlabeled_weight * (other.T @ other) + regularization * torch.eye(dim, dtype=other.dtype)


def _right_hand_sides(
    other: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor, weighted_targets: torch.Tensor, n_rows: int
) -> torch.Tensor:
    """``Σ_{i clicked by r} b_ri t_ri y_i`` for every row ``r``."""
    out = torch.zeros(n_rows, other.shape[1], dtype=other.dtype)
    return out.index_add_(0, rows, weighted_targets[:, None] * other[columns])


def _solve_rows_exactly(
    other: torch.Tensor,
    rows: torch.Tensor,
    columns: torch.Tensor,
    weights: torch.Tensor,
    targets: torch.Tensor,
    n_rows: int,
    unlabeled_weight: float,
    regularization: float,
    shared_matrix: bool,
    chunk_elements: int = 1 << 24,
) -> torch.Tensor:
    """Closed-form rows ``x_r`` given the other side's factors (``rows``/``columns`` index the clicked pairs)."""
    dim = other.shape[1]
    gram = _gram(other, unlabeled_weight, regularization)
    rhs = _right_hand_sides(other, rows, columns, weights * targets, n_rows)
    if shared_matrix:
        factor = torch.linalg.cholesky(gram)
        return torch.cholesky_solve(rhs.T, factor).T
    matrices = gram.expand(n_rows, dim, dim).clone()
    extra = weights - unlabeled_weight
    step = max(1, chunk_elements // (dim * dim))
    for start in range(0, rows.numel(), step):  # Σ (b − a) y yᵀ per row, in chunks of outer products
        vectors = other[columns[start : start + step]]
        outer = (extra[start : start + step, None] * vectors)[:, :, None] * vectors[:, None, :]
        matrices.index_add_(0, rows[start : start + step], outer)
    factor = torch.linalg.cholesky(matrices)
    return torch.cholesky_solve(rhs[:, :, None], factor)[:, :, 0]


def batched_conjugate_gradient(
    multiply: Callable[[torch.Tensor], torch.Tensor], right_hand_sides: torch.Tensor, start: torch.Tensor, steps: int
) -> torch.Tensor:
    """``steps`` conjugate-gradient iterations on many symmetric positive-definite systems at once.

    Row ``r`` of the result approximates the solution of ``A_r x = b_r``, where ``multiply(X)`` returns every
    row's ``A_r x_r`` (the matrices themselves are never formed), warm-started at ``start``. A row whose
    direction has no curvature left (already solved) stops moving.
    """
    solution = start.clone()
    residual = right_hand_sides - multiply(solution)
    direction = residual.clone()
    residual_norm = residual.square().sum(1)
    tiny = torch.finfo(start.dtype).tiny
    for _ in range(steps):
        product = multiply(direction)
        curvature = (direction * product).sum(1)
        step = torch.where(curvature > tiny, residual_norm / curvature.clamp_min(tiny), torch.zeros_like(curvature))
        solution += step[:, None] * direction
        residual -= step[:, None] * product
        new_norm = residual.square().sum(1)
        direction = residual + (new_norm / residual_norm.clamp_min(tiny))[:, None] * direction
        residual_norm = new_norm
    return solution


def _solve_rows_by_conjugate_gradient(
    start: torch.Tensor,
    other: torch.Tensor,
    rows: torch.Tensor,
    columns: torch.Tensor,
    weights: torch.Tensor,
    targets: torch.Tensor,
    unlabeled_weight: float,
    regularization: float,
    steps: int,
) -> torch.Tensor:
    """A few conjugate-gradient steps on every row's system at once, warm-started at ``start``.

    The system matrix is never formed: ``A_r p = (aYᵀY + λI) p + Σ_{i clicked by r} (b − a)(y_i·p) y_i``
    costs ``O(d²)`` per row plus ``O(d)`` per click (Takács et al., 2011; ``implicit``'s default solver).
    """
    gram = _gram(other, unlabeled_weight, regularization)
    clicked_vectors = other[columns]
    extra = weights - unlabeled_weight
    n_rows = start.shape[0]

    def multiply(vectors: torch.Tensor) -> torch.Tensor:
        out = vectors @ gram
        along = extra * (vectors[rows] * clicked_vectors).sum(1)
        return out.index_add_(0, rows, along[:, None] * clicked_vectors)

    right_hand_sides = _right_hand_sides(other, rows, columns, weights * targets, n_rows)
    return batched_conjugate_gradient(multiply, right_hand_sides, start, steps)


def fit_alternating_least_squares(
    problem: LeastSquaresProblem,
    *,
    dim: int,
    regularization: float,
    iterations: int = 15,
    seed: int = 0,
    init_scale: float = 0.1,
    dtype: torch.dtype = torch.float32,
    track_objective: bool = False,
    initial: tuple[np.ndarray, np.ndarray] | None = None,
    row_solver: Literal["auto", "exact", "cg"] = "auto",
    cg_steps: int = 3,
) -> AlsFactors:
    """Minimise ``L(X, Y)`` by alternating exact row solves (users, then items, per sweep).

    Args:
        problem: the clicked pairs with their weights and targets.
        dim: latent dimension.
        regularization: λ (on the sum-over-pairs scale of ``L``; > 0).
        iterations: sweeps (each solves every user row, then every item row).
        seed: seed of the Gaussian initialisation.
        init_scale: standard deviation of the initial factors.
        dtype: float32 (fast) or float64 (tests).
        track_objective: record ``L`` after every sweep (costs one pass over the clicks).
        initial: starting ``(user_factors, item_factors)`` instead of the seeded Gaussian ones.
        row_solver: ``exact`` (Cholesky per row, or one shared factorisation when every ``b = a``), ``cg``
            (``cg_steps`` conjugate-gradient steps per row and sweep, warm-started, as ``implicit`` does), or
            ``auto``: exact when the rows share one matrix (Rel-MF), else CG.
        cg_steps: conjugate-gradient steps per half-sweep.

    Returns:
        The factors (float64 numpy arrays) and the tracked objective.
    """
    if regularization <= 0:
        raise ValueError(f"the regularisation λ must be > 0, got {regularization}")
    if dim < 1 or iterations < 1:
        raise ValueError("dim and iterations must be >= 1")
    generator = torch.Generator().manual_seed(seed)
    user_factors = torch.randn(problem.n_users, dim, generator=generator, dtype=dtype) * init_scale
    item_factors = torch.randn(problem.n_items, dim, generator=generator, dtype=dtype) * init_scale
    if initial is not None:
        user_factors = torch.as_tensor(np.asarray(initial[0]), dtype=dtype).clone()
        item_factors = torch.as_tensor(np.asarray(initial[1]), dtype=dtype).clone()
    users = torch.as_tensor(problem.users, dtype=torch.long)
    items = torch.as_tensor(problem.items, dtype=torch.long)
    weights = torch.as_tensor(problem.weights, dtype=dtype)
    targets = torch.as_tensor(problem.targets, dtype=dtype)
    shared = bool(np.allclose(problem.weights, problem.unlabeled_weight))
    if row_solver not in ("auto", "exact", "cg"):
        raise ValueError(f"unknown row solver {row_solver!r}; use auto, exact or cg")
    exact = row_solver == "exact" or (row_solver == "auto" and shared)
    a, lam = problem.unlabeled_weight, regularization
    history: list[float] = []
    for _ in range(iterations):
        if exact:
            user_factors = _solve_rows_exactly(
                item_factors, users, items, weights, targets, problem.n_users, a, lam, shared
            )
            item_factors = _solve_rows_exactly(
                user_factors, items, users, weights, targets, problem.n_items, a, lam, shared
            )
        else:
            user_factors = _solve_rows_by_conjugate_gradient(
                user_factors, item_factors, users, items, weights, targets, a, lam, cg_steps
            )
            item_factors = _solve_rows_by_conjugate_gradient(
                item_factors, user_factors, items, users, weights, targets, a, lam, cg_steps
            )
        if track_objective:
            history.append(least_squares_objective(problem, user_factors.numpy(), item_factors.numpy(), regularization))
    return AlsFactors(user_factors.numpy().astype(np.float64), item_factors.numpy().astype(np.float64), history)


def click_matrix(problem: LeastSquaresProblem, values: np.ndarray | None = None) -> sp.csr_matrix:
    """The clicked pairs as a ``users × items`` CSR matrix (``values`` default: the click weights ``b``)."""
    data = problem.weights if values is None else values
    return sp.csr_matrix(
        (np.asarray(data, dtype=np.float32), (problem.users, problem.items)), shape=(problem.n_users, problem.n_items)
    )
