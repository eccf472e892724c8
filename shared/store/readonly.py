"""Locked-down, read-only connections to a store file: what readers, analysts and the explorer open."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import duckdb

from shared.store.schema import DEFAULT_STORE_PATH, StoreError


def _reader_spill_directory() -> str:
    """A fresh, not yet existing folder name under ``$TMPDIR`` for one connection's spill files.

    DuckDB still lets a connection without external access read and write its temp directory, whose
    default is ``.tmp`` under the working directory; a private random name keeps that from exposing
    anything. DuckDB creates the folder only when a query spills and removes the folder it created when
    the connection closes, so a reader leaves nothing behind (a folder made here in advance would stay).
    """
    return os.path.join(tempfile.gettempdir(), f"duckdb-reader-spill-{os.getpid()}-{uuid.uuid4().hex}")


def open_readonly(
    path: str | Path = DEFAULT_STORE_PATH, memory_limit: str = "4GB", threads: int | None = None
) -> duckdb.DuckDBPyConnection:
    """Opens a locked-down, read-only connection to a store file for readers and analysts.

    The store is attached read-only to a private in-memory database (so a connection never shares a
    cached instance of an older file), then file access, extension auto-install/auto-load and every
    further configuration change are switched off. Keep connections short-lived: a reader holding one
    keeps seeing the file as it was when opened.

    Args:
        path: The store file.
        memory_limit: DuckDB memory limit, e.g. ``"4GB"``.
        threads: DuckDB worker threads (default: DuckDB's choice, the number of cores).

    Returns:
        A connection whose default catalog is the store; ``SELECT * FROM all_embeddings`` works as is.

    Raises:
        StoreError: If the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"{path}: no embedding store here (export embeddings first)")
    connection = duckdb.connect(":memory:")
    try:
        try:
            connection.execute("ATTACH ? AS store (READ_ONLY)", [str(path)])
        except duckdb.IOException as error:
            raise StoreError(f"{path}: not a DuckDB database file") from error
        connection.execute("USE store")
        connection.execute("SET memory_limit = ?", [memory_limit])
        if threads is not None:
            connection.execute("SET threads = ?", [int(threads)])
        connection.execute("SET temp_directory = ?", [_reader_spill_directory()])
        connection.execute("SET autoinstall_known_extensions = false")
        connection.execute("SET autoload_known_extensions = false")
        connection.execute("SET enable_external_access = false")
        connection.execute("SET lock_configuration = true")
    except BaseException:
        connection.close()
        raise
    return connection
