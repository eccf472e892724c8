"""Full-ranking evaluation: every item is scored for every user, known interactions are excluded.

Metrics per user with at least one held-out item, averaged over those users:

* ``recall@K = hits@K / |T_u|``; ``precision@K = hits@K / K``;
* ``ndcg@K`` (standard): ``DCG@K / IDCG@K`` with ``DCG = Σ_{r ≤ K, hit} 1/log2(r + 1)`` and the ideal DCG of
  ``min(|T_u|, K)`` hits at the top;
* ``ndcg_variant="llmrec"``: LLMRec's (NGCF-lineage) variant whose ideal DCG is computed from the retrieved hit
  vector sorted in place (``IDCG = Σ_{r ≤ hits@K} 1/log2(r + 1)``); it ignores missed items and so reads high.

Users are processed in batches, so at most ``batch_users × n_items`` scores exist at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def _discounts(length: int, device: torch.device) -> torch.Tensor:
    return 1.0 / torch.log2(torch.arange(2, length + 2, device=device, dtype=torch.float64))


def top_k_items(
    user_embeddings: torch.Tensor,
    item_embeddings: torch.Tensor,
    exclude,
    k: int,
    users: Sequence[int] | np.ndarray | None = None,
    batch_users: int = 1024,
) -> np.ndarray:
    """Top-``k`` items per user by dot product, never returning excluded items.

    Args:
        user_embeddings: (n_users, D).
        item_embeddings: (n_items, D).
        exclude: (n_users × n_items) scipy CSR of items to exclude (e.g. training interactions) or ``None``.
        k: Items per user.
        users: User indices to rank for (default: all).
        batch_users: Users scored at once.

    Returns:
        (len(users), k) int64 item indices, best first.
    """
    users = np.arange(user_embeddings.shape[0]) if users is None else np.asarray(users, dtype=np.int64)
    results = []
    for start in range(0, len(users), batch_users):
        batch = users[start : start + batch_users]
        scores = _masked_scores(user_embeddings, item_embeddings, exclude, batch)
        results.append(torch.topk(scores, k, dim=1).indices.cpu().numpy())
    return np.concatenate(results) if results else np.zeros((0, k), dtype=np.int64)


def _masked_scores(user_embeddings, item_embeddings, exclude, batch: np.ndarray) -> torch.Tensor:
    index = torch.as_tensor(batch, device=user_embeddings.device)
    scores = (user_embeddings[index] @ item_embeddings.T).float()
    if exclude is not None:
        rows = exclude[batch].tocoo()
        scores[
            torch.as_tensor(rows.row, device=scores.device), torch.as_tensor(rows.col, device=scores.device)
        ] = -torch.inf
    return scores


def full_ranking_metrics(
    user_embeddings: torch.Tensor,
    item_embeddings: torch.Tensor,
    truth,
    exclude=None,
    ks: Sequence[int] = (10, 20, 50),
    batch_users: int = 1024,
    ndcg_variant: str = "standard",
) -> dict[str, float]:
    """Recall, precision and NDCG at each ``K`` over all items, excluding known interactions.

    Args:
        user_embeddings: (n_users, D) user representations.
        item_embeddings: (n_items, D) item representations.
        truth: (n_users × n_items) scipy CSR of held-out positives (validation or test).
        exclude: (n_users × n_items) scipy CSR of items never to rank (training, and validation when testing).
        ks: Cut-offs.
        batch_users: Users scored at once.
        ndcg_variant: ``standard`` or ``llmrec`` (see module docstring).

    Returns:
        ``{"recall@K", "precision@K", "ndcg@K" for each K, "users": evaluated users}``.
    """
    if ndcg_variant not in ("standard", "llmrec"):
        raise ValueError(f"unknown ndcg_variant {ndcg_variant!r}; expected 'standard' or 'llmrec'")
    ks = sorted(set(int(k) for k in ks))
    max_k = min(max(ks), item_embeddings.shape[0])
    truth = truth.tocsr()
    counts = np.asarray(truth.sum(axis=1)).ravel()
    users = np.flatnonzero(counts > 0)
    device = user_embeddings.device
    discounts = _discounts(max_k, device)
    cumulative_discounts = torch.cumsum(discounts, 0)
    totals = {f"{name}@{k}": 0.0 for k in ks for name in ("recall", "precision", "ndcg")}
    for start in range(0, len(users), batch_users):
        batch = users[start : start + batch_users]
        scores = _masked_scores(user_embeddings, item_embeddings, exclude, batch)
        top = torch.topk(scores, max_k, dim=1).indices
        relevant = torch.zeros_like(scores, dtype=torch.bool)
        rows = truth[batch].tocoo()
        relevant[torch.as_tensor(rows.row, device=device), torch.as_tensor(rows.col, device=device)] = True
        hits = torch.gather(relevant, 1, top).double()
        n_truth = torch.as_tensor(counts[batch], device=device, dtype=torch.float64)
        for k in ks:
            hits_k = hits[:, :k]
            n_hits = hits_k.sum(1)
            dcg = (hits_k * discounts[:k]).sum(1)
            if ndcg_variant == "standard":
                ideal_count = torch.clamp(n_truth, max=k).long()
            else:
                ideal_count = n_hits.long()
            ideal = torch.where(
                ideal_count > 0, cumulative_discounts[(ideal_count - 1).clamp_min(0)], torch.ones_like(dcg)
            )
            totals[f"recall@{k}"] += float((n_hits / n_truth).sum())
            totals[f"precision@{k}"] += float((n_hits / k).sum())
            totals[f"ndcg@{k}"] += float((dcg / ideal).sum())
    metrics = {name: value / max(len(users), 1) for name, value in totals.items()}
    metrics["users"] = float(len(users))
    return metrics
