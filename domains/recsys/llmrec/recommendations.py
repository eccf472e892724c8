"""Top-N recommendations for given users from a trained run: unseen items with rank, score and title."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from domains.recsys.llmrec.graphs import items_by_user
from domains.recsys.llmrec.ranking_metrics import top_k_items
from domains.recsys.llmrec.training import LoadedRun
from domains.recsys.recbole_io import write_atomic_file
from shared.user_errors import UserError

RECOMMENDATIONS_FILE = "recommendations.tsv"
RECOMMENDATION_TYPES = {"user_id": "token", "rank": "float", "item_id": "token", "score": "float", "title": "token"}
"""RecBole atomic types of the recommendation table's columns."""


class UnknownUsers(UserError, KeyError):
    """Some requested user ids are not in the run's data (a ``KeyError`` for callers that look ids up)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def recommend(loaded: LoadedRun, users: Sequence[str], top_n: int = 10) -> pd.DataFrame:
    """Top-``top_n`` items per raw user id that the user never interacted with (any split).

    Returns:
        Columns ``user_id, rank, item_id, score, title``, ``top_n`` rows per user in the given order.

    Raises:
        UnknownUsers: A user id is not in the data (the message names them and shows a few known ids).
        UserError: ``top_n`` is below 1 or above the number of items.
    """
    data = loaded.data
    if not 1 <= top_n <= data.n_items:
        raise UserError(f"top_n: must be between 1 and {data.n_items} (the items of {data.name!r}), got {top_n}")
    lookup = data.user_index()
    missing = [user for user in users if user not in lookup]
    if missing:
        raise UnknownUsers(f"unknown user id(s) {missing}; known ids look like {data.user_ids[:5]}")
    indices = np.asarray([lookup[user] for user in users], dtype=np.int64)
    seen = items_by_user(np.concatenate([data.train, data.val, data.test]), data.n_users, data.n_items)
    user_emb, item_emb = loaded.model.user_item_embeddings()
    top = top_k_items(user_emb, item_emb, seen, top_n, users=indices)
    scores = (user_emb[indices] @ item_emb.T).gather(1, torch.as_tensor(top, device=user_emb.device)).cpu().numpy()
    rows = []
    for position, user in enumerate(users):
        for rank, (item, score) in enumerate(zip(top[position], scores[position]), start=1):
            rows.append((user, rank, data.item_ids[item], float(score), data.item_titles[item]))
    return pd.DataFrame(rows, columns=["user_id", "rank", "item_id", "score", "title"])


def write_recommendations(table: pd.DataFrame, path: str) -> None:
    """Writes a :func:`recommend` table as a RecBole-style atomic file (atomically)."""
    write_atomic_file(table, path, RECOMMENDATION_TYPES)
