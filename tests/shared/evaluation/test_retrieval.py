"""Retrieval metrics against brute-force rank loops."""

import numpy as np
import pytest
import torch

from shared.evaluation import retrieval_metrics


def _brute_force_rank(scores_row: np.ndarray, correct: set[int]) -> int:
    best = max(scores_row[j] for j in correct)
    return 1 + sum(1 for j in range(len(scores_row)) if scores_row[j] > best)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T


def test_hand_computed_ranks_for_a_tiny_paired_set():
    # query 0 is closest to target 0; query 1's true target (1) is 2nd; query 2's true target (2) is 3rd.
    targets = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    queries = np.array([[1.0, 0.1, 0.0], [1.0, 0.5, 0.0], [1.0, 0.5, 0.2]])
    m = retrieval_metrics(queries, targets, ks=(1, 2), query_name="image", target_name="text")
    assert m["image_to_text_R@1"] == pytest.approx(1 / 3)
    assert m["image_to_text_R@2"] == pytest.approx(2 / 3)
    assert m["image_to_text_mean_rank"] == pytest.approx((1 + 2 + 3) / 3)
    assert m["image_to_text_median_rank"] == 2
    # text 0 -> best query is 0 (cos 0.995) vs 1 (0.894) vs 2 (0.88): rank 1; text 1 -> query 1 has the
    # highest y share: rank 1; text 2 -> only query 2 has z: rank 1.
    assert m["text_to_image_R@1"] == 1.0
    assert m["text_to_image_mean_rank"] == 1.0


def test_paired_metrics_match_brute_force_in_both_directions():
    rng = np.random.default_rng(0)
    queries = rng.standard_normal((40, 8))
    targets = queries + 1.5 * rng.standard_normal((40, 8))
    m = retrieval_metrics(queries, targets)
    scores = _cosine(queries, targets)
    forward = np.array([_brute_force_rank(scores[i], {i}) for i in range(40)])
    backward = np.array([_brute_force_rank(scores[:, j], {j}) for j in range(40)])
    for k in (1, 5, 10):
        assert m[f"query_to_target_R@{k}"] == pytest.approx(np.mean(forward <= k))
        assert m[f"target_to_query_R@{k}"] == pytest.approx(np.mean(backward <= k))
    assert m["query_to_target_mean_rank"] == pytest.approx(forward.mean())
    assert m["target_to_query_median_rank"] == pytest.approx(np.median(backward))


def test_many_to_one_mapping_uses_best_matching_query_for_each_target():
    rng = np.random.default_rng(1)
    targets = rng.standard_normal((12, 6))
    mapping = np.repeat(np.arange(10), 3)  # targets 10 and 11 have no query
    queries = targets[mapping] + 1.2 * rng.standard_normal((30, 6))
    m = retrieval_metrics(torch.tensor(queries), torch.tensor(targets), query_to_target=mapping)
    scores = _cosine(queries, targets)
    forward = np.array([_brute_force_rank(scores[i], {int(mapping[i])}) for i in range(30)])
    backward = np.array(
        [_brute_force_rank(scores[:, j], set(np.flatnonzero(mapping == j).tolist())) for j in range(10)]
    )
    for k in (1, 5, 10):
        assert m[f"query_to_target_R@{k}"] == pytest.approx(np.mean(forward <= k))
        assert m[f"target_to_query_R@{k}"] == pytest.approx(np.mean(backward <= k))
    assert m["target_to_query_mean_rank"] == pytest.approx(backward.mean())
    assert m["target_to_query_num_targets"] == 10


def test_chunked_scoring_equals_single_block(monkeypatch):
    import shared.evaluation.retrieval as retrieval

    rng = np.random.default_rng(2)
    queries, targets = rng.standard_normal((50, 4)), rng.standard_normal((50, 4))
    whole = retrieval_metrics(queries, targets)
    monkeypatch.setattr(retrieval, "_SCORE_BLOCK_ELEMENTS", 60)  # one query row per chunk
    assert retrieval_metrics(queries, targets) == whole


def test_bad_inputs_raise_clear_errors():
    good = np.eye(3)
    with pytest.raises(ValueError, match="as many queries as targets"):
        retrieval_metrics(good, np.ones((4, 3)))
    with pytest.raises(ValueError, match="dimension"):
        retrieval_metrics(good, np.eye(3, 4))
    with pytest.raises(ValueError, match="all-zero rows"):
        retrieval_metrics(np.zeros((3, 3)), good)
    with pytest.raises(ValueError, match="outside"):
        retrieval_metrics(good, good, query_to_target=[0, 1, 3])
