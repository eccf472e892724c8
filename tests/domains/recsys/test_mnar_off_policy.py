"""Off-policy estimates on simulated logs with known propensities: IPS is unbiased, SNIPS stays in range."""

from __future__ import annotations

import numpy as np
import pytest

from domains.recsys.mnar.metrics import propensity_weighted_ranking_metrics

KS = (1, 3, 5)


def _world(seed: int, n_users: int = 6, n_items: int = 14):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(n_users, n_items))
    relevance = rng.random((n_users, n_items)) < 0.35
    relevance[np.arange(n_users), rng.integers(0, n_items, n_users)] = True  # every user has a relevant item
    theta = rng.uniform(0.05, 1.0, size=(n_users, n_items))  # strongly uneven exposure
    return rng, scores, relevance, theta


def test_ips_is_unbiased_for_every_metric_over_many_simulated_logs():
    rng, scores, relevance, theta = _world(3)
    relevant_u, relevant_i = np.nonzero(relevance)
    per_user = relevance.sum(1)
    truth = propensity_weighted_ranking_metrics(
        scores, relevant_u, relevant_i, np.ones(relevant_u.size), KS, "ips", relevant_per_user=per_user
    )
    n_users = relevance.shape[0]
    keys = [f"{name}@{k}" for name in ("DCG", "Recall", "MAP") for k in KS]
    estimates = {key: [] for key in keys}
    for _ in range(3000):
        clicked = relevance & (rng.random(relevance.shape) < theta)
        u, i = np.nonzero(clicked)
        estimate = (
            propensity_weighted_ranking_metrics(scores, u, i, theta[u, i], KS, "ips", relevant_per_user=per_user)
            if u.size
            else {"users": 0}
        )
        for key in keys:  # the mean over users with clicks, turned into the mean over all users (0 without clicks)
            estimates[key].append(estimate.get(key, 0.0) * estimate["users"] / n_users)
    for key in keys:
        values = np.array(estimates[key])
        standard_error = values.std(ddof=1) / np.sqrt(values.size)
        assert abs(values.mean() - truth[key]) < 4 * standard_error, (key, values.mean(), truth[key])


def test_the_old_map_form_with_the_clicks_own_weight_squared_is_biased():
    """The fixed MAP is unbiased; weighting a click by w² in its own precision (the old form) is not."""
    rng, scores, relevance, theta = _world(5, n_users=1, n_items=10)
    u, i = np.nonzero(relevance)
    truth = propensity_weighted_ranking_metrics(scores, u, i, np.ones(u.size), (10,), "ips")["MAP@10"]
    old, new = [], []
    for _ in range(3000):
        clicked = relevance & (rng.random(relevance.shape) < theta)
        if not clicked.any():
            old.append(0.0)
            new.append(0.0)
            continue
        cu, ci = np.nonzero(clicked)
        w = 1 / theta[cu, ci]
        ranks = np.array([1 + (scores[0] > scores[0, item]).sum() for item in ci])
        above = np.array([(w * (ranks <= r)).sum() for r in ranks])  # includes the click itself
        old.append((w * above / ranks).sum() / u.size)
        estimate = propensity_weighted_ranking_metrics(
            scores, cu, ci, theta[cu, ci], (10,), "ips", relevant_per_user=np.array([u.size])
        )
        new.append(estimate["MAP@10"])
    assert abs(np.mean(new) - truth) < 4 * np.std(new) / np.sqrt(len(new))
    assert np.mean(old) > truth * 1.2


@pytest.mark.parametrize("seed", range(6))
def test_snips_estimates_lie_in_the_metric_range_on_simulated_logs(seed: int):
    rng, scores, relevance, _ = _world(seed, n_users=40, n_items=30)
    theta = np.exp(rng.uniform(np.log(1e-3), 0.0, size=relevance.shape))  # weights up to 1000
    clicked = relevance & (rng.random(relevance.shape) < np.sqrt(theta))  # many clicks with tiny θ
    u, i = np.nonzero(clicked)
    snips = propensity_weighted_ranking_metrics(scores, u, i, theta[u, i], (1, 3, 5, 10, 30), "snips")
    ips = propensity_weighted_ranking_metrics(scores, u, i, theta[u, i], (1, 3, 5, 10, 30), "ips")
    for key, value in snips.items():
        if key != "users":
            assert 0.0 <= value <= 1.0 + 1e-12, (key, value)
    assert max(value for key, value in ips.items() if key != "users") > 1.0  # IPS is not bounded: the test can fail


def test_snips_map_on_a_heavy_click_above_a_light_one_is_capped():
    # one user; item 0 (θ = 0.001) ranked first, item 1 (θ = 1) second: the old form gave MAP ≈ 1000
    scores = np.array([[2.0, 1.0, 0.0]])
    estimate = propensity_weighted_ranking_metrics(
        scores, np.array([0, 0]), np.array([0, 1]), np.array([0.001, 1.0]), (2,), "snips"
    )
    assert 0.99 < estimate["MAP@2"] <= 1.0


def test_a_constant_model_ranks_every_item_in_the_middle_not_first():
    """A collapsed model (all scores equal) must not win a validation choice: ties take the expected rank."""
    n_items = 101
    scores = np.zeros((3, n_items))
    users, items = np.array([0, 1, 2]), np.array([5, 7, 9])
    estimate = propensity_weighted_ranking_metrics(scores, users, items, np.array([0.5, 0.1, 1.0]), (5,), "snips")
    assert estimate["Recall@5"] == 0.0 and estimate["DCG@5"] == 0.0  # expected rank 51 for every item
    informative = scores.copy()
    informative[users, items] = 1.0
    assert propensity_weighted_ranking_metrics(informative, users, items, np.ones(3), (5,), "snips")["DCG@5"] == 1.0
