"""Full-ranking metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from domains.recsys.llmrec.graphs import items_by_user
from domains.recsys.llmrec.ranking_metrics import full_ranking_metrics, top_k_items

# Two users, five items; scores are user_embedding · item_embedding with 1-d embeddings.
USERS = torch.tensor([[1.0], [-1.0]])
ITEMS = torch.tensor([[5.0], [4.0], [3.0], [2.0], [1.0]])
# User 0 ranks items 0 > 1 > 2 > 3 > 4; user 1 ranks 4 > 3 > 2 > 1 > 0.


def test_hand_computed_recall_precision_ndcg_with_exclusion() -> None:
    truth = items_by_user(np.array([[0, 1], [0, 3], [1, 0]]), 2, 5)
    exclude = items_by_user(np.array([[0, 0], [1, 4]]), 2, 5)
    metrics = full_ranking_metrics(USERS, ITEMS, truth, exclude=exclude, ks=(1, 2, 3))
    # user 0 (item 0 excluded): ranking 1, 2, 3, 4; truth {1, 3} → hits at ranks 1 and 3.
    # user 1 (item 4 excluded): ranking 3, 2, 1, 0; truth {0} → hit at rank 4.
    d = [1 / math.log2(r + 1) for r in range(1, 5)]
    assert metrics["users"] == 2
    assert metrics["recall@1"] == pytest.approx((1 / 2 + 0) / 2)
    assert metrics["recall@3"] == pytest.approx((2 / 2 + 0) / 2)
    assert metrics["precision@3"] == pytest.approx((2 / 3 + 0) / 2)
    assert metrics["ndcg@2"] == pytest.approx((d[0] / (d[0] + d[1]) + 0) / 2)
    assert metrics["ndcg@3"] == pytest.approx(((d[0] + d[2]) / (d[0] + d[1]) + 0) / 2)


def test_llmrec_ndcg_variant_uses_retrieved_hits_as_ideal() -> None:
    truth = items_by_user(np.array([[0, 2], [0, 4]]), 2, 5)
    standard = full_ranking_metrics(USERS, ITEMS, truth, ks=(3,))
    legacy = full_ranking_metrics(USERS, ITEMS, truth, ks=(3,), ndcg_variant="llmrec")
    d = [1 / math.log2(r + 1) for r in range(1, 4)]
    # user 0: truth {2, 4}, top-3 = 0, 1, 2 → one hit at rank 3; user 1 has no truth and is skipped.
    assert standard["ndcg@3"] == pytest.approx(d[2] / (d[0] + d[1]))
    assert legacy["ndcg@3"] == pytest.approx(d[2] / d[0])
    assert legacy["recall@3"] == standard["recall@3"] == pytest.approx(0.5)


def test_batching_over_users_gives_identical_metrics() -> None:
    generator = torch.Generator().manual_seed(0)
    users, items = torch.randn(37, 8, generator=generator), torch.randn(50, 8, generator=generator)
    rng = np.random.default_rng(0)
    truth = items_by_user(np.stack([rng.integers(0, 37, 200), rng.integers(0, 50, 200)], 1), 37, 50)
    exclude = items_by_user(np.stack([rng.integers(0, 37, 300), rng.integers(0, 50, 300)], 1), 37, 50)
    counts = truth.astype(np.int8)
    truth = (counts - counts.multiply(exclude)).astype(bool).tocsr()
    truth.eliminate_zeros()
    whole = full_ranking_metrics(users, items, truth, exclude, batch_users=1000)
    pieces = full_ranking_metrics(users, items, truth, exclude, batch_users=4)
    assert whole == pytest.approx(pieces)


def test_top_k_never_returns_excluded_items() -> None:
    exclude = items_by_user(np.array([[0, 0], [0, 1], [1, 4]]), 2, 5)
    top = top_k_items(USERS, ITEMS, exclude, k=2)
    assert top.tolist() == [[2, 3], [3, 2]]
