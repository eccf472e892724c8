"""Top-N recommendations for given users from a trained run: unseen items with rank, score and title.

:func:`recommend_for_run` is ``domains.recsys.recommend``'s work: it checks the request, reloads the run and
writes ``recommendations.tsv`` (a RecBole-style atomic file).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from domains.recsys.llmrec.graphs import items_by_user
from domains.recsys.llmrec.ranking_metrics import top_k_items
from domains.recsys.llmrec.training import LoadedRun, load_run
from domains.recsys.recbole_io import write_atomic_file
from shared.user_errors import NothingProduced, UserError

RECOMMENDATIONS_FILE = "recommendations.tsv"
RECOMMENDATION_TYPES = {"user_id": "token", "rank": "float", "item_id": "token", "score": "float", "title": "token"}
"""RecBole atomic types of the recommendation table's columns."""


@dataclass
class RecommendConfig:
    """Top-N recommendations for given users from a trained run."""

    run: str = "runs/recsys/demo"
    """Run folder written by domains.recsys.train."""
    users: list[str | int] = field(default_factory=lambda: ["1"])
    """Raw user ids (as in the dataset's .inter file), e.g. --users '[1, 2, 3]'."""
    top_n: int = 10
    """Recommendations per user (1 to the number of items)."""
    out_dir: str | None = None
    """Folder for recommendations.tsv (null: the run folder)."""


@dataclass(frozen=True)
class Recommendations:
    """What :func:`recommend_for_run` computed and wrote.

    Attributes:
        table: columns ``user_id, rank, item_id, score, title`` (see :func:`recommend`).
        path: the written ``recommendations.tsv``.
    """

    table: pd.DataFrame
    path: Path


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


def write_recommendations(table: pd.DataFrame, path: str | Path) -> None:
    """Writes a :func:`recommend` table as a RecBole-style atomic file (atomically)."""
    write_atomic_file(table, path, RECOMMENDATION_TYPES)


def recommend_for_run(config: RecommendConfig) -> Recommendations:
    """Top-``config.top_n`` unseen items for ``config.users`` from the run ``config.run``, written as a table.

    Raises:
        UserError: ``--top_n`` below 1 or above the number of items, an unknown user id (``--users``), or
            ``config.run`` is not a finished ``domains.recsys.train`` run.
        NothingProduced: ``--users`` is empty.
    """
    if config.top_n < 1:
        raise UserError(f"--top_n: must be >= 1, got {config.top_n}")
    if not config.users:
        raise NothingProduced("--users is empty: no user to recommend for")
    loaded = load_run(config.run)
    if config.top_n > loaded.data.n_items:
        raise UserError(f"--top_n: must be <= {loaded.data.n_items} (the items of the run's data), got {config.top_n}")
    try:
        table = recommend(loaded, [str(user) for user in config.users], config.top_n)
    except UnknownUsers as error:
        raise UserError(f"--users: {error}") from None
    path = (Path(config.out_dir) if config.out_dir else loaded.run_dir) / RECOMMENDATIONS_FILE
    write_recommendations(table, path)
    return Recommendations(table=table, path=path)
