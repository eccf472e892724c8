"""MNAR estimators: loss formulas by hand, unbiasedness by simulation, replicas equal separate fits, EM baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from domains.recsys.mnar.expomf import fit_expomf
from domains.recsys.mnar.feedback import ImplicitFeedback, item_popularity_propensity
from domains.recsys.mnar.losses import EstimatorSpec, pointwise_debiasing_loss, unbiased_pairwise_loss
from domains.recsys.mnar.models import PointwiseMF, ReplicatedPointwiseMF
from domains.recsys.mnar.sampling import PairSampler
from domains.recsys.mnar.training import fit_pointwise, fit_ubpr, mnar_trainer_config


@pytest.fixture(autouse=True)
def _single_thread():
    """These models are tiny: one thread avoids oversubscription on small, busy CI machines."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_item_popularity_propensity_is_relative_popularity_to_the_power_eta():
    theta = item_popularity_propensity(np.array([0, 0, 0, 0, 1]), n_items=3, eta=0.5)
    # counts 4, 1, 0 (floored to 1) -> (c / 4) ** 0.5
    assert theta == pytest.approx([1.0, 0.5, 0.5])
    assert item_popularity_propensity(np.array([0, 1, 1]), 2, eta=0.0) == pytest.approx([1.0, 1.0])


def test_pointwise_loss_matches_the_formula_by_hand():
    logits = torch.tensor([0.3, -1.2, 2.0])
    labels = torch.tensor([1.0, 0.0, 1.0])
    theta = torch.tensor([0.25, 0.5, 0.05])
    probs = [_sigmoid(v) for v in logits.tolist()]

    def by_hand(clip, weight, squared):
        total = 0.0
        for y, t, p in zip(labels.tolist(), theta.tolist(), probs):
            w = y / max(t, clip)
            d1, d0 = ((1 - p) ** 2, p**2) if squared else (-math.log(p), -math.log(1 - p))
            total += w * d1 + weight * (1 - w) * d0
        return total

    log_ips = pointwise_debiasing_loss(logits, labels, theta, loss="log")
    assert float(log_ips) == pytest.approx(by_hand(0.0, 1.0, False) / 3, rel=1e-5)
    clipped = pointwise_debiasing_loss(logits, labels, theta, loss="log", clip_min=0.1)
    assert float(clipped) == pytest.approx(by_hand(0.1, 1.0, False) / 3, rel=1e-5)
    squared = pointwise_debiasing_loss(
        logits, labels, theta, loss="squared", unlabeled_weight=0.5, normalization="weighted"
    )
    assert float(squared) == pytest.approx(by_hand(0.0, 0.5, True) / (2 + 0.5 * 1), rel=1e-5)
    naive = pointwise_debiasing_loss(logits, labels, None, loss="log")
    assert float(naive) == pytest.approx(
        (-math.log(probs[0]) - math.log(1 - probs[1]) - math.log(probs[2])) / 3, rel=1e-5
    )


def test_ips_loss_is_unbiased_for_the_ideal_loss_and_the_naive_loss_is_not():
    rng = np.random.default_rng(0)
    gamma = torch.tensor([0.6, 0.2, 0.9, 0.05])
    theta = torch.tensor([0.9, 0.3, 0.1, 0.5])
    logits = torch.tensor([0.4, -1.0, 1.5, -2.0])
    ideal = float(pointwise_debiasing_loss(logits, gamma, None))
    draws = 40_000
    relevance = torch.as_tensor(rng.random((draws, 4)) < gamma.numpy(), dtype=torch.float32)
    exposure = torch.as_tensor(rng.random((draws, 4)) < theta.numpy(), dtype=torch.float32)
    clicks = (relevance * exposure).reshape(-1)
    ips = float(pointwise_debiasing_loss(logits.repeat(draws), clicks, theta.repeat(draws)))
    naive = float(pointwise_debiasing_loss(logits.repeat(draws), clicks, None))
    assert ips == pytest.approx(ideal, abs=0.03)
    assert abs(naive - ideal) > 0.1


def test_unbiased_pairwise_loss_and_its_nonnegative_clip():
    pos, neg = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    theta_pos, neg_labels, theta_neg = torch.tensor([0.5, 0.25]), torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.2])
    terms = [
        (1 / 0.5) * (1 - 0.0) * -math.log(_sigmoid(1.0)),
        (1 / 0.25) * (1 - 1.0 / 0.2) * -math.log(_sigmoid(-2.0)),
    ]
    value = unbiased_pairwise_loss(pos, neg, theta_pos, neg_labels, theta_neg)
    assert float(value) == pytest.approx(sum(terms) / 2, rel=1e-5)
    assert float(value) < 0
    clipped = unbiased_pairwise_loss(pos, neg, theta_pos, neg_labels, theta_neg, nonnegative_beta=0.0)
    assert float(clipped) == 0.0


def test_feedback_lookup_and_deduplication():
    fb = ImplicitFeedback.from_clicks(3, 4, np.array([2, 0, 2]), np.array([1, 3, 1]), np.array([0.5, 0.2, 0.9]))
    assert fb.users.tolist() == [0, 2] and fb.items.tolist() == [3, 1]
    clicks, theta = fb.lookup(np.array([2, 0, 1]), np.array([1, 3, 1]))
    assert clicks.tolist() == [1.0, 1.0, 0.0]
    assert theta.tolist() == pytest.approx([0.5, 0.2, 1.0])
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        ImplicitFeedback.from_clicks(2, 2, np.array([0]), np.array([0]), np.array([0.0]))
    with pytest.raises(ValueError, match="out of range"):
        ImplicitFeedback.from_clicks(2, 2, np.array([5]), np.array([0]))


def test_balanced_sampler_draws_the_requested_share_of_clicks_and_unclicked_pairs_otherwise():
    fb = ImplicitFeedback.from_clicks(20, 30, np.arange(20), np.arange(20) % 30)
    sampler = PairSampler(fb, positive_fraction=0.25, seed=0)
    batch = sampler.sample(400)
    assert float(batch.labels.sum()) == 100
    assert set(batch.labels[100:].tolist()) == {0.0}


def test_replicated_models_train_exactly_like_separate_models():
    torch.manual_seed(0)
    seeds, n_users, n_items, steps = [3, 7], 6, 5, 5
    stacked = ReplicatedPointwiseMF(n_users, n_items, 4, seeds)
    singles = [PointwiseMF(n_users, n_items, 4, seed=s) for s in seeds]
    opt_stacked = torch.optim.Adam(stacked.parameters(), lr=0.05)
    opt_singles = [torch.optim.Adam(m.parameters(), lr=0.05) for m in singles]
    rng = np.random.default_rng(0)
    for _ in range(steps):
        users = torch.as_tensor(rng.integers(0, n_users, (2, 8)))
        items = torch.as_tensor(rng.integers(0, n_items, (2, 8)))
        labels = torch.as_tensor(rng.random((2, 8)) < 0.3, dtype=torch.float32)
        logits = stacked.logits(users, items)
        loss = sum(pointwise_debiasing_loss(logits[r], labels[r]) for r in range(2)) + 1e-3 * stacked.l2_penalty()
        opt_stacked.zero_grad()
        loss.backward()
        opt_stacked.step()
        for r, (model, opt) in enumerate(zip(singles, opt_singles)):
            single_loss = (
                pointwise_debiasing_loss(model.logits(users[r], items[r]), labels[r]) + 1e-3 * model.l2_penalty()
            )
            opt.zero_grad()
            single_loss.backward()
            opt.step()
    for r, model in enumerate(singles):
        torch.testing.assert_close(stacked.replica(r).score_matrix(), model.score_matrix(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(stacked.score_matrices()[r], model.score_matrix(), rtol=1e-5, atol=1e-6)


def _mnar_clicks(seed: int = 0):
    """Relevance independent of item; exposure strongly favours low item ids."""
    rng = np.random.default_rng(seed)
    n_users, n_items = 60, 40
    gamma = 0.3
    theta_item = np.linspace(0.9, 0.05, n_items)
    relevance = rng.random((n_users, n_items)) < gamma
    exposure = rng.random((n_users, n_items)) < theta_item[None, :]
    users, items = np.nonzero(relevance & exposure)
    return ImplicitFeedback.from_clicks(n_users, n_items, users, items, theta_item[items]), gamma


def test_relmf_recovers_the_relevance_rate_that_the_naive_loss_underestimates(tmp_path):
    feedback, gamma = _mnar_clicks()
    results = {}
    for name in ("naive", "relmf"):
        sampler = PairSampler(feedback, seed=0)
        trainer = mnar_trainer_config(max_steps=400, lr=0.05, weight_decay=0.0, progress_bar=False)
        fit = fit_pointwise(
            sampler, EstimatorSpec(name), dim=2, batch_size=512, use_bias=True, trainer=trainer, run_dir=tmp_path / name
        )
        results[name] = float(torch.sigmoid(fit.model.score_matrix()).mean())
    click_rate = feedback.users.size / (60 * 40)
    assert results["naive"] == pytest.approx(click_rate, abs=0.03)
    assert abs(results["relmf"] - gamma) < abs(results["naive"] - gamma) / 2


def test_ubpr_training_ranks_clicked_items_above_unclicked(tmp_path):
    feedback, _ = _mnar_clicks(1)
    trainer = mnar_trainer_config(max_steps=150, lr=0.05, progress_bar=False)
    fit = fit_ubpr(
        feedback, EstimatorSpec("ubpr", clip_min=0.05), dim=4, batch_size=256, trainer=trainer, run_dir=tmp_path
    )
    scores = fit.model.score_matrix().numpy()
    clicked = np.zeros_like(scores, dtype=bool)
    clicked[feedback.users, feedback.items] = True
    assert scores[clicked].mean() > scores[~clicked].mean()
    assert fit.pairs_seen == 150 * 256


def test_expomf_learns_higher_exposure_for_popular_items_and_fits_the_clicks():
    feedback, _ = _mnar_clicks(2)
    result = fit_expomf(feedback, dim=4, iterations=8, lam=1e-2)
    assert result.exposure_prior[:5].mean() > result.exposure_prior[-5:].mean()
    scores = result.as_model().score_matrix().numpy()
    clicked = np.zeros_like(scores, dtype=bool)
    clicked[feedback.users, feedback.items] = True
    assert scores[clicked].mean() > scores[~clicked].mean() + 0.1
    with pytest.raises(ValueError, match="max_grid"):
        fit_expomf(feedback, dim=2, iterations=1, max_grid=10)


def test_estimator_spec_validation():
    with pytest.raises(ValueError, match="unknown estimator"):
        EstimatorSpec("ips-ish")
    with pytest.raises(ValueError, match="clip"):
        EstimatorSpec("relmf_clipped", clip_min=0.0)
