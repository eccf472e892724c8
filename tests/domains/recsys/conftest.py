"""Fixtures for the recsys tests: a small synthetic RecBole dataset with a knowledge graph, made in tmp_path.

Users fall into three taste groups; each group mostly interacts with one third of the items, and the KG links
each item to a director/country/language of its group, so models and the KG backend have real signal.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from domains.recsys.recbole_io import write_atomic_file

N_USERS, N_ITEMS, GROUPS = 36, 45, 3


def write_synthetic_recbole(folder: Path, seed: int = 0, per_user: int = 12) -> Path:
    """Writes ``synth.inter/.item/.kg/.link`` into ``folder`` and returns it."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(N_USERS):
        group = user % GROUPS
        own = [item for item in range(N_ITEMS) if item % GROUPS == group]
        other = [item for item in range(N_ITEMS) if item % GROUPS != group]
        chosen = list(rng.choice(own, size=per_user - 2, replace=False)) + list(
            rng.choice(other, size=2, replace=False)
        )
        for position, item in enumerate(chosen):
            rows.append((str(user + 1), str(item + 1), float(rng.integers(1, 6)), float(1000 + 10 * position + user)))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    write_atomic_file(
        inter, folder / "synth.inter", {"user_id": "token", "item_id": "token", "rating": "float", "timestamp": "float"}
    )
    genres = ["Action Thriller", "Comedy Romance", "Drama War"]
    items = pd.DataFrame(
        {
            "item_id": [str(i + 1) for i in range(N_ITEMS)],
            "movie_title": [f"Movie {i + 1}" for i in range(N_ITEMS)],
            "release_year": [str(1980 + i) for i in range(N_ITEMS)],
            "class": [genres[i % GROUPS] for i in range(N_ITEMS)],
        }
    )
    write_atomic_file(
        items,
        folder / "synth.item",
        {"item_id": "token", "movie_title": "token_seq", "release_year": "token", "class": "token_seq"},
    )
    link = pd.DataFrame(
        {"item_id": [str(i + 1) for i in range(N_ITEMS - 3)], "entity_id": [f"e.{i + 1}" for i in range(N_ITEMS - 3)]}
    )
    write_atomic_file(link, folder / "synth.link", {"item_id": "token", "entity_id": "token"})
    triples = []
    for i in range(N_ITEMS - 3):
        group = i % GROUPS
        triples.append((f"e.{i + 1}", "film.film.directed_by", f"director.{group}.{i % 2}"))
        triples.append((f"e.{i + 1}", "film.film.country", f"country.{group}"))
        triples.append((f"e.{i + 1}", "film.film.language", f"language.{group}"))
        triples.append((f"e.{i + 1}", "film.film.genre", f"genre.{group}"))
    kg = pd.DataFrame(triples, columns=["head_id", "relation_id", "tail_id"])
    write_atomic_file(kg, folder / "synth.kg", {"head_id": "token", "relation_id": "token", "tail_id": "token"})
    return folder


@pytest.fixture
def synthetic_recbole(tmp_path: Path) -> Path:
    """A synthetic RecBole dataset folder."""
    folder = tmp_path / "synth"
    folder.mkdir()
    return write_synthetic_recbole(folder)


@pytest.fixture(autouse=True)
def _project_tmpdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch_geometric writes generated files under TMPDIR; keep them inside the test's folder."""
    if not os.environ.get("TMPDIR", "").startswith(str(Path.cwd())):
        monkeypatch.setenv("TMPDIR", str(tmp_path))
