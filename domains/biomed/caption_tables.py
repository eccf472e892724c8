"""The user's caption tables: a reports CSV for DICOM folders, a captions CSV/JSONL for image folders.

Both are read whole, as UTF-8 (a UTF-8 byte-order mark is dropped), and every problem is a
:class:`CaptionTableError` (a :class:`~shared.user_errors.UserError`) whose one-line message names the file (and line): a missing file,
a folder given for the file, UTF-16 or Latin-1 text, binary data, a line longer than the CSV field
limit, missing columns, empty or duplicate ids, JSON lines that do not parse.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from shared.user_errors import UserError


class CaptionTableError(UserError, ValueError):
    """A caption or report table cannot be used; the message names the file (and line)."""


REPORT_ID_COLUMNS = ("id", "key", "filename", "filepath", "path")
REPORT_TEXT_COLUMNS = ("text", "report", "caption", "title")
CAPTION_IMAGE_COLUMNS = ("filepath", "image", "file_name")
CAPTION_TEXT_COLUMNS = ("title", "caption", "text")


def _read_table_text(path: str | Path) -> str:
    """The content of a text table as a string, with errors a user can act on.

    Raises:
        CaptionTableError: The file is missing, is a folder, holds UTF-16 or binary data, or is not UTF-8.
    """
    path = Path(path)
    if path.is_dir():
        raise CaptionTableError(f"{path}: is a folder; expected a table file")
    if not path.is_file():
        raise CaptionTableError(f"{path}: no such file")
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise CaptionTableError(f"{path}: UTF-16 text; save the table as UTF-8")
    if b"\x00" in data:
        raise CaptionTableError(f"{path}: contains NUL bytes (binary or UTF-16 data); expected a UTF-8 text table")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise CaptionTableError(
            f"{path}: not UTF-8 text (invalid byte at offset {error.start}; Latin-1 or Windows-1252?); "
            "save the table as UTF-8"
        ) from None


def _csv_rows(path: Path, text: str) -> tuple[list[str], Iterator[tuple[int, dict[str, Any]]]]:
    """The header and ``(line number, row)`` pairs of a CSV text; parse errors name the file and line."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        columns = list(reader.fieldnames or [])
    except csv.Error as error:
        raise CaptionTableError(f"{path}:1: not a readable CSV header ({error})") from None

    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        try:
            for row in reader:
                yield reader.line_num, row
        except csv.Error as error:
            raise CaptionTableError(f"{path}:{reader.line_num}: not readable as CSV ({error})") from None

    return columns, rows()


def _first_present(candidates: Sequence[str], available: Sequence[str] | dict[str, Any]) -> str | None:
    return next((name for name in candidates if name in available), None)


def read_reports_csv(path: str | Path) -> dict[str, str]:
    """Read a reports/captions CSV mapping an id to text.

    The id column is the first of ``id, key, filename, filepath, path``; the text column the first of
    ``text, report, caption, title``. An id matches a DICOM file by relative path (with or without the
    suffix) or file stem.

    Raises:
        CaptionTableError: An unreadable file (see :func:`_read_table_text`), missing columns, empty or duplicate
            ids, naming the file and line.
    """
    path = Path(path)
    text = _read_table_text(path)
    if not text.strip():
        raise CaptionTableError(f"{path}: empty file; expected a CSV with an id and a text column")
    columns, rows = _csv_rows(path, text)
    id_column = _first_present(REPORT_ID_COLUMNS, columns)
    text_column = _first_present(REPORT_TEXT_COLUMNS, columns)
    if id_column is None or text_column is None:
        raise CaptionTableError(f"{path}: need an id column (id/key/filename/filepath/path) and a text column "
                        f"(text/report/caption/title); found {columns}")  # fmt: skip
    reports: dict[str, str] = {}
    for line, row in rows:
        key = (row[id_column] or "").strip()
        if not key:
            raise CaptionTableError(f"{path}:{line}: empty id")
        if key in reports:
            raise CaptionTableError(f"{path}:{line}: duplicate id {key!r}")
        reports[key] = (row[text_column] or "").strip()
    return reports


def read_captions_table(path: str | Path) -> list[tuple[str, str]]:
    """Read ``(image path, caption)`` rows from a CSV (``filepath,title``) or JSONL file.

    CSV files need ``filepath`` (or ``image``/``file_name``) and ``title`` (or ``caption``/``text``)
    columns; JSONL lines need the same keys.

    Raises:
        CaptionTableError: Unknown suffix, an unreadable file (see :func:`_read_table_text`), missing columns or
            malformed lines, naming the file and line.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".json"):
        raise CaptionTableError(f"{path}: captions file must be .csv or .jsonl")
    text = _read_table_text(path)
    if not text.strip():
        raise CaptionTableError(f"{path}: empty file; expected image paths and captions")
    rows: list[tuple[str, str]] = []
    if suffix == ".csv":
        columns, csv_rows = _csv_rows(path, text)
        image_key = _first_present(CAPTION_IMAGE_COLUMNS, columns)
        text_key = _first_present(CAPTION_TEXT_COLUMNS, columns)
        if image_key is None or text_key is None:
            raise CaptionTableError(
                f"{path}: need columns filepath,title (or image/file_name, caption/text); found {columns}"
            )
        return [((row[image_key] or "").strip(), (row[text_key] or "").strip()) for _, row in csv_rows]
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise CaptionTableError(f"{path}:{line_number}: not valid JSON ({error.msg})") from None
        image_key = _first_present(CAPTION_IMAGE_COLUMNS, record) if isinstance(record, dict) else None
        text_key = _first_present(CAPTION_TEXT_COLUMNS, record) if isinstance(record, dict) else None
        if image_key is None or text_key is None:
            raise CaptionTableError(f"{path}:{line_number}: need keys filepath and title (or image/caption)")
        rows.append((str(record[image_key]).strip(), str(record[text_key]).strip()))
    return rows
