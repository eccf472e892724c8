"""Ranking metrics for MNAR implicit feedback: AOA on a missing-at-random test set, and IPS/SNIPS estimates.

Two settings:

* **MAR test set** (Yahoo! R3, Coat, a randomized click log): :func:`mar_ranking_metrics` ranks each user's
  test items by the model's scores and averages DCG@K, Recall@K and MAP@K over users (average over all, AOA).
  ``conventions="paper"`` reproduces the Rel-MF evaluation code exactly: relevance ``0.001 + 0.999·label``,
  the Järvelin–Kekäläinen discount (``1`` at ranks 1 and 2, ``1/log2(rank)`` after), Recall as the share of
  relevance mass in the top K, MAP@K as the un-normalised sum of precisions at relevant positions, and every
  test user counted. ``conventions="standard"`` uses binary relevance, ``1/log2(rank + 1)``, Recall = hits /
  relevant, AP@K normalised by ``min(K, relevant)``, and only users with a relevant test item.
* **Biased log only**: :func:`propensity_weighted_ranking_metrics` ranks all items per user and re-weights
  each logged click by ``1/θ`` (Yang et al., RecSys 2018): IPS divides a user's weighted sum by the number of
  relevant items (when known) or of clicks; SNIPS self-normalises the weights everywhere, including inside
  MAP's precision, so its estimates stay in the metric's range. With ``θ ≡ 1`` both equal the naive average.

Ties in scores are broken by input order (the earlier row ranks higher) for MAR metrics; for the IPS/SNIPS
ranks over all items a tied item gets its expected rank under random tie-breaking (a degenerate constant
model must not look perfect: validation choices rely on these estimates).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

Conventions = Literal["paper", "standard"]

PAPER_NEGATIVE_RELEVANCE = 0.001
"""Relevance the Rel-MF evaluation gives to irrelevant test items."""


def _discount(ranks: np.ndarray, conventions: Conventions) -> np.ndarray:
    if conventions == "paper":
        return 1.0 / np.maximum(1.0, np.log2(np.maximum(ranks, 1)))
    return 1.0 / np.log2(ranks + 1.0)


def _group_starts(sorted_users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start offset of each row's user group and the unique users, for rows sorted by user."""
    boundaries = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    group_of_row = np.cumsum(np.r_[True, sorted_users[1:] != sorted_users[:-1]]) - 1
    return boundaries[group_of_row], group_of_row


def mar_ranking_metrics(
    users: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    ks: Sequence[int] = (1, 3, 5),
    conventions: Conventions = "paper",
) -> dict[str, float]:
    """DCG@K, Recall@K and MAP@K over each user's test items, averaged over users.

    Args:
        users: user id of each test row.
        labels: binary relevance of each test row (e.g. rating ≥ 4).
        scores: model score of each test row (higher ranks first).
        ks: cut-offs.
        conventions: ``"paper"`` (Rel-MF code) or ``"standard"``; see the module docstring.

    Returns:
        ``{"DCG@K": ..., "Recall@K": ..., "MAP@K": ..., "users": n}`` with ``n`` the number of users averaged.
    """
    users = np.asarray(users)
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if not (users.shape == labels.shape == scores.shape) or users.ndim != 1:
        raise ValueError("users, labels and scores must be 1-D arrays of the same length")
    if not np.all(np.isin(labels, (0.0, 1.0))):
        raise ValueError("labels must be binary (0/1)")
    if conventions not in ("paper", "standard"):
        raise ValueError(f"unknown conventions {conventions!r}; use 'paper' or 'standard'")
    if users.size == 0:
        raise ValueError("no test rows to evaluate")
    order = np.lexsort((np.arange(users.size), -scores, users))
    sorted_users, label = users[order], labels[order]
    starts, group = _group_starts(sorted_users)
    ranks = np.arange(users.size) - starts + 1
    n_groups = group[-1] + 1
    relevance = PAPER_NEGATIVE_RELEVANCE + (1 - PAPER_NEGATIVE_RELEVANCE) * label if conventions == "paper" else label
    positives = np.bincount(group, weights=label, minlength=n_groups)
    relevance_total = np.bincount(group, weights=relevance, minlength=n_groups)
    # running relevance within each user's ranked list (precision numerators)
    cumulative = np.cumsum(relevance)
    cumulative_in_group = cumulative - np.r_[0.0, cumulative][starts]
    keep = relevance_total > 0 if conventions == "paper" else positives > 0
    if not keep.any():
        raise ValueError("no test user has a relevant item; standard metrics are undefined")
    discount = _discount(ranks.astype(np.float64), conventions)
    out: dict[str, float] = {}
    for k in ks:
        if k < 1:
            raise ValueError(f"cut-off K must be >= 1, got {k}")
        top = ranks <= k
        dcg = np.bincount(group, weights=relevance * discount * top, minlength=n_groups)
        recall_denominator = relevance_total if conventions == "paper" else positives
        recall = np.bincount(group, weights=relevance * top, minlength=n_groups) / np.maximum(
            recall_denominator, 1e-300
        )
        precision_at_hit = np.where(top & (label == 1), cumulative_in_group / ranks, 0.0)
        average_precision = np.bincount(group, weights=precision_at_hit, minlength=n_groups)
        if conventions == "standard":
            average_precision = average_precision / np.maximum(np.minimum(k, positives), 1)
        out[f"DCG@{k}"] = float(dcg[keep].mean())
        out[f"Recall@{k}"] = float(recall[keep].mean())
        out[f"MAP@{k}"] = float(average_precision[keep].mean())
    out["users"] = int(keep.sum())
    return out


def rare_item_mask(items: np.ndarray, item_positive_counts: np.ndarray, max_positives: int) -> np.ndarray:
    """Rows whose item has at most ``max_positives`` training positives (Rel-MF's "rare items": ≤ 500)."""
    return np.asarray(item_positive_counts)[np.asarray(items)] <= max_positives


def _ranks_among_all_items(
    score_matrix: np.ndarray, users: np.ndarray, items: np.ndarray, chunk: int = 4096
) -> np.ndarray:
    """Expected rank of the given item under random tie-breaking: 1 + items scored strictly higher + half the
    other items with the same score (a constant model ranks every item in the middle, not first)."""
    ranks = np.empty(users.size, dtype=np.float64)
    for start in range(0, users.size, chunk):
        u, i = users[start : start + chunk], items[start : start + chunk]
        rows = score_matrix[u]
        own = rows[np.arange(u.size), i][:, None]
        higher = (rows > own).sum(1)
        tied_others = (rows == own).sum(1) - 1
        ranks[start : start + chunk] = 1 + higher + 0.5 * tied_others
    return ranks


def propensity_weighted_ranking_metrics(
    score_matrix: np.ndarray,
    click_users: np.ndarray,
    click_items: np.ndarray,
    click_propensity: np.ndarray,
    ks: Sequence[int] = (1, 3, 5),
    estimator: Literal["ips", "snips"] = "snips",
    excluded_users: np.ndarray | None = None,
    excluded_items: np.ndarray | None = None,
    relevant_per_user: np.ndarray | None = None,
) -> dict[str, float]:
    """IPS or SNIPS estimates of DCG@K, Recall@K and MAP@K from a biased click log with logged propensities.

    Each user's items are all ranked by ``score_matrix``; every logged click ``(u, i)`` at rank ``r_i`` with
    propensity ``θ_ui`` gets weight ``w_i = 1/θ_ui``. Per user, with ``N_u`` the normaliser:

    * ``DCG@K_u = Σ_i w_i·[r_i ≤ K]/log2(r_i + 1) / N_u`` and ``Recall@K_u = Σ_i w_i·[r_i ≤ K] / N_u``;
    * ``MAP@K_u = Σ_i w_i·[r_i ≤ K]·P_i / N_u`` with the precision at the click
      ``P_i = (1 + Σ_{j ≠ i, r_j ≤ r_i} w_j) / r_i``: the click itself counts once (it is relevant), every
      other click ranked at or above it stands for ``w_j`` relevant items. Weighting ``i`` itself by ``w_i``
      inside ``P_i`` too (``w_i²``) would make the estimate biased, since ``E[O_i/θ_i²] ≠ 1``.

    **IPS** uses ``N_u`` = the number of the user's relevant items when ``relevant_per_user`` is given (then
    every metric is unbiased under independent exposures), else the number of the user's logged clicks (a
    ratio estimate). **SNIPS** self-normalises: it is IPS with the weights rescaled to average 1 over the
    user's clicks (``w̃ = w·n_u/Σw``), everywhere including inside ``P_i``, so ``N_u = Σ w``; a precision is
    at most 1, and the rescaled weights of clicks ranked above a heavy click can still exceed the ranks they
    occupy, so ``P_i`` is capped at 1. Every SNIPS estimate therefore lies in the metric's range: a weighted
    average of per-click values in [0, 1] (DCG's discount and the capped precision) is in [0, 1]. With ``θ ≡ 1``
    both estimators equal the plain average over clicks. Results are averaged over users with clicks.

    Args:
        score_matrix: ``(n_users, n_items)`` model scores.
        click_users: user of each logged click.
        click_items: item of each logged click.
        click_propensity: logged propensity of each click, in ``(0, 1]``.
        ks: cut-offs.
        estimator: ``"ips"`` or ``"snips"``.
        excluded_users: users of pairs to remove from the ranking (e.g. training clicks).
        excluded_items: items of those pairs.
        relevant_per_user: ``(n_users,)`` number of relevant items of each user (known in simulations); IPS
            divides by it. Ignored by SNIPS.

    Returns:
        ``{"DCG@K": ..., "Recall@K": ..., "MAP@K": ..., "users": n}``.
    """
    scores = np.array(score_matrix, dtype=np.float64, copy=True)
    users = np.asarray(click_users, dtype=np.int64)
    items = np.asarray(click_items, dtype=np.int64)
    theta = np.asarray(click_propensity, dtype=np.float64)
    if not (users.shape == items.shape == theta.shape) or users.size == 0:
        raise ValueError("click_users, click_items and click_propensity must be non-empty and equally long")
    if not np.all(np.isfinite(theta)) or theta.min() <= 0 or theta.max() > 1:
        raise ValueError("logged propensities must lie in (0, 1]")
    if estimator not in ("ips", "snips"):
        raise ValueError(f"unknown estimator {estimator!r}; use 'ips' or 'snips'")
    if excluded_users is not None and excluded_items is not None:
        scores[np.asarray(excluded_users), np.asarray(excluded_items)] = -np.inf
        scores[users, items] = np.asarray(score_matrix, dtype=np.float64)[users, items]
    ranks = _ranks_among_all_items(scores, users, items)
    weight = 1.0 / theta
    order = np.lexsort((ranks, users))
    sorted_users, ranks, weight = users[order], ranks[order].astype(np.float64), weight[order]
    starts, group = _group_starts(sorted_users)
    n_groups = group[-1] + 1
    clicks_per_user = np.bincount(group, minlength=n_groups).astype(np.float64)
    weight_per_user = np.bincount(group, weights=weight, minlength=n_groups)
    if estimator == "snips":
        # SNIPS = IPS with weights rescaled to average 1 over each user's clicks
        weight = weight * (clicks_per_user / weight_per_user)[group]
        normaliser = clicks_per_user
    elif relevant_per_user is not None:
        first_rows = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
        relevant = np.asarray(relevant_per_user, dtype=np.float64)[sorted_users[first_rows]]
        if np.any(relevant < clicks_per_user):
            raise ValueError("relevant_per_user is below a user's number of clicks")
        normaliser = relevant
    else:
        normaliser = clicks_per_user
    # Σ_{j: r_j ≤ r_i} w_j within the user, ties in rank included: the running sum at the end of each tie block
    cumulative = np.cumsum(weight)
    block_start = np.r_[True, (sorted_users[1:] != sorted_users[:-1]) | (ranks[1:] != ranks[:-1])]
    block_end = np.r_[np.flatnonzero(block_start)[1:] - 1, weight.size - 1]
    through_block = cumulative[block_end[np.cumsum(block_start) - 1]] - np.r_[0.0, cumulative][starts]
    precision = (1.0 + through_block - weight) / ranks
    if estimator == "snips":
        precision = np.minimum(precision, 1.0)
    out: dict[str, float] = {}
    for k in ks:
        if k < 1:
            raise ValueError(f"cut-off K must be >= 1, got {k}")
        top = ranks <= k
        dcg = np.bincount(group, weights=weight * top / np.log2(ranks + 1), minlength=n_groups)
        recall = np.bincount(group, weights=weight * top, minlength=n_groups)
        average_precision = np.bincount(group, weights=top * weight * precision, minlength=n_groups)
        out[f"DCG@{k}"] = float(np.mean(dcg / normaliser))
        out[f"Recall@{k}"] = float(np.mean(recall / normaliser))
        out[f"MAP@{k}"] = float(np.mean(average_precision / normaliser))
    out["users"] = int(n_groups)
    return out
