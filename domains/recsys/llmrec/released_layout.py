"""LLMRec's released dataset layout: JSON splits, ``.npy`` item features and pickled augmentation dictionaries.

Required: ``train.json``/``val.json``/``test.json`` mapping user id to item ids. Optional: ``text_feat.npy``,
``image_feat.npy``, ``item_attribute.csv`` and the augmentation pickles (``augmented_sample_dict``,
``augmented_attribute_dict``, ``augmented_user_profiling_dict``, ``candidate_indices``), opened only
through :func:`~domains.recsys.llmrec.restricted_pickle.load_restricted_pickle`.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from domains.recsys.llmrec.augmentation_files import Augmentation
from domains.recsys.llmrec.interactions import InteractionData
from domains.recsys.llmrec.restricted_pickle import load_restricted_pickle
from domains.recsys.recbole_io import DataFormatError

LAYOUT_MARKER = "train.json"
"""The file whose presence makes a folder an LLMRec layout (rather than RecBole atomic files)."""


@dataclass
class LLMRecLayout:
    """A dataset in LLMRec's released layout.

    Attributes:
        train: ``{user: [items]}`` training interactions (int indices as in the files).
        val: Validation interactions.
        test: Test interactions.
        n_users: 1 + the largest user id seen.
        n_items: Rows of ``text_feat.npy`` (LLMRec's convention), else 1 + the largest item id.
        text_features: (n_items, F) or ``None``.
        image_features: (n_items, F) or ``None``.
        item_attributes: Optional raw ``item_attribute.csv`` rows ``[id, ...]``.
        augmented_edges: ``[(user, pos, neg)]`` from ``augmented_sample_dict``.
        augmented_item_attributes: ``{item: [values]}`` from ``augmented_attribute_dict``.
        user_profiles: ``{user: text}`` from ``augmented_user_profiling_dict``.
        candidates: Optional (n_users, C) candidate item indices.
    """

    train: dict[int, list[int]]
    val: dict[int, list[int]]
    test: dict[int, list[int]]
    n_users: int
    n_items: int
    text_features: np.ndarray | None = None
    image_features: np.ndarray | None = None
    item_attributes: list[list[str]] | None = None
    augmented_edges: list[tuple[int, int, int]] = field(default_factory=list)
    augmented_item_attributes: dict[int, list[str]] = field(default_factory=dict)
    user_profiles: dict[int, str] = field(default_factory=dict)
    candidates: np.ndarray | None = None


def _read_utf8(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataFormatError(f"{path}: not UTF-8 text (byte {error.start}); convert the file to UTF-8") from None


def _read_user_items_json(path: Path) -> dict[int, list[int]]:
    try:
        raw = json.loads(_read_utf8(path))
    except json.JSONDecodeError as error:
        raise DataFormatError(f"{path}:{error.lineno}: invalid JSON ({error.msg})") from error
    if not isinstance(raw, dict):
        raise DataFormatError(f"{path}: expected a JSON object mapping user id to a list of item ids")
    result: dict[int, list[int]] = {}
    for key, items in raw.items():
        if not str(key).lstrip("-").isdigit() or int(key) < 0:
            raise DataFormatError(f"{path}: user key {key!r} is not a non-negative integer")
        if not isinstance(items, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in items
        ):
            raise DataFormatError(f"{path}: user {key}: expected a list of non-negative integer item ids")
        if len(set(items)) != len(items):
            raise DataFormatError(f"{path}: user {key}: duplicate item ids in the list")
        result[int(key)] = list(items)
    return result


def _read_feature_array(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise DataFormatError(f"{path}: not a plain numeric .npy array ({error})") from error
    if array.ndim != 2:
        raise DataFormatError(f"{path}: expected a 2-D (items × features) array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number):
        raise DataFormatError(f"{path}: expected numbers, got dtype {array.dtype}")
    if not np.isfinite(array).all():
        row = int(np.flatnonzero(~np.isfinite(array).all(axis=1))[0])
        raise DataFormatError(f"{path}: row {row} holds a non-finite value (NaN or inf)")
    return array.astype(np.float32)


def read_llmrec_dataset(folder: str | Path) -> LLMRecLayout:
    """Reads and validates a dataset in LLMRec's released layout.

    Required: ``train.json``, ``val.json``, ``test.json``. Optional: ``text_feat.npy``, ``image_feat.npy``
    (loaded with ``allow_pickle=False``), ``item_attribute.csv`` (headerless), and the augmentation pickles
    ``augmented_sample_dict``, ``augmented_attribute_dict``, ``augmented_user_profiling_dict``,
    ``candidate_indices`` (through :func:`load_restricted_pickle`; ``candidate_indices.npy`` is preferred).
    ``train_mat`` is ignored (it repeats ``train.json`` as a scipy pickle).

    Raises:
        DataFormatError: Malformed JSON, an item id outside the feature rows, feature files with mismatched
            rows or non-finite values, augmentation entries referring to unknown users/items, or disallowed
            pickle contents.
        FileNotFoundError: A required file is missing.
    """
    folder = Path(folder)
    for required in ("train.json", "val.json", "test.json"):
        if not (folder / required).is_file():
            raise FileNotFoundError(2, "required file of the LLMRec layout is missing", str(folder / required))
    splits = {part: _read_user_items_json(folder / f"{part}.json") for part in ("train", "val", "test")}
    features = {}
    for stem in ("text_feat", "image_feat"):
        path = folder / f"{stem}.npy"
        if path.exists():
            features[stem] = _read_feature_array(path)
    rows = {stem: array.shape[0] for stem, array in features.items()}
    if len(set(rows.values())) > 1:
        raise DataFormatError(f"{folder}: feature files disagree on the number of items: {rows}")
    max_item = max((max(items) for split in splits.values() for items in split.values() if items), default=-1)
    n_items = next(iter(rows.values())) if rows else max_item + 1
    for part, split in splits.items():
        for user, items in split.items():
            if items and max(items) >= n_items:
                raise DataFormatError(
                    f"{folder / (part + '.json')}: user {user} has item {max(items)} but there are only {n_items} "
                    "items (rows of text_feat.npy)"
                )
    n_users = 1 + max((user for split in splits.values() for user in split), default=-1)
    layout = LLMRecLayout(
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        n_users=n_users,
        n_items=n_items,
        text_features=features.get("text_feat"),
        image_features=features.get("image_feat"),
    )
    attribute_csv = folder / "item_attribute.csv"
    if attribute_csv.exists():
        text = io.StringIO(_read_utf8(attribute_csv), newline="")
        layout.item_attributes = [row for row in csv.reader(text) if row]
    _read_llmrec_augmentation(folder, layout)
    return layout


def _check_index(value: Any, limit: int, what: str, path: Path) -> int:
    if isinstance(value, np.integer):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < limit:
        raise DataFormatError(f"{path}: {what} {value!r} is not an index in [0, {limit})")
    return value


def _read_llmrec_augmentation(folder: Path, layout: LLMRecLayout) -> None:
    path = folder / "augmented_sample_dict"
    if path.exists():
        samples = load_restricted_pickle(path)
        if not isinstance(samples, dict):
            raise DataFormatError(f"{path}: expected a dict {{user: {{0: pos_item, 1: neg_item}}}}")
        for user, pair in samples.items():
            if not isinstance(pair, dict) or 0 not in pair or 1 not in pair:
                raise DataFormatError(f"{path}: user {user!r}: expected {{0: pos_item, 1: neg_item}}, got {pair!r}")
            layout.augmented_edges.append(
                (
                    _check_index(user, layout.n_users, "user", path),
                    _check_index(pair[0], layout.n_items, "item", path),
                    _check_index(pair[1], layout.n_items, "item", path),
                )
            )
    path = folder / "augmented_attribute_dict"
    if path.exists():
        attributes = load_restricted_pickle(path)
        if not isinstance(attributes, dict):
            raise DataFormatError(f"{path}: expected a dict {{item: {{0: director, 1: country, 2: language}}}}")
        for item, values in attributes.items():
            index = _check_index(item, layout.n_items, "item", path)
            if isinstance(values, dict):
                values = [values[key] for key in sorted(values)]
            layout.augmented_item_attributes[index] = [str(value) for value in values]
    path = folder / "augmented_user_profiling_dict"
    if path.exists():
        profiles = load_restricted_pickle(path)
        if not isinstance(profiles, dict):
            raise DataFormatError(f"{path}: expected a dict {{user: profile text}}")
        for user, text in profiles.items():
            layout.user_profiles[_check_index(user, layout.n_users, "user", path)] = str(text)
    npy = folder / "candidate_indices.npy"
    pickled = folder / "candidate_indices"
    if npy.exists():
        layout.candidates = np.load(npy, allow_pickle=False).astype(np.int64)
    elif pickled.exists():
        layout.candidates = np.asarray(load_restricted_pickle(pickled), dtype=np.int64)
    if (
        layout.candidates is not None
        and layout.candidates.size
        and (layout.candidates.min() < 0 or layout.candidates.max() >= layout.n_items)
    ):
        raise DataFormatError(f"{folder}: candidate_indices hold item ids outside [0, {layout.n_items})")


def interactions_from_llmrec(layout: LLMRecLayout, name: str = "llmrec") -> InteractionData:
    """Converts an :class:`LLMRecLayout` to :class:`InteractionData` (ids are the file's integer ids)."""

    def pairs(split: dict[int, list[int]]) -> np.ndarray:
        rows = [(user, item) for user, items in split.items() for item in items]
        return np.asarray(rows, dtype=np.int64).reshape(-1, 2)

    item_ids = [str(index) for index in range(layout.n_items)]
    titles = list(item_ids)
    texts = list(item_ids)
    if layout.item_attributes:
        for row in layout.item_attributes:
            if row and row[0].isdigit() and int(row[0]) < layout.n_items:
                index = int(row[0])
                titles[index] = row[-1]
                texts[index] = ", ".join(row[1:])
    return InteractionData(
        user_ids=[str(index) for index in range(layout.n_users)],
        item_ids=item_ids,
        train=pairs(layout.train),
        val=pairs(layout.val),
        test=pairs(layout.test),
        item_titles=titles,
        item_texts=texts,
        item_attributes=[{} for _ in item_ids],
        item_text_features=layout.text_features,
        item_image_features=layout.image_features,
        name=name,
    )


def llmrec_layout_augmentation(folder: str | Path) -> Augmentation:
    """The augmentation shipped in an LLMRec-layout folder (sampled pairs, item attributes, user profiles).

    Item attributes ``{0: director, 1: country, 2: language}`` keep those names; ids are the layout's
    integer indices, as in :func:`interactions_from_llmrec`.
    """
    layout = read_llmrec_dataset(folder)
    names = ("director", "country", "language")
    return Augmentation(
        edges=np.asarray(layout.augmented_edges, dtype=np.int64).reshape(-1, 3),
        item_attributes={
            item: {
                names[position] if position < 3 else f"attribute_{position}": [value]
                for position, value in enumerate(values)
            }
            for item, values in layout.augmented_item_attributes.items()
        },
        user_profiles=dict(layout.user_profiles),
        folder=str(folder),
    )
