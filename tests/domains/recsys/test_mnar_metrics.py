"""MNAR ranking metrics against hand-computed values and an independent per-user loop."""

from __future__ import annotations

import math

import numpy as np
import pytest

from domains.recsys.mnar.metrics import (
    mar_ranking_metrics,
    propensity_weighted_ranking_metrics,
    rare_item_mask,
)


def test_standard_conventions_match_hand_computation():
    # user 0: items ranked by score: a(rel), b(irrel), c(rel) ; user 1: d(irrel), e(rel)
    users = np.array([0, 0, 0, 1, 1])
    labels = np.array([1, 0, 1, 0, 1])
    scores = np.array([0.9, 0.5, 0.1, 0.8, 0.2])
    out = mar_ranking_metrics(users, labels, scores, ks=(1, 3), conventions="standard")
    # DCG@1: u0 = 1, u1 = 0 ; DCG@3: u0 = 1 + 1/log2(4) = 1.5, u1 = 1/log2(3)
    assert out["DCG@1"] == pytest.approx(0.5)
    assert out["DCG@3"] == pytest.approx((1.5 + 1 / math.log2(3)) / 2)
    # Recall@1: u0 = 1/2, u1 = 0 ; Recall@3: both 1
    assert out["Recall@1"] == pytest.approx(0.25)
    assert out["Recall@3"] == pytest.approx(1.0)
    # AP@3: u0 = (1/1 + 2/3)/2, u1 = (1/2)/1 ; AP@1: u0 = 1/1, u1 = 0
    assert out["MAP@3"] == pytest.approx(((1 + 2 / 3) / 2 + 0.5) / 2)
    assert out["MAP@1"] == pytest.approx(0.5)
    assert out["users"] == 2


def test_paper_conventions_match_rel_mf_definitions():
    # One user, ranked: irrelevant (0.001), relevant (1), relevant (1), irrelevant (0.001)
    users = np.zeros(4, dtype=int)
    labels = np.array([1, 0, 0, 1])
    scores = np.array([0.7, 0.9, 0.1, 0.5])  # order: item1 (0), item0 (1), item3 (1), item2 (0)
    out = mar_ranking_metrics(users, labels, scores, ks=(1, 3), conventions="paper")
    r = [0.001, 1.0, 1.0, 0.001]
    # Järvelin-Kekäläinen discount: ranks 1 and 2 -> 1, rank 3 -> 1/log2(3)
    assert out["DCG@1"] == pytest.approx(r[0])
    assert out["DCG@3"] == pytest.approx(r[0] + r[1] + r[2] / math.log2(3))
    total = sum(r)
    assert out["Recall@1"] == pytest.approx(r[0] / total)
    assert out["Recall@3"] == pytest.approx(sum(r[:3]) / total)
    # un-normalised sum of precisions (relevance mass / rank) at relevant ranks within K
    assert out["MAP@1"] == pytest.approx(0.0)
    assert out["MAP@3"] == pytest.approx((r[0] + r[1]) / 2 + (r[0] + r[1] + r[2]) / 3)


def test_paper_conventions_count_users_without_relevant_items():
    users = np.array([0, 0, 1, 1])
    labels = np.array([1, 0, 0, 0])
    scores = np.array([1.0, 0.0, 1.0, 0.0])
    paper = mar_ranking_metrics(users, labels, scores, ks=(1,), conventions="paper")
    standard = mar_ranking_metrics(users, labels, scores, ks=(1,), conventions="standard")
    assert paper["users"] == 2 and standard["users"] == 1
    assert paper["DCG@1"] == pytest.approx((1.0 + 0.001) / 2)
    assert standard["DCG@1"] == pytest.approx(1.0)


def _loop_reference(users, labels, scores, k):
    """Independent per-user implementation of the standard metrics."""
    dcg, recall, ap = [], [], []
    for user in np.unique(users):
        mask = users == user
        order = np.argsort(-scores[mask], kind="stable")
        rel = labels[mask][order]
        if rel.sum() == 0:
            continue
        top = rel[:k]
        dcg.append(sum(r / math.log2(i + 2) for i, r in enumerate(top)))
        recall.append(top.sum() / rel.sum())
        hits, precision_sum = 0, 0.0
        for i, r in enumerate(top):
            if r:
                hits += 1
                precision_sum += hits / (i + 1)
        ap.append(precision_sum / min(k, rel.sum()))
    return np.mean(dcg), np.mean(recall), np.mean(ap)


def test_vectorised_metrics_equal_a_per_user_loop():
    rng = np.random.default_rng(0)
    users = rng.integers(0, 30, size=400)
    labels = (rng.random(400) < 0.3).astype(int)
    scores = rng.normal(size=400)
    out = mar_ranking_metrics(users, labels, scores, ks=(5,), conventions="standard")
    dcg, recall, ap = _loop_reference(users, labels, scores, 5)
    assert out["DCG@5"] == pytest.approx(dcg)
    assert out["Recall@5"] == pytest.approx(recall)
    assert out["MAP@5"] == pytest.approx(ap)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="binary"):
        mar_ranking_metrics(np.array([0]), np.array([2]), np.array([0.0]))
    with pytest.raises(ValueError, match="same length"):
        mar_ranking_metrics(np.array([0, 1]), np.array([1]), np.array([0.0]))
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        propensity_weighted_ranking_metrics(np.zeros((1, 2)), np.array([0]), np.array([0]), np.array([0.0]))


def test_rare_item_mask_uses_training_click_counts():
    counts = np.array([600, 500, 3])
    assert rare_item_mask(np.array([0, 1, 2, 0]), counts, 500).tolist() == [False, True, True, False]


def test_ips_and_snips_match_hand_computation():
    # 1 user, 4 items; scores rank items 0,1,2,3. Clicks on item 0 (θ=0.5) and item 2 (θ=0.25).
    scores = np.array([[4.0, 3.0, 2.0, 1.0]])
    users, items, theta = np.array([0, 0]), np.array([0, 2]), np.array([0.5, 0.25])
    w = 1 / theta  # [2, 4], ranks [1, 3]
    ips = propensity_weighted_ranking_metrics(scores, users, items, theta, ks=(1, 3), estimator="ips")
    snips = propensity_weighted_ranking_metrics(scores, users, items, theta, ks=(1, 3), estimator="snips")
    dcg3 = w[0] / math.log2(2) + w[1] / math.log2(4)
    assert ips["DCG@3"] == pytest.approx(dcg3 / 2)
    assert snips["DCG@3"] == pytest.approx(dcg3 / w.sum())
    assert ips["Recall@1"] == pytest.approx(w[0] / 2)
    assert snips["Recall@1"] == pytest.approx(w[0] / w.sum())
    # the click itself counts once in its own precision; other clicks ranked above count by their weight
    ap3 = w[0] * 1 / 1 + w[1] * (1 + w[0]) / 3
    assert ips["MAP@3"] == pytest.approx(ap3 / 2)
    # SNIPS: weights rescaled to average 1 over the user's clicks, inside the precision too
    w_sn = w * 2 / w.sum()  # [2/3, 4/3]
    assert snips["MAP@3"] == pytest.approx((w_sn[0] * 1 + w_sn[1] * (1 + w_sn[0]) / 3) / 2)


def test_uniform_propensities_reduce_to_the_naive_average_over_clicks():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(5, 12))
    users = np.repeat(np.arange(5), 3)
    items = np.concatenate([rng.choice(12, 3, replace=False) for _ in range(5)])
    ones = np.ones(users.size)
    ips = propensity_weighted_ranking_metrics(scores, users, items, ones, ks=(3,), estimator="ips")
    snips = propensity_weighted_ranking_metrics(scores, users, items, ones * 0.5, ks=(3,), estimator="snips")
    # naive: share of each user's clicks ranked in the top 3 among all 12 items
    ranks = np.array([1 + (scores[u] > scores[u, i]).sum() for u, i in zip(users, items)])
    naive = np.mean([(ranks[users == u] <= 3).mean() for u in range(5)])
    assert ips["Recall@3"] == pytest.approx(naive)
    assert snips["Recall@3"] == pytest.approx(naive)  # a constant θ cancels in SNIPS


def test_excluded_training_pairs_do_not_push_test_clicks_down():
    scores = np.array([[5.0, 4.0, 3.0]])
    plain = propensity_weighted_ranking_metrics(scores, np.array([0]), np.array([2]), np.array([1.0]), ks=(1,))
    excluded = propensity_weighted_ranking_metrics(
        scores, np.array([0]), np.array([2]), np.array([1.0]), ks=(1,),
        excluded_users=np.array([0, 0]), excluded_items=np.array([0, 1]),
    )  # fmt: skip
    assert plain["Recall@1"] == 0.0 and excluded["Recall@1"] == 1.0


def test_snips_on_mnar_logs_is_closer_to_the_true_metric_than_the_naive_estimate():
    """Popular items are over-exposed; re-weighting by 1/θ recovers the recall on all relevant items."""
    rng = np.random.default_rng(7)
    n_users, n_items = 400, 60
    popularity = np.linspace(1.0, 0.02, n_items)
    scores = np.tile(-np.arange(n_items, dtype=float), (n_users, 1))  # ranks popular items first
    relevance = rng.random((n_users, n_items)) < 0.2  # relevance independent of popularity
    theta = np.tile(popularity, (n_users, 1))
    clicks = relevance & (rng.random((n_users, n_items)) < theta)
    u_all, i_all = np.nonzero(relevance)
    truth = propensity_weighted_ranking_metrics(scores, u_all, i_all, np.ones(u_all.size), ks=(10,), estimator="ips")
    u, i = np.nonzero(clicks)
    naive = propensity_weighted_ranking_metrics(scores, u, i, np.ones(u.size), ks=(10,), estimator="ips")
    snips = propensity_weighted_ranking_metrics(scores, u, i, theta[u, i], ks=(10,), estimator="snips")
    assert abs(snips["Recall@10"] - truth["Recall@10"]) < 0.5 * abs(naive["Recall@10"] - truth["Recall@10"])
    assert naive["Recall@10"] > truth["Recall@10"]  # the naive estimate flatters a popularity ranking
