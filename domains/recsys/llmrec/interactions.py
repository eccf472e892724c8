"""Implicit-feedback interactions with contiguous indices, and the per-user train/validation/test split.

Internally users and items are contiguous indices ``0..n_users-1`` / ``0..n_items-1``; the raw ids are kept in
:class:`InteractionData` for output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from domains.recsys.recbole_io import DataFormatError


@dataclass
class InteractionData:
    """Implicit-feedback data with contiguous indices and train/validation/test splits.

    Attributes:
        user_ids: Raw user id of each user index.
        item_ids: Raw item id of each item index.
        train: (E, 2) int64 ``(user, item)`` index pairs used for training and the graph.
        val: Validation pairs (model selection, early stopping).
        test: Test pairs (reported once).
        item_titles: Display title of each item.
        item_texts: Text describing each item (title, year, genres) for the text tower.
        item_attributes: Per item, attribute name → list of values (e.g. KG ``director`` entities).
        item_text_features: Optional (n_items, F) float32 text features.
        item_image_features: Optional (n_items, G) float32 image features (LLMRec layout's image_feat.npy).
        user_profile_features: Optional (n_users, P) float32 profile features (LLM user profiles, embedded).
        name: Dataset name.
        held_out_known: Optional (H, 2) pairs known to the system but in no split (e.g. a controlled
            experiment's augmentation pool); excluded from every validation and test ranking.
    """

    user_ids: list[str]
    item_ids: list[str]
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    item_titles: list[str]
    item_texts: list[str]
    item_attributes: list[dict[str, list[str]]] = field(default_factory=list)
    item_text_features: np.ndarray | None = None
    item_image_features: np.ndarray | None = None
    user_profile_features: np.ndarray | None = None
    name: str = "dataset"
    held_out_known: np.ndarray | None = None

    @property
    def n_users(self) -> int:
        """Number of users."""
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        """Number of items."""
        return len(self.item_ids)

    def user_index(self) -> dict[str, int]:
        """Raw user id → user index."""
        return {raw: index for index, raw in enumerate(self.user_ids)}

    def item_index(self) -> dict[str, int]:
        """Raw item id → item index."""
        return {raw: index for index, raw in enumerate(self.item_ids)}


def split_interactions(
    frame: pd.DataFrame,
    strategy: str = "random",
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 2022,
) -> pd.Series:
    """Assigns each interaction to ``train``, ``val`` or ``test`` per user.

    ``random``: each user's interactions are shuffled with ``numpy.random.default_rng(seed)``; ``temporal``:
    ordered by ``timestamp`` (ties by row order), so validation and test are each user's latest interactions.
    A user with ``n`` interactions gets ``max(1, round(n * ratios[0]))`` training rows,
    ``round(n * ratios[1])`` validation rows (never eating the last training row) and the rest as test.

    Args:
        frame: Interactions with ``user`` (any hashable) and, for ``temporal``, ``timestamp``.
        strategy: ``random`` or ``temporal``.
        ratios: Train/validation/test fractions (must sum to 1).
        seed: Seed of the random order.

    Returns:
        A Series of ``train``/``val``/``test`` aligned with ``frame``.
    """
    if strategy not in ("random", "temporal"):
        raise ValueError(f"unknown split strategy {strategy!r}; expected 'random' or 'temporal'")
    if len(ratios) != 3 or abs(sum(ratios) - 1.0) > 1e-6 or min(ratios) < 0:
        raise ValueError(f"split ratios must be three non-negative fractions summing to 1, got {ratios}")
    order = pd.DataFrame({"user": frame["user"].to_numpy()}, index=frame.index)
    if strategy == "random":
        order["key"] = np.random.default_rng(seed).random(len(frame))
    else:
        if "timestamp" not in frame.columns:
            raise ValueError("temporal split needs a 'timestamp' column")
        order["key"] = frame["timestamp"].to_numpy()
    order["row"] = np.arange(len(frame))
    order = order.sort_values(["user", "key", "row"], kind="stable")
    rank = order.groupby("user").cumcount().to_numpy()
    count = order.groupby("user")["row"].transform("size").to_numpy()
    n_train = np.maximum(1, np.round(count * ratios[0])).astype(int)
    n_val = np.minimum(np.round(count * ratios[1]).astype(int), count - n_train)
    labels = np.where(rank < n_train, "train", np.where(rank < n_train + n_val, "val", "test"))
    return pd.Series(labels, index=order.index).reindex(frame.index)


def natural_key(raw: str) -> tuple[int, int | str]:
    """Sort key putting numeric ids in numeric order before other ids (``"2" < "10" < "a"``)."""
    return (0, int(raw)) if raw.isdigit() else (1, raw)


def interactions_from_frame(
    frame: pd.DataFrame,
    items: pd.DataFrame,
    strategy: str = "random",
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 2022,
    min_rating: float | None = None,
    name: str = "dataset",
) -> InteractionData:
    """Builds :class:`InteractionData` from an interaction table and an item table.

    Args:
        frame: ``user_id``, ``item_id`` and optional ``rating``, ``timestamp``.
        items: ``item_id`` plus optional ``title`` and ``text`` columns; defines the item universe and order.
        strategy: Split strategy (see :func:`split_interactions`).
        ratios: Train/validation/test fractions.
        seed: Split seed.
        min_rating: Keep only interactions with ``rating >= min_rating`` (``None`` keeps all: implicit feedback).
        name: Dataset name.
    """
    frame = frame.copy()
    if min_rating is not None:
        if "rating" not in frame.columns:
            raise ValueError("min_rating given but the interactions have no 'rating' column")
        frame = frame[frame["rating"] >= min_rating]
    if "timestamp" in frame.columns:
        frame = frame.sort_values("timestamp", kind="stable").drop_duplicates(["user_id", "item_id"], keep="last")
    item_ids = items["item_id"].astype(str).tolist()
    item_lookup = {raw: index for index, raw in enumerate(item_ids)}
    user_ids = sorted(frame["user_id"].astype(str).unique(), key=natural_key)
    user_lookup = {raw: index for index, raw in enumerate(user_ids)}
    frame["user"] = frame["user_id"].astype(str).map(user_lookup)
    frame["item"] = frame["item_id"].astype(str).map(item_lookup)
    if frame["item"].isna().any():
        raise DataFormatError(f"{name}: interactions reference items missing from the item table")
    frame["split"] = split_interactions(frame, strategy=strategy, ratios=ratios, seed=seed)
    pairs = {
        part: frame.loc[frame["split"] == part, ["user", "item"]].to_numpy(dtype=np.int64)
        for part in ("train", "val", "test")
    }
    titles = items["title"].astype(str).tolist() if "title" in items.columns else item_ids
    texts = items["text"].astype(str).tolist() if "text" in items.columns else titles
    return InteractionData(
        user_ids=user_ids,
        item_ids=item_ids,
        train=pairs["train"],
        val=pairs["val"],
        test=pairs["test"],
        item_titles=titles,
        item_texts=texts,
        item_attributes=[{} for _ in item_ids],
        name=name,
    )
