"""Top-N recommendations with titles: ``python -m domains.recsys.recommend --run runs/recsys/demo --users '[1, 2]'``.

Items the user already interacted with (any split) are never recommended. Users are raw ids as in the data.
Prints a table and writes ``<run>/recommendations.tsv`` (RecBole-style atomic file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from domains.recsys.data import items_by_user, write_atomic_file
from domains.recsys.ranking_metrics import top_k_items
from domains.recsys.recommender import LoadedRun, load_run
from shared.cli import parse_config


@dataclass
class RecommendConfig:
    """Top-N recommendations for given users from a trained run."""

    run: str = "runs/recsys/demo"
    """Run folder written by domains.recsys.train."""
    users: list[str | int] = field(default_factory=lambda: ["1"])
    """Raw user ids (as in the dataset's .inter file), e.g. --users '[1, 2, 3]'."""
    top_n: int = 10
    """Recommendations per user."""
    out: str | None = None
    """Output file (default: <run>/recommendations.tsv)."""


def recommend(loaded: LoadedRun, users: list[str], top_n: int = 10) -> pd.DataFrame:
    """Top-``top_n`` unseen items per raw user id with rank, score and title.

    Raises:
        KeyError: A user id is not in the data (the message lists a few known ids).
    """
    data = loaded.data
    lookup = data.user_index()
    missing = [user for user in users if user not in lookup]
    if missing:
        raise KeyError(f"unknown user id(s) {missing}; known ids look like {data.user_ids[:5]}")
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


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    config = parse_config(RecommendConfig, argv, prog="python -m domains.recsys.recommend")
    loaded = load_run(config.run)
    table = recommend(loaded, [str(user) for user in config.users], config.top_n)
    out = Path(config.out) if config.out else Path(config.run) / "recommendations.tsv"
    write_atomic_file(
        table, out, {"user_id": "token", "rank": "float", "item_id": "token", "score": "float", "title": "token"}
    )
    with pd.option_context("display.max_rows", None, "display.width", 160):
        print(table.to_string(index=False))
    print(f"Wrote {out}")
    print(f"Next: python -m domains.recsys.embed --run {config.run}")


if __name__ == "__main__":
    main()
