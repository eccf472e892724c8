"""How the explorer reads the store: short-lived, locked-down, read-only connections; SELECT-only SQL."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from shared.store import EmbeddingStore, open_readonly

DEFAULT_STORE = Path("runs/embeddings.duckdb")
MAX_SQL_ROWS = 10_000
"""Rows a user query returns at most (DuckDB stops producing rows past it)."""
SQL_TIMEOUT_S = 20.0
"""Seconds a user query may run before it is interrupted."""
SQL_MEMORY_LIMIT = "1GB"
"""DuckDB memory of a user query's connection."""
SQL_THREADS = 2


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


class QueryBounded(RuntimeError):
    """A user query stopped by one of the SQL page's bounds (time or memory); the message says which."""


@dataclass(frozen=True)
class SqlResult:
    """A user query's rows (at most the cap), whether more rows existed, and how long it ran."""

    frame: pd.DataFrame
    truncated: bool
    seconds: float


def run_user_sql(
    sql: str,
    timeout_s: float = SQL_TIMEOUT_S,
    max_rows: int = MAX_SQL_ROWS,
    memory_limit: str = SQL_MEMORY_LIMIT,
) -> SqlResult:
    """Runs a user's SELECT on a read-only connection within the page's bounds.

    Time: a timer calls DuckDB's ``interrupt()`` after ``timeout_s``, which stops the query wherever it is.
    Memory: the query is wrapped as ``SELECT * FROM (<query>) LIMIT max_rows + 1``, so DuckDB stops
    producing rows past the cap instead of building the whole result first, and the connection has its
    own ``memory_limit`` (a query needing more stops with DuckDB's out-of-memory error).

    Raises:
        RejectedQuery: Not a single read-only SELECT.
        QueryBounded: The query ran past ``timeout_s`` or needed more than ``memory_limit``.
        duckdb.Error: Any other query error (unknown table, bad syntax …), with DuckDB's message.
    """
    text = check_read_only_sql(sql)
    # A newline before the closing parenthesis keeps a trailing ``-- comment`` from swallowing it.
    bounded = f"SELECT * FROM (\n{text}\n) AS user_query LIMIT {int(max_rows) + 1}"  # noqa: S608 — the user's own SELECT
    connection = open_readonly(store_path(), memory_limit=memory_limit, threads=SQL_THREADS)
    timer = threading.Timer(timeout_s, connection.interrupt)
    started = time.perf_counter()
    timer.start()
    try:
        frame = connection.execute(bounded).df()
    except duckdb.InterruptException as error:
        raise QueryBounded(
            f"stopped after {timeout_s:g} s (the page's time limit); add a WHERE or LIMIT, or run it with the "
            "DuckDB CLI on the store file"
        ) from error
    except duckdb.OutOfMemoryException as error:
        raise QueryBounded(
            f"stopped: it needed more than {memory_limit} of memory (the page's limit); aggregate or filter first"
        ) from error
    finally:
        timer.cancel()
        connection.close()
    truncated = len(frame) > max_rows
    return SqlResult(frame.head(max_rows), truncated, time.perf_counter() - started)


def schema_overview() -> pd.DataFrame:
    """Every table and view of the store with its columns (name and type) and, for tables, its row count."""
    connection = open_readonly(store_path(), memory_limit=SQL_MEMORY_LIMIT)
    try:
        objects = connection.execute(
            "SELECT table_name, table_type FROM information_schema.tables WHERE table_catalog = 'store' "
            "ORDER BY table_type, table_name"
        ).fetchall()
        rows = []
        for name, kind in objects:
            columns = connection.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_catalog = 'store' "
                "AND table_name = ? ORDER BY ordinal_position",
                [name],
            ).fetchall()
            # The name comes from the store's own catalogue; quoted as an identifier all the same.
            count = (
                connection.execute(f'SELECT count(*) FROM "{name.replace(chr(34), chr(34) * 2)}"').fetchall()[0][0]  # noqa: S608
                if kind == "BASE TABLE"
                else None
            )
            rows.append(
                {
                    "name": name,
                    "kind": "table" if kind == "BASE TABLE" else "view",
                    "rows": count,
                    "columns": ", ".join(f"{column} {data_type}" for column, data_type in columns),
                }
            )
        frame = pd.DataFrame(rows, columns=["name", "kind", "rows", "columns"])
        return frame.astype({"rows": "Int64"})
    finally:
        connection.close()


_SHARED_STORES: dict[Path, EmbeddingStore] = {}
_SHARED_STORES_LOCK = threading.Lock()


def shared_store() -> EmbeddingStore:
    """One :class:`shared.store.EmbeddingStore` per store file for the whole server process.

    It is safe to share between sessions' threads: every call leases its own cursor on one file version,
    and the store follows a swapped-in file on the next call. Sharing it keeps each model's in-memory
    index loaded between queries (opening a store per call would reload a model's vectors every time).
    """
    path = store_path().resolve()
    with _SHARED_STORES_LOCK:
        if path not in _SHARED_STORES:
            _SHARED_STORES[path] = EmbeddingStore(path, memory_limit="2GB")
        return _SHARED_STORES[path]


def nearest(**arguments: Any) -> pd.DataFrame:
    """:meth:`shared.store.EmbeddingStore.nearest` on the process's shared store object (:func:`shared_store`)."""
    return shared_store().nearest(**arguments)
