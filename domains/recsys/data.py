"""Recommender data: RecBole atomic files, LLMRec's released layout, splits, graphs and item text features.

Two exchange formats are accepted:

* **RecBole atomic files** (``<name>.inter``, ``.item``, ``.user``, ``.kg``, ``.link``): tab-separated text whose
  first line declares every column as ``name:type`` with type one of ``token``, ``token_seq``, ``float``,
  ``float_seq`` (sequences are space-separated).
* **LLMRec's released layout** (``train.json``/``val.json``/``test.json`` mapping user id to item ids,
  ``text_feat.npy``/``image_feat.npy`` item features, and pickled augmentation dictionaries). Pickles are only
  opened through :func:`load_restricted_pickle`, which rebuilds plain containers, numbers, strings and numpy
  arrays and refuses everything else.

Internally users and items are contiguous indices ``0..n_users-1`` / ``0..n_items-1``; the raw ids are kept in
:class:`InteractionData` for output.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import pickle  # noqa: S403  (only used through the restricted unpickler below)
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from domains.recsys.recbole_io import (  # noqa: F401 - re-exported until the data split
    ATOMIC_TYPES,
    KG_ATTRIBUTE_RELATIONS,
    RECBOLE_SUFFIXES,
    DataFormatError,
    RecboleTables,
    check_known_ids,
    check_unique_rows,
    read_atomic_file,
    read_atomic_header,
    read_recbole_dataset,
    write_atomic_file,
)
from shared.atomic_files import write_bytes_atomically  # noqa: F401 - re-exported until the data split

logger = logging.getLogger(__name__)


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
        user_profile_features: Optional (n_users, P) float32 profile features (LLM user profiles, embedded).
        name: Dataset name.
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
    user_profile_features: np.ndarray | None = None
    name: str = "dataset"

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
    user_ids = sorted(frame["user_id"].astype(str).unique(), key=_natural_key)
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


def _natural_key(raw: str) -> tuple[int, int | str]:
    return (0, int(raw)) if raw.isdigit() else (1, raw)


def item_table_from_recbole(tables: RecboleTables) -> pd.DataFrame:
    """Item universe with display ``title`` and descriptive ``text`` from a RecBole ``.item`` table.

    The text joins the title, year and genres the way LLMRec's prompts do (``"Toy Story (1995); genres:
    Animation, Children's, Comedy"``). Without an ``.item`` file the items are those seen in ``.inter``.
    """
    if tables.item is None:
        ids = sorted(tables.inter["item_id"].astype(str).unique(), key=_natural_key)
        return pd.DataFrame({"item_id": ids, "title": ids, "text": ids})
    item = tables.item
    title_column = next((c for c in ("movie_title", "title", "name") if c in item.columns), None)
    titles = item[title_column].astype(str) if title_column else item["item_id"].astype(str)
    year_column = next((c for c in ("release_year", "year") if c in item.columns), None)
    genre_column = next((c for c in ("class", "genre", "genres", "categories") if c in item.columns), None)
    texts = []
    for row in range(len(item)):
        text = titles.iloc[row]
        if year_column and str(item[year_column].iloc[row]).strip():
            text += f" ({str(item[year_column].iloc[row]).strip()})"
        if genre_column and str(item[genre_column].iloc[row]).strip():
            text += "; genres: " + ", ".join(str(item[genre_column].iloc[row]).split())
        texts.append(text)
    return pd.DataFrame({"item_id": item["item_id"].astype(str), "title": titles.tolist(), "text": texts})


def kg_item_attributes(
    tables: RecboleTables, item_ids: Sequence[str], relations: dict[str, str] | None = None
) -> list[dict[str, list[str]]]:
    """Item attributes from knowledge-graph triples (e.g. director, country, language entities).

    Follows ``.link`` (item → entity) and keeps triples whose head is the item's entity and whose relation is
    one of ``relations`` (attribute name → KG relation). Values are the tail entity ids (Freebase MIDs in
    ML-100K; the KG carries no entity names).

    Returns:
        One dict per item in ``item_ids`` order; items without a KG entity get ``{}``.
    """
    relations = relations or KG_ATTRIBUTE_RELATIONS
    attributes: list[dict[str, list[str]]] = [{} for _ in item_ids]
    if tables.kg is None or tables.link is None:
        return attributes
    entity_to_item = dict(zip(tables.link["entity_id"].astype(str), tables.link["item_id"].astype(str)))
    item_position = {raw: index for index, raw in enumerate(item_ids)}
    relation_to_name = {relation: name for name, relation in relations.items()}
    kg = tables.kg[tables.kg["relation_id"].isin(relation_to_name)]
    for head, relation, tail in zip(kg["head_id"], kg["relation_id"], kg["tail_id"]):
        raw_item = entity_to_item.get(head)
        if raw_item is None or raw_item not in item_position:
            continue
        values = attributes[item_position[raw_item]].setdefault(relation_to_name[relation], [])
        if tail not in values:
            values.append(tail)
    return attributes


def kg_item_entities(tables: RecboleTables, item_ids: Sequence[str]) -> list[set[str]]:
    """Every KG tail entity linked to each item (all relations whose head is the item's entity)."""
    entities: list[set[str]] = [set() for _ in item_ids]
    if tables.kg is None or tables.link is None:
        return entities
    entity_to_item = dict(zip(tables.link["entity_id"].astype(str), tables.link["item_id"].astype(str)))
    item_position = {raw: index for index, raw in enumerate(item_ids)}
    for head, relation, tail in zip(tables.kg["head_id"], tables.kg["relation_id"], tables.kg["tail_id"]):
        raw_item = entity_to_item.get(head)
        if raw_item is not None and raw_item in item_position:
            entities[item_position[raw_item]].add(f"{relation}={tail}")
    return entities


def read_recbole_interactions(
    folder: str | Path,
    name: str | None = None,
    strategy: str = "random",
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 2022,
    min_rating: float | None = None,
) -> tuple[InteractionData, RecboleTables]:
    """Reads a RecBole dataset folder into split :class:`InteractionData` (KG attributes attached).

    Args:
        folder: Folder with ``<name>.inter`` (and optional ``.item/.user/.kg/.link``).
        name: Dataset name (file stem); inferred when the folder has one ``.inter``.
        strategy: ``random`` or ``temporal`` per-user split.
        ratios: Train/validation/test fractions.
        seed: Split seed.
        min_rating: Positive threshold on ``rating``; ``None`` treats every interaction as positive.

    Returns:
        The split data and the raw tables (for KG-based augmentation).
    """
    tables = read_recbole_dataset(folder, name)
    items = item_table_from_recbole(tables)
    data = interactions_from_frame(
        tables.inter, items, strategy=strategy, ratios=ratios, seed=seed, min_rating=min_rating, name=tables.name
    )
    data.item_attributes = kg_item_attributes(tables, data.item_ids)
    return data, tables


# --------------------------------------------------------------------------------------------------------------
# LLMRec released layout
# --------------------------------------------------------------------------------------------------------------

_ALLOWED_PICKLE_GLOBALS = {
    ("builtins", "dict"),
    ("builtins", "list"),
    ("builtins", "tuple"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "int"),
    ("builtins", "float"),
    ("builtins", "complex"),
    ("builtins", "str"),
    ("builtins", "bytes"),
    ("builtins", "bytearray"),
    ("builtins", "bool"),
    ("collections", "OrderedDict"),
    ("collections", "defaultdict"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, handle, source: Path):
        super().__init__(handle)
        self._source = source

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise DataFormatError(
            f"{self._source}: refusing to unpickle {module}.{name}; only plain containers, numbers, strings and "
            "numpy arrays are accepted (convert the file to JSON/.npy, e.g. torch tensors with .numpy())"
        )

    def persistent_load(self, pid):
        raise DataFormatError(f"{self._source}: refusing to unpickle a persistent object (torch.save format?)")


def load_restricted_pickle(path: str | Path):
    """Loads a pickle that may only contain plain containers, numbers, strings and numpy arrays.

    Pickles can run arbitrary code when loaded; this loader rebuilds only the allow-listed types and raises
    for anything else (classes, functions, torch tensors, scipy matrices).

    Args:
        path: The pickle file.

    Returns:
        The rebuilt object.

    Raises:
        DataFormatError: The file holds a disallowed type or is not a valid pickle.
    """
    path = Path(path)
    with path.open("rb") as handle:
        try:
            return _RestrictedUnpickler(handle, path).load()
        except DataFormatError:
            raise
        except Exception as error:  # pickle raises many unrelated types for corrupt input
            raise DataFormatError(f"{path}: not a valid pickle ({type(error).__name__}: {error})") from error


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


def _read_user_items_json(path: Path) -> dict[int, list[int]]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
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


def read_llmrec_dataset(folder: str | Path) -> LLMRecLayout:
    """Reads and validates a dataset in LLMRec's released layout.

    Required: ``train.json``, ``val.json``, ``test.json``. Optional: ``text_feat.npy``, ``image_feat.npy``
    (loaded with ``allow_pickle=False``), ``item_attribute.csv`` (headerless), and the augmentation pickles
    ``augmented_sample_dict``, ``augmented_attribute_dict``, ``augmented_user_profiling_dict``,
    ``candidate_indices`` (through :func:`load_restricted_pickle`; ``candidate_indices.npy`` is preferred).
    ``train_mat`` is ignored (it repeats ``train.json`` as a scipy pickle).

    Raises:
        DataFormatError: Malformed JSON, an item id outside the feature rows, feature files with mismatched
            rows, augmentation entries referring to unknown users/items, or disallowed pickle contents.
    """
    folder = Path(folder)
    for required in ("train.json", "val.json", "test.json"):
        if not (folder / required).exists():
            raise FileNotFoundError(f"{folder / required}: required file of the LLMRec layout is missing")
    splits = {part: _read_user_items_json(folder / f"{part}.json") for part in ("train", "val", "test")}
    features = {}
    for stem in ("text_feat", "image_feat"):
        path = folder / f"{stem}.npy"
        if path.exists():
            try:
                array = np.load(path, allow_pickle=False)
            except ValueError as error:
                raise DataFormatError(f"{path}: not a plain numeric .npy array ({error})") from error
            if array.ndim != 2:
                raise DataFormatError(f"{path}: expected a 2-D (items × features) array, got shape {array.shape}")
            features[stem] = array.astype(np.float32)
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
        with attribute_csv.open(encoding="utf-8", newline="") as handle:
            layout.item_attributes = [row for row in csv.reader(handle) if row]
    _read_llmrec_augmentation(folder, layout)
    return layout


def _check_index(value, limit: int, what: str, path: Path) -> int:
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
        name=name,
    )


# --------------------------------------------------------------------------------------------------------------
# Graphs and lookups
# --------------------------------------------------------------------------------------------------------------


def bipartite_graph(pairs: np.ndarray, n_users: int, n_items: int):
    """The user–item interaction graph as an undirected ``torch_geometric.data.Data``.

    Nodes ``0..n_users-1`` are users and ``n_users..n_users+n_items-1`` items; each ``(user, item)`` pair
    becomes two directed edges, as ``torch_geometric.nn.LightGCN`` expects.
    """
    from torch_geometric.data import Data

    pairs = torch.as_tensor(np.asarray(pairs, dtype=np.int64)).reshape(-1, 2)
    users, items = pairs[:, 0], pairs[:, 1] + n_users
    edge_index = torch.stack([torch.cat([users, items]), torch.cat([items, users])])
    return Data(edge_index=edge_index, num_nodes=n_users + n_items)


def items_by_user(pairs: np.ndarray, n_users: int, n_items: int):
    """The (n_users × n_items) boolean CSR matrix of ``(user, item)`` pairs."""
    from scipy.sparse import csr_matrix

    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    values = np.ones(len(pairs), dtype=bool)
    matrix = csr_matrix((values, (pairs[:, 0], pairs[:, 1])), shape=(n_users, n_items), dtype=bool)
    matrix.sum_duplicates()
    return matrix


# --------------------------------------------------------------------------------------------------------------
# Item text features
# --------------------------------------------------------------------------------------------------------------


def encode_texts_minilm(texts: Sequence[str], batch_size: int = 64, max_length: int = 64) -> np.ndarray:
    """Embeds texts with the core's ``minilm_text`` tower (all-MiniLM-L6-v2, offline), L2-normalised.

    Args:
        texts: The texts.
        batch_size: Texts per forward pass.
        max_length: Tokens per text (the tower pads to this length, so short item texts use a short one).

    Returns:
        (len(texts), 384) float32.
    """
    from shared.towers import create_tower

    tower = create_tower("minilm_text", max_length=max_length).eval()
    outputs = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start : start + batch_size])
            outputs.append(tower(tower.preprocess(chunk)).float())
    if not outputs:
        return np.zeros((0, tower.output_dim), dtype=np.float32)
    return torch.nn.functional.normalize(torch.cat(outputs), dim=-1).numpy().astype(np.float32)


def cached_text_features(texts: Sequence[str], cache_dir: str | Path, encoder: str = "minilm") -> np.ndarray:
    """Text features for ``texts``, cached on disk under a hash of the texts and the encoder name.

    Args:
        texts: The texts (order matters).
        cache_dir: Cache folder (e.g. ``runs/recsys/cache``).
        encoder: ``minilm`` (all-MiniLM-L6-v2, 384-d).

    Returns:
        (len(texts), F) float32, L2-normalised rows.
    """
    if encoder != "minilm":
        raise ValueError(f"unknown text encoder {encoder!r}; available: 'minilm'")
    digest = hashlib.sha256(("\x1e".join(texts) + f"\x1f{encoder}:64").encode("utf-8")).hexdigest()[:24]
    path = Path(cache_dir) / f"text_features_{encoder}_{digest}.npy"
    if path.exists():
        return np.load(path, allow_pickle=False)
    logger.info("encoding %d item texts with %s (cached at %s)", len(texts), encoder, path)
    features = encode_texts_minilm(texts)
    buffer = io.BytesIO()
    np.save(buffer, features, allow_pickle=False)
    write_bytes_atomically(path, buffer.getvalue())
    return features
