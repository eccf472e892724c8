"""How the explorer reads the store: short-lived, locked-down, read-only connections; SELECT-only SQL."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from shared.store import EmbeddingStore, open_readonly

DEFAULT_STORE = Path("runs/embeddings.duckdb")
MAX_SQL_ROWS = 10_000


class RejectedQuery(ValueError):
    """A query the SQL page refuses to run (not a single read-only SELECT)."""


def store_path() -> Path:
    """The store the explorer reads: ``$EXPLORER_STORE`` or ``runs/embeddings.duckdb``."""
    return Path(os.environ.get("EXPLORER_STORE", DEFAULT_STORE))


def query(sql: str, parameters: list | None = None) -> pd.DataFrame:
    """Run one parameterized query on a fresh read-only connection and close it at once.

    A connection per query means an export that swaps in a new store file is never blocked for long, and
    the next query sees the new file.
    """
    connection = open_readonly(store_path(), memory_limit="2GB")
    try:
        return connection.execute(sql, parameters or []).df()
    finally:
        connection.close()


def check_read_only_sql(sql: str) -> str:
    """Return ``sql`` stripped if it is exactly one SELECT statement; raise :class:`RejectedQuery` otherwise.

    The connection is read-only and has external access disabled as well; this check gives users a clear
    message instead of a DuckDB error, and refuses PRAGMA/SET/ATTACH/COPY/EXPORT outright.
    """
    text = sql.strip().rstrip(";").strip()
    if not text:
        raise RejectedQuery("the query is empty")
    try:
        statements = duckdb.extract_statements(text)
    except duckdb.Error as error:
        raise RejectedQuery(f"the query does not parse: {error}") from error
    if len(statements) != 1:
        raise RejectedQuery(f"one statement at a time, please ({len(statements)} given)")
    if statements[0].type != duckdb.StatementType.SELECT:
        raise RejectedQuery(f"only SELECT queries are allowed here, not {statements[0].type.name}")
    return text


def run_user_sql(sql: str) -> pd.DataFrame:
    """Run a user's SELECT on a read-only connection, at most :data:`MAX_SQL_ROWS` rows."""
    text = check_read_only_sql(sql)
    connection = open_readonly(store_path(), memory_limit="2GB")
    try:
        return connection.execute(text).df().head(MAX_SQL_ROWS)
    finally:
        connection.close()


def nearest(**arguments: Any) -> pd.DataFrame:
    """:meth:`shared.store.EmbeddingStore.nearest` on a store object opened for this call and closed after it."""
    store = EmbeddingStore(store_path(), memory_limit="2GB")
    try:
        return store.nearest(**arguments)
    finally:
        store.close()
