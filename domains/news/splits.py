"""The train/val/test split of a post table, the same in training, evaluation and the ablations.

The data's own splits are used where present; otherwise seeded random ones are carved by group, so the
real and fake posts of one caption (the built-in set's ``pair_id``) always land in the same split.
"""

from __future__ import annotations

import numpy as np

from domains.news.feature_cache import PostTable
from shared.user_errors import UserError

SPLITS = ("train", "val", "test")


def pair_groups(table: PostTable) -> list[str]:
    """Group of each post: its ``pair_id`` (real and fake posts of one caption), else its own key."""
    return [str(m.get("extra", {}).get("pair_id") or key) for m, key in zip(table.meta, table.keys)]


def split_rows(table: PostTable, val_fraction: float, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Train/val/test rows: the data's own splits where present, else seeded random ones.

    Posts sharing a ``pair_id`` (built-in set, NewsCLIPpings-style pairs) always land in the same split.

    Raises:
        UserError: a split ends up empty (too few posts), naming the shard folder.
    """
    splits = list(table.splits)
    groups = pair_groups(table)
    rng = np.random.default_rng(seed)

    def carve(candidates: list[int], fraction: float, name: str) -> None:
        unique = sorted({groups[i] for i in candidates})
        chosen = set(rng.permutation(unique)[: max(1, round(fraction * len(unique)))].tolist()) if unique else set()
        for i in candidates:
            if groups[i] in chosen:
                splits[i] = name

    if all(s is None for s in splits):
        carve(list(range(len(splits))), test_fraction, "test")
    splits = [s if s in ("val", "test") else ("train" if s in (None, "train") else s) for s in splits]
    if "val" not in splits:
        carve([i for i, s in enumerate(splits) if s == "train"], val_fraction, "val")
    rows = {name: np.array([i for i, s in enumerate(splits) if s == name], dtype=np.int64) for name in SPLITS}
    empty = [name for name, r in rows.items() if len(r) == 0]
    if empty:
        raise UserError(f"{table.source or 'the data'}: split(s) {empty} are empty: too few posts ({len(splits)})")
    return rows


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Refuse split shares outside (0, 1) or summing to 1 or more.

    Raises:
        UserError: naming ``--val_fraction`` or ``--test_fraction``.
    """
    for flag, value in (("--val_fraction", val_fraction), ("--test_fraction", test_fraction)):
        if not 0.0 < value < 1.0:
            raise UserError(f"{flag}: must be between 0 and 1, got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise UserError(f"--val_fraction {val_fraction} and --test_fraction {test_fraction}: must sum to less than 1")
