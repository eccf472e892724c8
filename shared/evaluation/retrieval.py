"""Cross-modal retrieval metrics: Recall@K and mean/median rank in both directions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from shared.evaluation._arrays import as_float_matrix, as_label_vector, l2_normalize_rows

# Bounds the (chunk x targets) score block held in memory at once (~64 MB of float64).
_SCORE_BLOCK_ELEMENTS = 8_000_000


def _best_true_ranks(scores_source: np.ndarray, candidates: np.ndarray, true_mask_rows: Any, n_rows: int) -> np.ndarray:
    """1-based rank of the best-scoring correct candidate for every row, computed in chunks.

    A rank counts the candidates scoring strictly higher than the best correct one, plus one
    (ties are resolved in the row's favour).
    """
    chunk = max(1, _SCORE_BLOCK_ELEMENTS // max(1, candidates.shape[0]))
    ranks = np.empty(n_rows, dtype=np.int64)
    for start in range(0, n_rows, chunk):
        stop = min(n_rows, start + chunk)
        scores = scores_source[start:stop] @ candidates.T
        true_mask = true_mask_rows(start, stop)
        best_true = np.where(true_mask, scores, -np.inf).max(axis=1)
        ranks[start:stop] = (scores > best_true[:, None]).sum(axis=1) + 1
    return ranks


def _summaries(ranks: np.ndarray, prefix: str, ks: Sequence[int]) -> dict[str, float]:
    metrics = {f"{prefix}_R@{k}": float(np.mean(ranks <= k)) for k in ks}
    metrics[f"{prefix}_mean_rank"] = float(np.mean(ranks))
    metrics[f"{prefix}_median_rank"] = float(np.median(ranks))
    return metrics


def retrieval_metrics(
    query_emb: Any,
    target_emb: Any,
    ks: Sequence[int] = (1, 5, 10),
    query_to_target: Any = None,
    query_name: str = "query",
    target_name: str = "target",
) -> dict[str, float]:
    """Recall@K and mean/median rank for retrieval in both directions, by cosine similarity.

    With the default ground truth, query ``i`` matches target ``i`` (paired embeddings, as in
    open_clip's validation). With ``query_to_target``, several queries may share one target (e.g. five
    captions per image): query ``i`` matches target ``query_to_target[i]``; in the target-to-query
    direction a target is retrieved at the rank of its best-ranked matching query (the COCO convention).
    Ranks are 1-based; a candidate tied with the correct one does not push it down.

    Args:
        query_emb: (Nq, D) query embeddings (numpy or torch); rows are L2-normalized here.
        target_emb: (Nt, D) target embeddings; rows are L2-normalized here.
        ks: The K values of Recall@K.
        query_to_target: Optional (Nq,) integer array, the index of each query's correct target.
            Targets no query points to are left out of the target-to-query metrics.
        query_name: Name of the query side in the metric keys (e.g. ``"image"``).
        target_name: Name of the target side in the metric keys (e.g. ``"text"``).

    Returns:
        ``{"<query>_to_<target>_R@K", ..._mean_rank, ..._median_rank}`` and the same for
        ``<target>_to_<query>``, plus ``"<target>_to_<query>_num_targets"`` (targets scored).

    Raises:
        ValueError: On mismatched shapes, non-finite or all-zero embeddings, or a mapping index out of range.
    """
    queries = l2_normalize_rows(as_float_matrix(query_emb, "query_emb"), "query_emb")
    targets = l2_normalize_rows(as_float_matrix(target_emb, "target_emb"), "target_emb")
    if queries.shape[1] != targets.shape[1]:
        raise ValueError(f"query_emb and target_emb differ in dimension: {queries.shape[1]} vs {targets.shape[1]}")
    n_queries, n_targets = queries.shape[0], targets.shape[0]
    if query_to_target is None:
        if n_queries != n_targets:
            raise ValueError(
                f"paired retrieval needs as many queries as targets ({n_queries} vs {n_targets}); "
                "pass query_to_target for a many-to-one ground truth"
            )
        mapping = np.arange(n_queries)
    else:
        mapping = as_label_vector(query_to_target, "query_to_target").astype(np.int64)
        if mapping.shape[0] != n_queries:
            raise ValueError(f"query_to_target has {mapping.shape[0]} entries for {n_queries} queries")
        if mapping.size and (mapping.min() < 0 or mapping.max() >= n_targets):
            raise ValueError(f"query_to_target holds indices outside [0, {n_targets})")
    if any(int(k) < 1 for k in ks):
        raise ValueError(f"every K must be >= 1; got {list(ks)}")

    forward = f"{query_name}_to_{target_name}"
    backward = f"{target_name}_to_{query_name}"
    target_index = np.arange(n_targets)
    query_ranks = _best_true_ranks(
        queries, targets, lambda a, b: mapping[a:b, None] == target_index[None, :], n_queries
    )
    metrics = _summaries(query_ranks, forward, ks)

    scored_targets = np.unique(mapping)
    target_rows = targets[scored_targets]
    target_ranks = _best_true_ranks(
        target_rows,
        queries,
        lambda a, b: scored_targets[a:b, None] == mapping[None, :],
        scored_targets.shape[0],
    )
    metrics.update(_summaries(target_ranks, backward, ks))
    metrics[f"{backward}_num_targets"] = float(scored_targets.shape[0])
    return metrics
