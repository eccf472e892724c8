"""Closed-form ALS: the Rel-MF derivation, equality with the gradient path, and equality with ``implicit``."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from domains.recsys.mnar.alternating_least_squares import (
    fit_alternating_least_squares,
    least_squares_objective,
    relmf_problem,
    wmf_problem,
)
from domains.recsys.mnar.feedback import ImplicitFeedback
from domains.recsys.mnar.losses import pointwise_debiasing_loss
from domains.recsys.mnar.models import PointwiseMF

N_USERS, N_ITEMS, DIM, LAMBDA = 25, 30, 3, 0.5


def _feedback(seed: int = 0) -> ImplicitFeedback:
    rng = np.random.default_rng(seed)
    clicked = rng.random((N_USERS, N_ITEMS)) < 0.15
    users, items = np.nonzero(clicked)
    return ImplicitFeedback.from_clicks(N_USERS, N_ITEMS, users, items, rng.uniform(0.05, 1.0, users.size))


def _relmf_loss(feedback: ImplicitFeedback, x: torch.Tensor, y: torch.Tensor, clip: float, w: float) -> torch.Tensor:
    """Rel-MF's loss as the library's gradient path computes it, summed over all pairs, with a linear score."""
    labels = torch.zeros(N_USERS, N_ITEMS, dtype=x.dtype)
    theta = torch.ones(N_USERS, N_ITEMS, dtype=x.dtype)
    labels[feedback.users, feedback.items] = 1.0
    theta[feedback.users, feedback.items] = torch.as_tensor(feedback.propensity, dtype=x.dtype)
    logits = (x @ y.T).reshape(-1)
    mean = pointwise_debiasing_loss(
        logits, labels.reshape(-1), theta.reshape(-1), loss="squared_linear", clip_min=clip, unlabeled_weight=w
    )
    return mean * logits.numel() + LAMBDA * (x.square().sum() + y.square().sum())


@pytest.mark.parametrize(("clip", "w"), [(0.0, 1.0), (0.3, 1.0), (0.0, 0.8)])
def test_relmf_loss_is_least_squares_on_targets_y_over_theta_plus_a_constant(clip: float, w: float):
    feedback = _feedback()
    problem = relmf_problem(feedback, clip_min=clip, unlabeled_weight=w)
    differences = []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        x, y = rng.normal(size=(N_USERS, DIM)), rng.normal(size=(N_ITEMS, DIM))
        relmf = float(_relmf_loss(feedback, torch.as_tensor(x), torch.as_tensor(y), clip, w))
        differences.append(relmf - least_squares_objective(problem, x, y, LAMBDA))
    assert np.ptp(differences) < 1e-8 * abs(differences[0]) + 1e-8  # the same constant for any factors
    if w == 1.0:  # Σ_clicks (1/θ − 1/θ²): target 1/θ, unit weight on every pair
        inverse = 1 / np.maximum(feedback.propensity, clip)
        assert differences[0] == pytest.approx(np.sum(inverse - inverse**2))


def _gradient_path(feedback: ImplicitFeedback, clip: float, seed: int) -> tuple[float, PointwiseMF]:
    model = PointwiseMF(N_USERS, N_ITEMS, DIM, use_bias=False, seed=seed).double()
    optimizer = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=4000, tolerance_grad=1e-12,
                                  tolerance_change=1e-15, history_size=50, line_search_fn="strong_wolfe")  # fmt: skip

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = _relmf_loss(feedback, model.user_factors, model.item_factors, clip, 1.0)
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return float(_relmf_loss(feedback, model.user_factors, model.item_factors, clip, 1.0)), model


@pytest.mark.parametrize("clip", [0.0, 0.2])
def test_closed_form_solution_equals_the_gradient_path_in_objective_at_convergence(clip: float):
    feedback = _feedback(1)
    problem = relmf_problem(feedback, clip_min=clip)
    als = fit_alternating_least_squares(
        problem, dim=DIM, regularization=LAMBDA, iterations=400, seed=3, dtype=torch.float64, track_objective=True
    )
    assert all(b <= a + 1e-9 * abs(a) for a, b in zip(als.objective, als.objective[1:]))  # ALS never goes up
    x = torch.tensor(als.user_factors, requires_grad=True)
    y = torch.tensor(als.item_factors, requires_grad=True)
    als_loss = _relmf_loss(feedback, x, y, clip, 1.0)
    als_loss.backward()
    scale = float(np.abs(als.user_factors).max() + np.abs(als.item_factors).max())
    assert float(torch.cat([x.grad.abs().reshape(-1), y.grad.abs().reshape(-1)]).max()) < 1e-6 * scale  # stationary
    gradient_loss, _ = _gradient_path(feedback, clip, seed=11)
    assert gradient_loss == pytest.approx(float(als_loss.detach()), rel=1e-6)


def test_wmf_solver_equals_implicit_exact_als_from_the_same_start():
    implicit_als = pytest.importorskip("implicit.cpu.als")
    feedback = _feedback(2)
    alpha, regularization = 4.0, 0.3
    problem = wmf_problem(feedback, click_weight=alpha)
    rng = np.random.default_rng(0)
    start_users = rng.random((N_USERS, DIM), dtype=np.float32) * 0.1
    start_items = rng.random((N_ITEMS, DIM), dtype=np.float32) * 0.1
    peer = implicit_als.AlternatingLeastSquares(
        factors=DIM, regularization=regularization, alpha=alpha, iterations=3, use_cg=False, num_threads=1
    )
    peer.user_factors, peer.item_factors = start_users.copy(), start_items.copy()
    clicks = np.zeros((N_USERS, N_ITEMS), dtype=np.float32)
    clicks[feedback.users, feedback.items] = 1.0
    peer.fit(sp.csr_matrix(clicks), show_progress=False)
    ours = fit_alternating_least_squares(
        problem, dim=DIM, regularization=regularization, iterations=3, initial=(start_users, start_items),
        row_solver="exact",
    )  # fmt: skip
    np.testing.assert_allclose(ours.user_factors, peer.user_factors, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(ours.item_factors, peer.item_factors, rtol=1e-3, atol=1e-4)


def test_relmf_ratings_follow_inverse_propensity_targets():
    """A click with a small θ gets a larger target, so the fitted score of rarely exposed clicks is higher."""
    feedback = _feedback(4)
    factors = fit_alternating_least_squares(relmf_problem(feedback), dim=8, regularization=0.1, iterations=30)
    scores = factors.as_model().score_matrix().numpy()[feedback.users, feedback.items]
    assert np.corrcoef(scores, 1 / feedback.propensity)[0, 1] > 0.5


def test_conjugate_gradient_rows_reach_the_exact_solvers_objective():
    feedback = _feedback(5)
    problem = wmf_problem(feedback, click_weight=3.0)
    exact = fit_alternating_least_squares(problem, dim=DIM, regularization=0.2, iterations=60, row_solver="exact",
                                          dtype=torch.float64, track_objective=True)  # fmt: skip
    cg = fit_alternating_least_squares(problem, dim=DIM, regularization=0.2, iterations=60, row_solver="cg",
                                       dtype=torch.float64, track_objective=True)  # fmt: skip
    assert cg.objective[-1] == pytest.approx(exact.objective[-1], rel=1e-4)
    assert cg.objective[-1] < cg.objective[0]


def test_expomf_conjugate_gradient_m_step_with_enough_steps_equals_the_exact_one():
    from domains.recsys.mnar.expomf import fit_expomf

    feedback = _feedback(6)
    exact = fit_expomf(feedback, dim=DIM, iterations=4, lam=0.1, row_solver="exact")
    cg = fit_expomf(feedback, dim=DIM, iterations=4, lam=0.1, row_solver="cg", cg_steps=3 * DIM)
    np.testing.assert_allclose(cg.user_factors @ cg.item_factors.T, exact.user_factors @ exact.item_factors.T,
                               atol=1e-4)  # fmt: skip
    np.testing.assert_allclose(cg.exposure_prior, exact.exposure_prior, rtol=1e-4)
