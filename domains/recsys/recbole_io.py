"""RecBole atomic files: reading, validating and writing ``<name>.inter``/``.item``/``.user``/``.kg``/``.link``.

Tab-separated text whose first line declares every column as ``name:type`` with type one of ``token``,
``token_seq``, ``float``, ``float_seq`` (sequences are space-separated). Shared by the LLMRec and MNAR
applications of the recsys domain.
"""

from __future__ import annotations

import csv
import errno
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from shared.atomic_files import write_text_atomically

ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")
RECBOLE_SUFFIXES = ("inter", "item", "user", "kg", "link")
KG_ATTRIBUTE_RELATIONS = {
    "director": "film.film.directed_by",
    "country": "film.film.country",
    "language": "film.film.language",
}


class DataFormatError(ValueError):
    """A data file is malformed; the message names the file (and line where one applies)."""


def _not_utf8(path: Path, error: UnicodeDecodeError) -> DataFormatError:
    return DataFormatError(
        f"{path}: not UTF-8 text (byte {error.start} is {error.object[error.start : error.start + 1]!r}); "
        "convert the file to UTF-8"
    )


# --------------------------------------------------------------------------------------------------------------
# RecBole atomic files
# --------------------------------------------------------------------------------------------------------------


def read_atomic_header(path: str | Path) -> dict[str, str]:
    """Reads the ``name:type`` header of a RecBole atomic file.

    Args:
        path: The atomic file.

    Returns:
        Column name → atomic type, in file order.

    Raises:
        DataFormatError: The header is missing, a field lacks ``:type``, the type is unknown, or a name repeats.
    """
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        try:
            first = handle.readline().rstrip("\n").rstrip("\r")
        except UnicodeDecodeError as error:
            raise _not_utf8(path, error) from None
    if not first:
        raise DataFormatError(f"{path}:1: empty file or missing 'name:type' header")
    columns: dict[str, str] = {}
    for position, field_spec in enumerate(first.split("\t"), start=1):
        name, sep, kind = field_spec.rpartition(":")
        if not sep or not name:
            raise DataFormatError(
                f"{path}:1: malformed header field {position} {field_spec!r}: expected 'name:type' "
                f"with type in {ATOMIC_TYPES}"
            )
        if kind not in ATOMIC_TYPES:
            raise DataFormatError(
                f"{path}:1: header field {field_spec!r} has unknown type {kind!r}; expected one of {ATOMIC_TYPES}"
            )
        if name in columns:
            raise DataFormatError(f"{path}:1: column {name!r} appears twice in the header")
        columns[name] = kind
    return columns


def read_atomic_file(path: str | Path, required_columns: Sequence[str] = ()) -> pd.DataFrame:
    """Reads a RecBole atomic file into a DataFrame with the ``:type`` suffixes stripped.

    ``token`` and sequence columns stay strings; ``float`` columns become float64 (an empty field is NaN; the
    texts ``nan`` and ``inf`` are refused). The column types are kept in ``frame.attrs["atomic_types"]``. Row
    ``i`` of the frame is line ``i + 2`` of the file.

    Args:
        path: The atomic file (tab-separated, UTF-8).
        required_columns: Column names that must be present.

    Returns:
        The table.

    Raises:
        DataFormatError: Not UTF-8 text, malformed header, wrong number of fields on a line, a non-numeric or
            non-finite ``float``, or a missing required column; the message names the file and line.
    """
    path = Path(path)
    types = read_atomic_header(path)
    missing = [name for name in required_columns if name not in types]
    if missing:
        raise DataFormatError(f"{path}:1: missing required column(s) {missing}; header has {list(types)}")
    names = list(types)
    with path.open(encoding="utf-8", newline="") as handle:
        try:
            handle.readline()
            text = handle.read()
        except UnicodeDecodeError as error:
            raise _not_utf8(path, error) from None
    rows = []
    for line_number, line in enumerate(text.splitlines(), start=2):
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != len(names):
            raise DataFormatError(
                f"{path}:{line_number}: expected {len(names)} tab-separated fields, got {len(fields)}"
            )
        rows.append(fields)
    frame = pd.DataFrame(rows, columns=names, dtype=object)
    frame.index = pd.RangeIndex(len(frame))
    for name, kind in types.items():
        if kind != "float":
            frame[name] = frame[name].astype(str)
            continue
        values = pd.to_numeric(frame[name], errors="coerce")
        given = (frame[name].astype(str).str.strip() != "").to_numpy()
        bad = np.flatnonzero(~np.isfinite(values.to_numpy(dtype="float64")) & given)
        if bad.size:
            row = int(bad[0])
            text = frame[name].iloc[row]
            problem = "non-numeric" if pd.isna(values.iloc[row]) and _not_a_number(text) else "non-finite"
            raise DataFormatError(f"{path}:{row + 2}: column {name!r} (float) has {problem} value {text!r}")
        frame[name] = values.astype("float64")
    frame.attrs["atomic_types"] = dict(types)
    frame.attrs["source"] = str(path)
    return frame


def _not_a_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return True
    return False


def write_atomic_file(frame: pd.DataFrame, path: str | Path, types: dict[str, str]) -> Path:
    """Writes a table as a RecBole atomic file, atomically (temporary file, then rename).

    Args:
        frame: The table; its columns must equal the keys of ``types``.
        path: Destination file.
        types: Column name → atomic type (``token``, ``token_seq``, ``float``, ``float_seq``).

    Returns:
        The written path.

    Raises:
        ValueError: Unknown type, column mismatch, or a value containing a tab or newline.
    """
    path = Path(path)
    if list(frame.columns) != list(types):
        raise ValueError(f"{path}: frame columns {list(frame.columns)} differ from declared types {list(types)}")
    for name, kind in types.items():
        if kind not in ATOMIC_TYPES:
            raise ValueError(f"{path}: column {name!r} has unknown atomic type {kind!r}")
    text_frame = frame.astype(str)
    for name in text_frame.columns:
        bad = text_frame[name].str.contains(r"[\t\n\r]", regex=True)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(
                f"{path}: row {row} column {name!r} contains a tab or newline: {text_frame[name].iloc[row]!r}"
            )
    buffer = io.StringIO()
    buffer.write("\t".join(f"{name}:{kind}" for name, kind in types.items()) + "\n")
    text_frame.to_csv(buffer, sep="\t", header=False, index=False, quoting=csv.QUOTE_NONE, lineterminator="\n")
    write_text_atomically(path, buffer.getvalue())
    return path


def check_unique_rows(frame: pd.DataFrame, key_columns: Sequence[str], path: str | Path) -> None:
    """Raises :class:`DataFormatError` naming both lines when two rows share the key columns."""
    duplicated = frame.duplicated(subset=list(key_columns), keep=False)
    if duplicated.any():
        rows = np.flatnonzero(duplicated.to_numpy())[:2]
        key = tuple(frame.iloc[rows[0]][list(key_columns)])
        raise DataFormatError(
            f"{path}:{rows[1] + 2}: duplicate row for {dict(zip(key_columns, key))} (first seen on line {rows[0] + 2})"
        )


def check_known_ids(values: pd.Series, known: Iterable[str], column: str, path: str | Path) -> None:
    """Raises :class:`DataFormatError` naming the line of the first value not in ``known``."""
    unknown = ~values.isin(set(known))
    if unknown.any():
        row = int(np.flatnonzero(unknown.to_numpy())[0])
        raise DataFormatError(f"{path}:{row + 2}: unknown {column} {values.iloc[row]!r} (not in the id table)")


@dataclass
class RecboleTables:
    """The atomic files of one RecBole dataset; absent files are ``None``.

    Attributes:
        name: Dataset name (file stem).
        inter: Interactions, at least ``user_id``, ``item_id`` (optionally ``rating``, ``timestamp``).
        item: Item table keyed by ``item_id``.
        user: User table keyed by ``user_id``.
        kg: Knowledge-graph triples ``head_id, relation_id, tail_id``.
        link: Item → KG entity ``item_id, entity_id``.
    """

    name: str
    inter: pd.DataFrame
    item: pd.DataFrame | None = None
    user: pd.DataFrame | None = None
    kg: pd.DataFrame | None = None
    link: pd.DataFrame | None = None


def read_recbole_dataset(folder: str | Path, name: str | None = None) -> RecboleTables:
    """Reads and validates a RecBole dataset folder (``<name>.inter`` and optional ``.item/.user/.kg/.link``).

    Validation: required columns, no duplicate ``(user_id, item_id)`` interaction rows when there is no
    timestamp (with a timestamp, repeated interactions are collapsed to the latest when building splits), no
    duplicate ids in ``.item``/``.user``, every interaction's item in ``.item`` and user in ``.user`` when those
    files exist, every ``.link`` item in ``.item``.

    Args:
        folder: Folder holding the atomic files.
        name: Dataset name; defaults to the stem of the single ``*.inter`` file in the folder.

    Returns:
        The tables.

    Raises:
        DataFormatError: Any validation failure, naming the file and line.
        FileNotFoundError: No ``.inter`` file.
    """
    folder = Path(folder)
    if name is None:
        inters = sorted(folder.glob("*.inter"))
        if len(inters) != 1:
            found = [p.name for p in inters]
            raise FileNotFoundError(errno.ENOENT, f"expected exactly one *.inter file, found {found}", str(folder))
        name = inters[0].stem
    paths = {suffix: folder / f"{name}.{suffix}" for suffix in RECBOLE_SUFFIXES}
    if not paths["inter"].exists():
        raise FileNotFoundError(errno.ENOENT, "interaction file not found", str(paths["inter"]))
    inter = read_atomic_file(paths["inter"], required_columns=("user_id", "item_id"))
    if "timestamp" not in inter.columns:
        check_unique_rows(inter, ("user_id", "item_id"), paths["inter"])
    tables = RecboleTables(name=name, inter=inter)
    if paths["item"].exists():
        tables.item = read_atomic_file(paths["item"], required_columns=("item_id",))
        check_unique_rows(tables.item, ("item_id",), paths["item"])
        check_known_ids(inter["item_id"], tables.item["item_id"], "item_id", paths["inter"])
    if paths["user"].exists():
        tables.user = read_atomic_file(paths["user"], required_columns=("user_id",))
        check_unique_rows(tables.user, ("user_id",), paths["user"])
        check_known_ids(inter["user_id"], tables.user["user_id"], "user_id", paths["inter"])
    if paths["kg"].exists():
        tables.kg = read_atomic_file(paths["kg"], required_columns=("head_id", "relation_id", "tail_id"))
    if paths["link"].exists():
        tables.link = read_atomic_file(paths["link"], required_columns=("item_id", "entity_id"))
        check_unique_rows(tables.link, ("item_id",), paths["link"])
        if tables.item is not None:
            check_known_ids(tables.link["item_id"], tables.item["item_id"], "item_id", paths["link"])
    return tables
