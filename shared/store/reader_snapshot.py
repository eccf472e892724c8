"""One version of the store file as concurrent readers share it: a read-only connection, counted users.

A writer replaces the store file by renaming a new one over it. A reader call must see one consistent
file from start to end, and must never fail because another call (in another thread) noticed the swap.
So every call takes a *lease* on the current :class:`ReaderSnapshot`: its own DuckDB cursor (DuckDB
connections are not safe to share between threads; a cursor is a new connection to the same database
instance, so it sees the same file) and a count that keeps the snapshot open. A snapshot that a newer file
has replaced is *retired*: it stops taking new leases and closes its connection when the last lease ends.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb

from shared.store.readonly import open_readonly
from shared.store.schema import StoreError
from shared.store.vector_index import VectorIndexCache

#: ``(inode, modification time in ns, size in bytes)`` of the store file: a swap changes it.
FileIdentity = tuple[int, int, int]

_OPEN_ATTEMPTS = 5

#: DuckDB memory of the short-lived connection that loads an in-memory index (its buffers are freed on close).
LOADER_MEMORY_LIMIT = "256MB"


def file_identity(path: Path) -> FileIdentity:
    """The identity of the file now at ``path`` (raises ``FileNotFoundError`` when there is none)."""
    status = path.stat()
    return (status.st_ino, status.st_mtime_ns, status.st_size)


@dataclass
class ReaderSnapshot:
    """A read-only connection to one version of the store file, its vector indexes and its users.

    Attributes:
        path: The store file.
        identity: The identity of the file version the connection opened.
        connection: The read-only connection (never used directly by calls: they get cursors).
        index_cache: In-memory indexes built from this version's vectors only.
    """

    path: Path
    identity: FileIdentity
    connection: duckdb.DuckDBPyConnection
    index_cache: VectorIndexCache
    users: int = 0
    retired: bool = False

    @classmethod
    def open(cls, path: Path, memory_limit: str, threads: int | None) -> ReaderSnapshot:
        """Opens the file now at ``path``, knowing exactly which version it opened.

        The identity is taken before and after opening; if a writer swapped the file in between, the
        connection is closed and opened again, so ``identity`` always names the opened version.
        """
        for _ in range(_OPEN_ATTEMPTS):
            before = file_identity(path)
            connection = open_readonly(path, memory_limit=memory_limit, threads=threads)
            if file_identity(path) == before:
                return cls(path, before, connection, VectorIndexCache())
            connection.close()
        # A writer swapping faster than we can open: keep the last one (its identity may be stale, which
        # only means the next call reopens).
        connection = open_readonly(path, memory_limit=memory_limit, threads=threads)
        return cls(path, file_identity(path), connection, VectorIndexCache())

    def open_loader(self) -> duckdb.DuckDBPyConnection | None:
        """A separate small-memory connection to this same file version, for loading an index; None if swapped.

        Scanning a model's vectors through the snapshot's own connection would leave them in its buffer
        pool as well as in the index (twice the memory); a loader connection is closed after the load,
        which frees its buffers. It is only used when the file at ``path`` is still this version before
        and after opening, so the index always matches the snapshot.
        """
        try:
            if file_identity(self.path) != self.identity:
                return None
            connection = open_readonly(self.path, memory_limit=LOADER_MEMORY_LIMIT, threads=1)
            if file_identity(self.path) == self.identity:
                return connection
            connection.close()
        except (FileNotFoundError, StoreError):
            pass
        return None

    def _close_if_unused(self) -> None:
        if self.retired and self.users == 0:
            self.index_cache.clear()
            self.connection.close()


class SnapshotKeeper:
    """Hands out leases on the newest snapshot of one store file, safely across threads.

    Args:
        path: The store file.
        memory_limit: DuckDB memory limit of each snapshot's connection.
        threads: DuckDB worker threads (None: DuckDB's default).
    """

    def __init__(self, path: Path, memory_limit: str, threads: int | None) -> None:
        self.path = path
        self.memory_limit = memory_limit
        self.threads = threads
        self._current: ReaderSnapshot | None = None
        self._lock = threading.Lock()

    @property
    def current(self) -> ReaderSnapshot | None:
        """The snapshot new leases get (None before the first read or after :meth:`close`)."""
        return self._current

    @contextmanager
    def lease(self) -> Iterator[tuple[duckdb.DuckDBPyConnection, ReaderSnapshot]]:
        """A cursor on the newest version of the file and its snapshot, for the length of one call.

        Raises:
            FileNotFoundError: There is no file at ``path``.
        """
        with self._lock:
            identity = file_identity(self.path)
            snapshot = self._current
            if snapshot is None or snapshot.identity != identity:
                if snapshot is not None:
                    snapshot.retired = True
                    snapshot._close_if_unused()
                snapshot = ReaderSnapshot.open(self.path, self.memory_limit, self.threads)
                self._current = snapshot
            snapshot.users += 1
            try:
                cursor = snapshot.connection.cursor()
                cursor.execute("USE store")  # a cursor starts in the in-memory catalog, not the store's
            except BaseException:
                snapshot.users -= 1
                snapshot._close_if_unused()
                raise
        try:
            yield cursor, snapshot
        finally:
            cursor.close()
            with self._lock:
                snapshot.users -= 1
                snapshot._close_if_unused()

    def close(self) -> None:
        """Retires the current snapshot: it closes now if unused, else when its last lease ends."""
        with self._lock:
            if self._current is not None:
                self._current.retired = True
                self._current._close_if_unused()
                self._current = None
