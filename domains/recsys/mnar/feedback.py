"""The implicit-feedback container of the MNAR estimators: clicks on a user × item grid and their propensities.

The click model (Saito et al., WSDM 2020): a click ``Y = O·R`` needs exposure ``O ~ Bern(θ)`` and relevance
``R ~ Bern(γ)``. :class:`ImplicitFeedback` holds the clicks with the exposure propensity ``θ`` of each;
:func:`item_popularity_propensity` estimates ``θ`` from item popularity when the log has none.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


def item_popularity_propensity(
    click_items: np.ndarray, n_items: int, eta: float = 0.5, min_count: float = 1.0
) -> np.ndarray:
    """Item exposure propensities from relative popularity: ``θ_i = (n_i / max_j n_j)^η``.

    Args:
        click_items: item index (0-based) of every positive interaction in the training log.
        n_items: number of items; items never clicked get ``min_count`` clicks so ``θ_i > 0``.
        eta: power ``η`` (0.5 in Saito et al.; 0 gives uniform propensities, i.e. the naive loss).
        min_count: floor on the click count (a click never seen cannot have zero exposure).

    Returns:
        ``(n_items,)`` float64 array of propensities in ``(0, 1]``.
    """
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    counts = np.bincount(np.asarray(click_items, dtype=np.int64), minlength=n_items).astype(np.float64)
    if counts.size > n_items:
        raise ValueError(f"click item index {counts.size - 1} is out of range for {n_items} items")
    counts = np.maximum(counts, min_count)
    return (counts / counts.max()) ** eta


@dataclass(frozen=True)
class ImplicitFeedback:
    """Positive (clicked) user–item pairs on a ``n_users × n_items`` grid; every other pair is unlabeled.

    Attributes:
        n_users: number of users (indices ``0..n_users-1``).
        n_items: number of items.
        users: user index of each click.
        items: item index of each click.
        propensity: exposure propensity ``θ`` of each click (1.0 when unknown).
    """

    n_users: int
    n_items: int
    users: np.ndarray
    items: np.ndarray
    propensity: np.ndarray

    @classmethod
    def from_clicks(
        cls,
        n_users: int,
        n_items: int,
        users: np.ndarray,
        items: np.ndarray,
        propensity: np.ndarray | None = None,
    ) -> ImplicitFeedback:
        """Validate and deduplicate clicks (a repeated pair keeps its first propensity)."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        if users.shape != items.shape:
            raise ValueError("users and items must have the same length")
        if users.size and (users.min() < 0 or users.max() >= n_users):
            raise ValueError(f"user index out of range [0, {n_users})")
        if items.size and (items.min() < 0 or items.max() >= n_items):
            raise ValueError(f"item index out of range [0, {n_items})")
        theta = np.ones(users.size) if propensity is None else np.asarray(propensity, dtype=np.float64)
        if theta.shape != users.shape:
            raise ValueError("propensity must have one value per click")
        if theta.size and (not np.all(np.isfinite(theta)) or theta.min() <= 0 or theta.max() > 1):
            raise ValueError("propensities of clicked pairs must lie in (0, 1]")
        keys, first = np.unique(users * n_items + items, return_index=True)
        return cls(n_users, n_items, keys // n_items, keys % n_items, theta[first])

    @cached_property
    def keys(self) -> np.ndarray:
        """Sorted flat pair keys ``user·n_items + item`` of the clicks."""
        return self.users * self.n_items + self.items

    def lookup(self, users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(click, propensity)`` for arbitrary pairs; unclicked pairs get click 0, propensity 1."""
        keys = self.keys
        query = np.asarray(users, dtype=np.int64) * self.n_items + np.asarray(items, dtype=np.int64)
        position = np.searchsorted(keys, query)
        position_clipped = np.minimum(position, max(keys.size - 1, 0))
        hit = (keys.size > 0) & (position < keys.size) & (keys[position_clipped] == query)
        theta = np.where(hit, self.propensity[position_clipped] if keys.size else 1.0, 1.0)
        return hit.astype(np.float32), theta

    def item_click_counts(self) -> np.ndarray:
        """Number of clicks per item."""
        return np.bincount(self.items, minlength=self.n_items)
