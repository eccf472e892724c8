"""Augmentation results in memory and on disk.

An augmentation pass (:class:`AugmentationRun`, indices and per-task counts) is written as RecBole-style
atomic files with raw ids (``edges.tsv``, ``item_attributes.tsv``, ``user_profiles.tsv``) plus
``summary.json``; training reads such a folder back as an index-based :class:`Augmentation`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from domains.recsys.llmrec.interactions import InteractionData
from domains.recsys.llmrec.prompts import ATTRIBUTE_FIELDS, PROFILE_KEYS, profile_text
from domains.recsys.recbole_io import DataFormatError, read_atomic_file, write_atomic_file
from shared.atomic_files import write_json_atomically

EDGES_FILE, ATTRIBUTES_FILE, PROFILES_FILE = "edges.tsv", "item_attributes.tsv", "user_profiles.tsv"
SUMMARY_FILE = "summary.json"
AUGMENTATION_FILES = (EDGES_FILE, ATTRIBUTES_FILE, PROFILES_FILE, SUMMARY_FILE)


@dataclass
class TaskSummary:
    """Counts for one task: requested, answered (valid), cached (served from cache), malformed, failed
    (no answer after retries), unsupported (backend does not answer this task)."""

    requested: int = 0
    answered: int = 0
    cached: int = 0
    malformed: int = 0
    failed: int = 0
    unsupported: int = 0


@dataclass
class AugmentationRun:
    """Parsed results of one augmentation pass (indices, not raw ids)."""

    edges: list[tuple[int, int, int]] = field(default_factory=list)
    item_attributes: dict[int, dict[str, list[str]]] = field(default_factory=dict)
    user_profiles: dict[int, dict[str, str]] = field(default_factory=dict)
    summary: dict[str, TaskSummary] = field(default_factory=dict)


@dataclass
class Augmentation:
    """Augmentation loaded for training: index triplets and per-item attributes/user profiles.

    Attributes:
        edges: (A, 3) ``(user, pos, neg)`` index triplets.
        item_attributes: Per item, attribute name → values (merged into the data's attributes).
        user_profiles: User index → profile text.
        folder: Where it was read from.
        edge_is_noise: Optional (A,) bool: which edges a controlled experiment injected as noise (in memory
            only; never written to an augmentation folder).
    """

    edges: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.int64))
    item_attributes: dict[int, dict[str, list[str]]] = field(default_factory=dict)
    user_profiles: dict[int, str] = field(default_factory=dict)
    folder: str | None = None
    edge_is_noise: np.ndarray | None = None


def write_augmentation(
    run: AugmentationRun, data: InteractionData, folder: str | Path, details: dict[str, Any]
) -> Path:
    """Writes ``edges.tsv``, ``item_attributes.tsv``, ``user_profiles.tsv`` (atomic files) and ``summary.json``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    edges = pd.DataFrame(
        [(data.user_ids[u], data.item_ids[p], data.item_ids[n]) for u, p, n in run.edges],
        columns=["user_id", "pos_item_id", "neg_item_id"],
    )
    write_atomic_file(edges, folder / EDGES_FILE, {"user_id": "token", "pos_item_id": "token", "neg_item_id": "token"})
    # Columns: the LLM prompt's director/country/language when any answer has them (or nothing was answered),
    # then any other attribute names (e.g. the offline backend's genre/decade/title_word).
    occurring = {name for values in run.item_attributes.values() for name in values}
    extra_names = sorted(occurring - set(ATTRIBUTE_FIELDS))
    positional = list(ATTRIBUTE_FIELDS) if occurring & set(ATTRIBUTE_FIELDS) or not occurring else []
    names = [*positional, *extra_names]
    attributes = pd.DataFrame(
        [
            (data.item_ids[item], *("|".join(values.get(name, [])) for name in names))
            for item, values in sorted(run.item_attributes.items())
        ],
        columns=["item_id", *names],
    )
    write_atomic_file(attributes, folder / ATTRIBUTES_FILE, {"item_id": "token", **dict.fromkeys(names, "token")})
    profiles = pd.DataFrame(
        [
            (data.user_ids[user], json.dumps(profile, ensure_ascii=False))
            for user, profile in sorted(run.user_profiles.items())
        ],
        columns=["user_id", "profile"],
    )
    write_atomic_file(profiles, folder / PROFILES_FILE, {"user_id": "token", "profile": "token"})
    summary = {task: vars(counts) for task, counts in run.summary.items()}
    write_json_atomically(folder / SUMMARY_FILE, {"tasks": summary, **details})
    return folder


def read_augmentation(folder: str | Path, data: InteractionData) -> Augmentation:
    """Reads an augmentation folder back as an index-based :class:`Augmentation`.

    Raises:
        FileNotFoundError: ``folder`` is not a folder holding at least one of the augmentation files.
        DataFormatError: A file refers to a user or item id that is not in ``data`` (file and line named).
    """
    folder = Path(folder)
    if not folder.is_dir() or not any(
        (folder / name).is_file() for name in (EDGES_FILE, ATTRIBUTES_FILE, PROFILES_FILE)
    ):
        raise FileNotFoundError(
            2, f"not an augmentation folder (no {EDGES_FILE}, {ATTRIBUTES_FILE} or {PROFILES_FILE})", str(folder)
        )
    users, items = data.user_index(), data.item_index()
    augmentation = Augmentation(folder=str(folder))

    def lookup(table: dict[str, int], value: str, what: str, path: Path, row: int) -> int:
        if value not in table:
            raise DataFormatError(f"{path}:{row + 2}: unknown {what} {value!r}")
        return table[value]

    path = folder / EDGES_FILE
    if path.exists():
        frame = read_atomic_file(path, ("user_id", "pos_item_id", "neg_item_id"))
        augmentation.edges = np.asarray(
            [
                (
                    lookup(users, u, "user_id", path, row),
                    lookup(items, p, "item_id", path, row),
                    lookup(items, n, "item_id", path, row),
                )
                for row, (u, p, n) in enumerate(zip(frame["user_id"], frame["pos_item_id"], frame["neg_item_id"]))
            ],
            dtype=np.int64,
        ).reshape(-1, 3)
    path = folder / ATTRIBUTES_FILE
    if path.exists():
        frame = read_atomic_file(path, ("item_id",))
        names = [column for column in frame.columns if column != "item_id"]
        for row in range(len(frame)):
            item = lookup(items, frame["item_id"].iloc[row], "item_id", path, row)
            values = {name: frame[name].iloc[row].split("|") for name in names if frame[name].iloc[row].strip()}
            augmentation.item_attributes[item] = values
    path = folder / PROFILES_FILE
    if path.exists():
        frame = read_atomic_file(path, ("user_id", "profile"))
        for row in range(len(frame)):
            user = lookup(users, frame["user_id"].iloc[row], "user_id", path, row)
            try:
                profile = json.loads(frame["profile"].iloc[row])
            except ValueError as error:
                raise DataFormatError(f"{path}:{row + 2}: profile is not JSON ({error})") from error
            if not isinstance(profile, dict) or any(key not in profile for key in PROFILE_KEYS):
                raise DataFormatError(f"{path}:{row + 2}: profile is not a JSON object with the profile keys")
            augmentation.user_profiles[user] = profile_text(profile)
    return augmentation
