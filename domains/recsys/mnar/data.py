"""Readers for MNAR implicit-feedback data: Yahoo! R3, Coat, RecBole atomic files and generic click logs.

Every reader returns an :class:`MnarDataset`: a biased training log (``user, item, click`` plus ``propensity``,
``rating`` and ``position`` where the source has them) and, where the source has one, a missing-at-random test
set (``user, item, label``). Users and items are re-indexed to ``0..n-1``; the original ids are kept.
Ratings are binarised at a threshold (default: rating ≥ 4 is a click / relevant).

Bad input raises :class:`MnarDataError` (RecBole files: the shared reader's ``DataFormatError``) naming
the file, the line and the problem; both are user errors (the command exits 2 with that one line).
"""

from __future__ import annotations

import codecs
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from domains.recsys.mnar.feedback import ImplicitFeedback, item_popularity_propensity
from domains.recsys.recbole_io import read_atomic_file
from shared.user_errors import UserError

DEFAULT_RATING_THRESHOLD = 4
"""Ratings at or above this value count as clicks / relevant (Saito et al.)."""


class MnarDataError(UserError, ValueError):
    """A data file is missing, malformed or inconsistent; the message names the file and line."""


@dataclass
class MnarDataset:
    """A biased training log and an optional missing-at-random (randomized) test set.

    Attributes:
        name: dataset name (used in run folders and the store).
        n_users: number of users; user indices are ``0..n_users-1``.
        n_items: number of items.
        train: biased log with columns ``user, item, click`` and, when known, ``propensity`` (logged exposure
            propensity, NaN where unknown), ``rating`` and ``position``.
        test: MAR test set with columns ``user, item, label`` (and ``rating`` when known), or None.
        user_ids: original user id of each user index.
        item_ids: original item id of each item index.
        sources: files the data came from.
    """

    name: str
    n_users: int
    n_items: int
    train: pd.DataFrame
    test: pd.DataFrame | None
    user_ids: np.ndarray
    item_ids: np.ndarray
    sources: list[str] = field(default_factory=list)

    def clicks(self) -> pd.DataFrame:
        """Training rows with ``click == 1`` (one row per user–item pair)."""
        clicked = self.train[self.train["click"] == 1]
        return clicked.drop_duplicates(["user", "item"])

    def item_click_counts(self) -> np.ndarray:
        """Training clicks per item (the popularity used for propensities and the rare-item split)."""
        return np.bincount(self.clicks()["item"].to_numpy(), minlength=self.n_items)

    def has_logged_propensity(self) -> bool:
        """True when every training click carries a logged propensity."""
        return "propensity" in self.train and bool(self.clicks()["propensity"].notna().all())


def _fail(path: Path | str, problem: str, line: int | None = None) -> MnarDataError:
    where = f"{path}:{line}" if line is not None else f"{path}"
    return MnarDataError(f"{where}: {problem}")


def _require_file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if path.is_dir():
        raise MnarDataError(f"{path}: is a folder, expected the {what}")
    if not path.is_file():
        raise MnarDataError(f"{path}: {what} not found")
    return path


def _preview(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters, so that a message about one huge line stays readable."""
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def _first_undecodable_byte(path: Path, chunk_bytes: int = 1 << 20) -> int | None:
    """Offset of the first byte that is not valid UTF-8 (None when the whole file decodes)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with path.open("rb") as stream:
        while chunk := stream.read(chunk_bytes):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as error:
                return offset + error.start
            offset += len(chunk)
    return None


def _not_utf8(path: Path) -> MnarDataError:
    offset = _first_undecodable_byte(path)
    where = f" (undecodable byte at offset {offset})" if offset is not None else ""
    return _fail(path, f"not UTF-8 text{where}; convert the file to UTF-8")


def _malformed(path: Path, error: Exception) -> MnarDataError:
    """The parser's complaint, unless the real problem is that the file is not UTF-8 text (binary, latin-1)."""
    if _first_undecodable_byte(path) is not None:
        return _not_utf8(path)
    return _fail(path, f"malformed table ({_preview(str(error), 200)})")


def _read_whitespace_table(path: Path, n_columns: int | None) -> pd.DataFrame:
    """Whitespace-separated numeric table without header; errors name the file and line."""
    try:
        frame = pd.read_csv(path, sep=r"\s+", header=None, dtype=str, comment=None, keep_default_na=False)
    except pd.errors.EmptyDataError as err:
        raise _fail(path, "file is empty") from err
    except pd.errors.ParserError as err:
        raise _malformed(path, err) from err
    except UnicodeDecodeError as err:
        raise _not_utf8(path) from err
    if n_columns is not None and frame.shape[1] != n_columns:
        raise _fail(path, f"expected {n_columns} whitespace-separated columns, found {frame.shape[1]}", 1)
    missing = (frame.isna() | (frame == "")).any(axis=1).to_numpy()
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise _fail(path, f"expected {frame.shape[1]} columns, found fewer", row + 1)
    numeric = frame.apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna().to_numpy()
    if bad.any():
        row, column = (int(v[0]) for v in np.nonzero(bad))
        raise _fail(path, f"column {column + 1} is not a number: {_preview(repr(frame.iat[row, column]))}", row + 1)
    return numeric


def _integer_column(frame: pd.DataFrame, column: int | str, path: Path, label: str, line_offset: int) -> np.ndarray:
    values = frame[column].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values) | (values != np.round(values))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise _fail(path, f"{label} must be an integer, got {frame[column].iloc[row]!r}", row + line_offset)
    return values.astype(np.int64)


def _check_range(values: np.ndarray, low: float, high: float, path: Path, label: str, line_offset: int) -> None:
    bad = (values < low) | (values > high)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise _fail(path, f"{label} {values[row].item():g} outside [{low:g}, {high:g}]", row + line_offset)


def _read_user_item_rating_file(path: Path) -> pd.DataFrame:
    table = _read_whitespace_table(path, 3)
    users = _integer_column(table, 0, path, "user id", 1)
    items = _integer_column(table, 1, path, "item id", 1)
    ratings = _integer_column(table, 2, path, "rating", 1)
    _check_range(users, 1, np.inf, path, "user id (1-based)", 1)
    _check_range(items, 1, np.inf, path, "item id (1-based)", 1)
    _check_range(ratings, 1, 5, path, "rating", 1)
    return pd.DataFrame({"user": users - 1, "item": items - 1, "rating": ratings})


def read_yahoo_r3(
    train_path: str | Path, test_path: str | Path, rating_threshold: int = DEFAULT_RATING_THRESHOLD
) -> MnarDataset:
    """Read Yahoo! R3 (Webscope): ``train.txt`` (user-selected, MNAR) and ``test.txt`` (random songs, MAR).

    Both files hold whitespace-separated ``user item rating`` lines with 1-based ids and ratings 1–5
    (15,400 users × 1,000 songs in the release). The data is not redistributable; point this at your copy.

    Args:
        train_path: path of ``train.txt``.
        test_path: path of ``test.txt``.
        rating_threshold: ratings ≥ this are clicks (train) / relevant (test).

    Returns:
        The dataset; user/item index = id − 1.
    """
    train_path = _require_file(train_path, "Yahoo! R3 train file")
    test_path = _require_file(test_path, "Yahoo! R3 test file")
    train = _read_user_item_rating_file(train_path)
    test = _read_user_item_rating_file(test_path)
    n_users = int(max(train["user"].max(), test["user"].max())) + 1
    n_items = int(max(train["item"].max(), test["item"].max())) + 1
    train["click"] = (train["rating"] >= rating_threshold).astype(np.int8)
    train["propensity"] = np.nan
    test["label"] = (test["rating"] >= rating_threshold).astype(np.int8)
    return MnarDataset(
        name="yahoo_r3",
        n_users=n_users,
        n_items=n_items,
        train=train,
        test=test,
        user_ids=np.arange(1, n_users + 1),
        item_ids=np.arange(1, n_items + 1),
        sources=[str(train_path), str(test_path)],
    )


def read_coat(directory: str | Path, rating_threshold: int = DEFAULT_RATING_THRESHOLD) -> MnarDataset:
    """Read Coat (Schnabel et al., 2016): dense ``train.ascii``/``test.ascii`` and ``propensities.ascii``.

    Each file is a whitespace-separated ``users × items`` matrix (290 × 300 in the release); ratings are 1–5
    and 0 means "not rated". ``train.ascii`` holds the user-selected (MNAR) ratings, ``test.ascii`` ratings of
    randomly chosen items (MAR). ``propensities.ascii``, when present, gives the observation propensity of
    every pair and becomes the logged ``propensity`` of the training rows.

    Args:
        directory: folder with the three files.
        rating_threshold: ratings ≥ this are clicks / relevant.

    Returns:
        The dataset; user/item index = row/column of the matrices.
    """
    directory = Path(directory)
    if directory.is_file():
        raise MnarDataError(f"{directory}: is a file, expected the Coat folder (train.ascii, test.ascii)")
    if not directory.is_dir():
        raise MnarDataError(f"{directory}: Coat folder not found")
    matrices = {}
    for name in ("train", "test"):
        path = _require_file(directory / f"{name}.ascii", f"Coat {name} matrix")
        matrix = _read_whitespace_table(path, None).to_numpy(dtype=np.float64)
        bad = ~np.isin(matrix, np.arange(6))
        if bad.any():
            row, column = (int(v[0]) for v in np.nonzero(bad))
            raise _fail(
                path, f"column {column + 1}: rating {matrix[row, column].item():g} is not an integer 0-5", row + 1
            )
        matrices[name] = matrix.astype(np.int64)
    if matrices["train"].shape != matrices["test"].shape:
        raise MnarDataError(
            f"{directory}: train.ascii is {matrices['train'].shape} but test.ascii is {matrices['test'].shape}"
        )
    n_users, n_items = matrices["train"].shape
    propensity_path = directory / "propensities.ascii"
    propensities = None
    sources = [str(directory / "train.ascii"), str(directory / "test.ascii")]
    if propensity_path.is_file():
        propensities = _read_whitespace_table(propensity_path, None).to_numpy(dtype=np.float64)
        if propensities.shape != (n_users, n_items):
            raise _fail(propensity_path, f"shape {propensities.shape} differs from train.ascii {(n_users, n_items)}")
        bad = (propensities <= 0) | (propensities > 1)
        if bad.any():
            row, column = (int(v[0]) for v in np.nonzero(bad))
            raise _fail(
                propensity_path,
                f"column {column + 1}: propensity {propensities[row, column].item():g} not in (0, 1]",
                row + 1,
            )
        sources.append(str(propensity_path))
    frames = {}
    for name, matrix in matrices.items():
        users, items = np.nonzero(matrix)
        frames[name] = pd.DataFrame({"user": users, "item": items, "rating": matrix[users, items]})
    train, test = frames["train"], frames["test"]
    train["click"] = (train["rating"] >= rating_threshold).astype(np.int8)
    train["propensity"] = np.nan if propensities is None else propensities[train["user"], train["item"]]
    test["label"] = (test["rating"] >= rating_threshold).astype(np.int8)
    return MnarDataset(
        name="coat",
        n_users=n_users,
        n_items=n_items,
        train=train,
        test=test,
        user_ids=np.arange(n_users),
        item_ids=np.arange(n_items),
        sources=sources,
    )


def _read_tabular_log(path: Path) -> tuple[pd.DataFrame, int]:
    """Read a CSV/TSV/Parquet log as strings; return it and the line number of its first data row."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path).astype(str).replace({"nan": "", "None": "", "<NA>": ""}), 1
        separator = "\t" if suffix in (".tsv", ".tab") else ","
        return pd.read_csv(path, sep=separator, dtype=str, keep_default_na=False), 2
    except pd.errors.EmptyDataError as err:
        raise _fail(path, "file is empty") from err
    except pd.errors.ParserError as err:
        raise _malformed(path, err) from err
    except UnicodeDecodeError as err:
        raise _not_utf8(path) from err
    except (OSError, ValueError) as err:  # e.g. a file that is not Parquet
        raise _fail(path, f"cannot read ({_preview(str(err), 200)})") from err


def _parse_numbers(column: pd.Series, path: Path, label: str, first_line: int, allow_empty: bool) -> np.ndarray:
    text = column.str.strip()
    values = pd.to_numeric(text.replace({"": np.nan}), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.isnan(values) & ((text != "").to_numpy() | (not allow_empty))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise _fail(path, f"{label} is not a number: {_preview(repr(column.iloc[row]))}", row + first_line)
    return values


USER_ID_SEPARATOR = "|"
"""Joins the columns of a composed user id (``--user_columns``)."""


def _read_click_log_file(
    path: Path, require_propensity: bool = False, user_columns: list[str] | None = None
) -> pd.DataFrame:
    frame, first_line = _read_tabular_log(path)
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    if user_columns:
        wanted = [column.strip().lower() for column in user_columns]
        absent = [column for column in wanted if column not in frame.columns]
        if absent:
            found = _preview(", ".join(frame.columns))
            raise _fail(path, f"--user_columns: no column(s) {', '.join(absent)}; found {found}", 1)
        parts = [frame[column].str.strip() for column in wanted]
        for column, part in zip(wanted, parts):
            empty = (part == "").to_numpy()
            if empty.any():
                raise _fail(path, f"empty {column} (part of the user id)", int(np.flatnonzero(empty)[0]) + first_line)
        composed = parts[0]
        for part in parts[1:]:
            composed = composed + USER_ID_SEPARATOR + part
        frame = frame.assign(user=composed)
    missing = [c for c in ("user", "item", "click") if c not in frame.columns]
    if missing:
        found = _preview(", ".join(frame.columns))
        hint = "; compose a user id from other columns with --user_columns" if "user" in missing else ""
        raise _fail(path, f"missing column(s) {', '.join(missing)}; found {found}{hint}", 1)
    if frame.empty:
        raise _fail(path, "log has no rows")
    for column in ("user", "item"):
        empty = (frame[column].str.strip() == "").to_numpy()
        if empty.any():
            raise _fail(path, f"empty {column} id", int(np.flatnonzero(empty)[0]) + first_line)
    clicks_text = frame["click"].str.strip().str.lower().replace({"true": "1", "false": "0"})
    clicks = _parse_numbers(clicks_text, path, "click", first_line, allow_empty=False)
    bad = ~np.isin(clicks, (0.0, 1.0))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise _fail(path, f"click must be 0 or 1, got {frame['click'].iloc[row]!r}", row + first_line)
    out = pd.DataFrame({"user_id": frame["user"].str.strip(), "item_id": frame["item"].str.strip()})
    out["click"] = clicks.astype(np.int8)
    if "propensity" in frame:
        theta = _parse_numbers(frame["propensity"], path, "propensity", first_line, allow_empty=True)
        bad = ~np.isnan(theta) & ((theta <= 0) | (theta > 1))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise _fail(path, f"propensity {theta[row].item():g} not in (0, 1]", row + first_line)
        out["propensity"] = theta
    elif require_propensity:
        raise _fail(path, "no propensity column, but logged propensities were requested", 1)
    else:
        out["propensity"] = np.nan
    if "position" in frame:
        position = _parse_numbers(frame["position"], path, "position", first_line, allow_empty=True)
        bad = ~np.isnan(position) & ((position < 1) | (position != np.round(position)))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise _fail(
                path, f"position must be an integer >= 1, got {frame['position'].iloc[row]!r}", row + first_line
            )
        out["position"] = position
    return out


def read_click_log(
    train_path: str | Path, test_path: str | Path | None = None, user_columns: list[str] | None = None
) -> MnarDataset:
    """Read a generic click log: a biased training log and, optionally, a randomized (MAR) test log.

    Files are CSV (``.csv``), tab-separated (``.tsv``) or Parquet (``.parquet``) with a header and columns
    ``user``, ``item``, ``click`` (0/1 or true/false) and optionally ``propensity`` (logged exposure
    probability of the shown item, in (0, 1]) and ``position`` (1-based slot). Ids may be any strings; they are
    indexed in order of first appearance over train then test. In the test log ``click`` is the label.
    Logged-bandit logs often have no user column: ``user_columns`` composes the user id from several columns
    (their stripped values joined by ``|``, e.g. ``session|device``) in both logs.

    Args:
        train_path: the biased log (e.g. clicks collected under the production recommender).
        test_path: optional log collected under uniformly random exposure.
        user_columns: columns whose values together identify a user (None: the ``user`` column).

    Returns:
        The dataset.
    """
    train_path = _require_file(train_path, "training click log")
    train = _read_click_log_file(train_path, user_columns=user_columns)
    test = None
    sources = [str(train_path)]
    if test_path is not None:
        test_path = _require_file(test_path, "test click log")
        test = _read_click_log_file(test_path, user_columns=user_columns)
        sources.append(str(test_path))
    both = pd.concat([train, test]) if test is not None else train
    user_codes, user_ids = pd.factorize(both["user_id"])
    item_codes, item_ids = pd.factorize(both["item_id"])
    train = train.assign(user=user_codes[: len(train)], item=item_codes[: len(train)])
    train = train.drop(columns=["user_id", "item_id"])
    if test is not None:
        test = pd.DataFrame(
            {"user": user_codes[len(train) :], "item": item_codes[len(train) :], "label": test["click"].to_numpy()}
        )
    return MnarDataset(
        name="click_log",
        n_users=len(user_ids),
        n_items=len(item_ids),
        train=train,
        test=test,
        user_ids=np.asarray(user_ids),
        item_ids=np.asarray(item_ids),
        sources=sources,
    )


def read_recbole_ratings(
    inter_path: str | Path, rating_threshold: int = DEFAULT_RATING_THRESHOLD, name: str | None = None
) -> MnarDataset:
    """Read a RecBole ``.inter`` file (``user_id:token``, ``item_id:token``, optional ``rating:float``) as a log.

    All of its interactions are user-selected, so the dataset has no MAR test set. Without a rating column
    every row is a click.

    Args:
        inter_path: path of the ``.inter`` file.
        rating_threshold: ratings ≥ this are clicks.
        name: dataset name (default: the file stem).

    Returns:
        The dataset (``train`` keeps the ``rating`` column; ``test`` is None).
    """
    path = _require_file(inter_path, "RecBole .inter file")
    try:
        frame = read_atomic_file(path, required_columns=("user_id", "item_id"))
    except UnicodeDecodeError as err:
        raise _not_utf8(path) from err
    user_codes, user_ids = pd.factorize(frame["user_id"])
    item_codes, item_ids = pd.factorize(frame["item_id"])
    train = pd.DataFrame({"user": user_codes, "item": item_codes})
    if "rating" in frame:
        ratings = frame["rating"].to_numpy(dtype=np.float64)
        if np.isnan(ratings).any():
            raise _fail(path, "empty rating", int(np.flatnonzero(np.isnan(ratings))[0]) + 2)
        train["rating"] = ratings
        train["click"] = (train["rating"] >= rating_threshold).astype(np.int8)
    else:
        train["click"] = np.int8(1)
    train["propensity"] = np.nan
    return MnarDataset(
        name=name or path.stem,
        n_users=len(user_ids),
        n_items=len(item_ids),
        train=train,
        test=None,
        user_ids=np.asarray(user_ids),
        item_ids=np.asarray(item_ids),
        sources=[str(path)],
    )


def movielens_100k_inter_path() -> Path:
    """Path of ``ml-100k.inter`` inside the installed ``recbole`` package (read at run time, never copied)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise MnarDataError("recbole is not installed: `pip install --no-deps recbole==1.2.1` provides ML-100K")
    path = Path(next(iter(spec.submodule_search_locations))) / "dataset_example" / "ml-100k" / "ml-100k.inter"
    return _require_file(path, "MovieLens-100K interactions (recbole's dataset_example)")


def read_movielens_100k_ratings() -> MnarDataset:
    """MovieLens-100K ratings (943 users × 1,682 movies) from the recbole package, as a RecBole log."""
    return read_recbole_ratings(movielens_100k_inter_path(), name="ml-100k")


def split_validation_clicks(
    dataset: MnarDataset, fraction: float = 0.1, seed: int = 12345
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out a random share of the training clicks as a biased validation log.

    Returns:
        ``(train_clicks, validation_clicks)``, disjoint subsets of :meth:`MnarDataset.clicks`.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"validation fraction must lie in [0, 1), got {fraction}")
    clicks = dataset.clicks().reset_index(drop=True)
    rng = np.random.default_rng(seed)
    held_out = rng.random(len(clicks)) < fraction
    return clicks[~held_out], clicks[held_out]


def training_feedback(
    dataset: MnarDataset,
    clicks: pd.DataFrame,
    propensity: Literal["popularity", "logged", "none"] = "popularity",
    eta: float = 0.5,
) -> ImplicitFeedback:
    """Turn training clicks into :class:`ImplicitFeedback` with the chosen propensities.

    Args:
        dataset: the dataset (sizes).
        clicks: the clicks to train on (e.g. from :func:`split_validation_clicks`).
        propensity: ``"popularity"`` (``(n_i / max n)^η`` from these clicks), ``"logged"`` (the log's
            ``propensity`` column; every click must have one) or ``"none"`` (θ = 1).
        eta: popularity power η.

    Returns:
        The feedback.
    """
    users = clicks["user"].to_numpy(dtype=np.int64)
    items = clicks["item"].to_numpy(dtype=np.int64)
    if propensity == "popularity":
        theta = item_popularity_propensity(items, dataset.n_items, eta=eta)[items]
    elif propensity == "logged":
        if "propensity" not in clicks or clicks["propensity"].isna().any():
            source = dataset.sources[0] if dataset.sources else dataset.name
            raise MnarDataError(f"{source}: propensity 'logged' requested but some clicks have no logged propensity")
        theta = clicks["propensity"].to_numpy(dtype=np.float64)
    elif propensity == "none":
        theta = None
    else:
        raise ValueError(f"unknown propensity source {propensity!r}")
    return ImplicitFeedback.from_clicks(dataset.n_users, dataset.n_items, users, items, theta)
