"""The DuckDB embedding store: every vector with its full identity, queryable by analysts and the explorer.

Layout of one store file (default ``runs/embeddings.duckdb``; the full schema is in docs/store.md):

- ``runs``: one row per training/export run (model identity, checkpoint hash, resolved config, git sha).
- ``embeddings_<D>``: one table per vector dimension D, ``vec FLOAT[D] NOT NULL`` (unit L2 norm),
  keyed by ``(sample_id, modality, model_name, model_version)``.
- ``samples_<domain>``: per-domain sample attributes (``sample_id`` primary key + any columns).
- Views: ``all_embeddings`` (every dimension, ``vec`` as ``FLOAT[]`` and a ``dim`` column) and
  ``embedding_inventory`` (row counts per domain, modality, model, version and dimension).

Concurrency. DuckDB lets no other process open a file, not even read-only, while a writer holds it. So
writers never open the live file for writing: :meth:`EmbeddingStore.writing` copies the store to
``<name>.tmp.duckdb``, writes there (one transaction per batch), checkpoints, fsyncs and atomically
``os.replace``-s it into place. Readers use short-lived read-only connections (:func:`open_readonly`)
and see either the old or the new file, never a half-written one; a writer killed mid-write leaves the
live store untouched. Writers are serialized by a lock file ``<name>.duckdb.lock``.

SQL safety. Identifiers (domain, column and JSON key names) are checked against strict patterns and are
the only text formatted into SQL; every value is bound as a parameter.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
from filelock import FileLock

from shared.atomic_files import fsync_directory, fsync_file

DEFAULT_STORE_PATH = Path("runs/embeddings.duckdb")

#: Domains become table names (``samples_<domain>``), so they are restricted to this pattern.
DOMAIN_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
#: Sample-table column names and JSON meta keys (dot-separated for nested keys).
COLUMN_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
META_KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62}){0,7}$")
#: DuckDB type names accepted for sample-table columns (from DESCRIBE of the caller's DataFrame).
_COLUMN_TYPE_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]*( WITH TIME ZONE)?(\(\d+(, ?\d+)?\))?(\[\d*\])*$")
_EMBEDDING_TABLE_PATTERN = re.compile(r"^embeddings_([1-9][0-9]{0,5})$")
_MAX_DIM = 65_535
#: Vectors with an L2 norm below this are treated as zero (their direction is noise).
_MIN_NORM = 1e-12

_RUNS_DDL = """
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY,
    domain VARCHAR NOT NULL,
    model_name VARCHAR NOT NULL,
    model_version VARCHAR NOT NULL,
    checkpoint_sha256 VARCHAR,
    config_json JSON,
    git_sha VARCHAR,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT current_timestamp
)
"""


_INVENTORY_VIEW_DDL = """
CREATE OR REPLACE VIEW embedding_inventory AS
SELECT domain, modality, model_name, model_version, dim, count(*) AS num_vectors,
       count(DISTINCT run_id) AS num_runs, max(created_at) AS last_written
FROM all_embeddings GROUP BY ALL
"""


class StoreError(ValueError):
    """Bad input to the embedding store (the message names the store file and the problem)."""


_READER_SPILL_DIRECTORY: str | None = None


def _reader_spill_directory() -> str:
    """A private, initially empty folder for read-only connections' spill files (one per process).

    DuckDB still lets a connection without external access read and write its temp directory, whose
    default is ``.tmp`` under the working directory; pointing it here keeps that from exposing anything.
    """
    global _READER_SPILL_DIRECTORY
    if _READER_SPILL_DIRECTORY is None or not os.path.isdir(_READER_SPILL_DIRECTORY):
        _READER_SPILL_DIRECTORY = tempfile.mkdtemp(prefix="duckdb-reader-spill-")
    return _READER_SPILL_DIRECTORY


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
        connection.execute("ATTACH ? AS store (READ_ONLY)", [str(path)])
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


def _embedding_table(dim: int) -> str:
    if not 1 <= dim <= _MAX_DIM:
        raise StoreError(f"vector dimension must be in [1, {_MAX_DIM}]; got {dim}")
    return f"embeddings_{int(dim)}"


def _samples_table(domain: str) -> str:
    return f"samples_{domain}"


def _quote(identifier: str) -> str:
    """Quotes an identifier that already matched one of the identifier patterns."""
    return '"' + identifier + '"'


def _embedding_tables(connection: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """``{table_name: D}`` for every embeddings table in the connection's current catalog."""
    rows = connection.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = 'main'"
    ).fetchall()
    tables = {}
    for (name,) in rows:
        match = _EMBEDDING_TABLE_PATTERN.match(name)
        if match:
            tables[name] = int(match.group(1))
    return dict(sorted(tables.items(), key=lambda item: item[1]))


def _table_columns(connection: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    rows = connection.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND table_name = ? ORDER BY column_index",
        [table],
    ).fetchall()
    return dict(rows)


def _current_git_sha() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None



class StoreWriter:
    """Writes into the private copy of a store during :meth:`EmbeddingStore.writing`.

    Every method runs one transaction: a failure rolls back that call's batch and nothing else.
    """

    def __init__(self, connection: duckdb.DuckDBPyConnection, store_path: Path) -> None:
        self._connection = connection
        self._store_path = store_path
        connection.execute(_RUNS_DDL)
        self._refresh_views()

    def _error(self, message: str) -> StoreError:
        return StoreError(f"{self._store_path}: {message}")

    def _validate_domain(self, domain: str) -> str:
        if not isinstance(domain, str) or not DOMAIN_PATTERN.match(domain):
            raise self._error(f"domain {domain!r} must match {DOMAIN_PATTERN.pattern}")
        return domain

    def _validate_text(self, value: Any, name: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self._error(f"{name} must be a non-empty string; got {value!r}")
        return value

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self._connection.begin()
        try:
            yield self._connection
        except BaseException:
            self._connection.rollback()
            raise
        self._connection.commit()

    def _refresh_views(self) -> None:
        """Recreates the analyst views over whatever embeddings tables exist."""
        tables = _embedding_tables(self._connection)
        if tables:
            parts = [
                f"SELECT sample_id, domain, modality, model_name, model_version, run_id, {dim} AS dim, "  # noqa: S608
                f"vec::FLOAT[] AS vec, meta, created_at FROM {name}"
                for name, dim in tables.items()
            ]
            union = " UNION ALL ".join(parts)
        else:
            union = (
                "SELECT NULL::VARCHAR AS sample_id, NULL::VARCHAR AS domain, NULL::VARCHAR AS modality, "
                "NULL::VARCHAR AS model_name, NULL::VARCHAR AS model_version, NULL::VARCHAR AS run_id, "
                "NULL::INTEGER AS dim, NULL::FLOAT[] AS vec, NULL::JSON AS meta, "
                "NULL::TIMESTAMP WITH TIME ZONE AS created_at WHERE false"
            )
        self._connection.execute(f"CREATE OR REPLACE VIEW all_embeddings AS {union}")
        self._connection.execute(_INVENTORY_VIEW_DDL)

    def register_run(
        self,
        run_id: str,
        domain: str,
        model_name: str,
        model_version: str,
        config: Mapping[str, Any] | None = None,
        checkpoint_sha256: str | None = None,
        git_sha: str | None = None,
    ) -> None:
        """Records (or replaces) a run; see :meth:`EmbeddingStore.register_run`."""
        self._validate_text(run_id, "run_id")
        self._validate_domain(domain)
        self._validate_text(model_name, "model_name")
        self._validate_text(model_version, "model_version")
        if checkpoint_sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", checkpoint_sha256):
            raise self._error(f"checkpoint_sha256 must be 64 lowercase hex digits; got {checkpoint_sha256!r}")
        try:
            config_json = json.dumps(dict(config or {}), sort_keys=True, default=str, allow_nan=False)
        except ValueError as error:
            raise self._error(f"config of run {run_id!r} is not JSON-serializable: {error}") from error
        with self._transaction() as connection:
            connection.execute(
                "INSERT OR REPLACE INTO runs (run_id, domain, model_name, model_version, checkpoint_sha256, "
                "config_json, git_sha, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, current_timestamp)",
                [run_id, domain, model_name, model_version, checkpoint_sha256, config_json,
                 git_sha if git_sha is not None else _current_git_sha()],
            )  # fmt: skip

    def _normalized_vectors(self, vectors: Any, sample_ids: Sequence[str]) -> np.ndarray:
        if hasattr(vectors, "detach"):
            vectors = vectors.detach().float().cpu().numpy()
        try:
            matrix = np.asarray(vectors)
            # float32 input stays float32 (no copy); anything else is checked in float64.
            matrix = matrix.astype(np.float32 if matrix.dtype == np.float32 else np.float64, copy=False)
        except (ValueError, TypeError) as error:
            raise self._error(f"vectors are not a rectangular numeric (N, D) array: {error}") from error
        if matrix.ndim != 2 or matrix.shape[1] == 0:
            raise self._error(f"vectors must have shape (N, D) with D >= 1; got {matrix.shape}")
        if matrix.shape[0] != len(sample_ids):
            raise self._error(f"{matrix.shape[0]} vectors for {len(sample_ids)} sample ids")
        with np.errstate(over="ignore", invalid="ignore"):
            norms = np.linalg.norm(matrix, axis=1)
        # A NaN/inf entry makes its row's norm non-finite, so only those rows need an element-wise look
        # (a finite float32 row may also overflow the norm: it is recomputed in float64).
        suspicious = np.flatnonzero(~np.isfinite(norms))
        if suspicious.size:
            finite_rows = np.isfinite(matrix[suspicious]).all(axis=1)
            if not finite_rows.all():
                bad_rows = suspicious[~finite_rows]
                bad = [sample_ids[i] for i in bad_rows[:5]]
                raise self._error(f"{bad_rows.size} vectors hold NaN or infinity (first: {bad})")
            norms = np.linalg.norm(matrix.astype(np.float64), axis=1)
        zero = norms < _MIN_NORM
        if zero.any():
            bad = [sample_ids[i] for i in np.flatnonzero(zero)[:5]]
            raise self._error(f"{int(zero.sum())} vectors are zero and have no direction (first: {bad})")
        return (matrix / norms[:, None].astype(matrix.dtype)).astype(np.float32, copy=False)

    def _check_model_dimension(self, domain: str, modality: str, model_name: str, model_version: str, dim: int):
        for table, other_dim in _embedding_tables(self._connection).items():
            if other_dim == dim:
                continue
            found = self._connection.execute(
                f"SELECT 1 FROM {table} WHERE domain = ? AND modality = ? AND model_name = ? "  # noqa: S608
                "AND model_version = ? LIMIT 1",
                [domain, modality, model_name, model_version],
            ).fetchall()
            if found:
                raise self._error(
                    f"model {model_name!r} version {model_version!r} already has {modality} vectors of "
                    f"dimension {other_dim} in domain {domain!r}; got dimension {dim} (wrong model or a "
                    "new version?)"
                )

    def write_embeddings(
        self,
        *,
        domain: str,
        modality: str,
        model_name: str,
        model_version: str,
        run_id: str,
        sample_ids: Sequence[str],
        vectors: Any,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> int:
        """Writes one batch of vectors; see :meth:`EmbeddingStore.write_embeddings`."""
        self._validate_domain(domain)
        for value, name in ((modality, "modality"), (model_name, "model_name"), (model_version, "model_version")):
            self._validate_text(value, name)
        sample_ids = [str(sample_id) for sample_id in sample_ids]
        if not sample_ids:
            return 0
        duplicates = pd.Index(sample_ids)[pd.Index(sample_ids).duplicated()].unique().tolist()
        if duplicates:
            raise self._error(f"duplicate sample ids in one batch: {duplicates[:5]}")
        unit = self._normalized_vectors(vectors, sample_ids)
        dim = unit.shape[1]
        if metadata is not None and len(metadata) != len(sample_ids):
            raise self._error(f"{len(metadata)} metadata entries for {len(sample_ids)} sample ids")
        try:
            meta_json = [
                None if entry is None else json.dumps(dict(entry), sort_keys=True, allow_nan=False)
                for entry in (metadata if metadata is not None else [None] * len(sample_ids))
            ]
        except (TypeError, ValueError) as error:
            raise self._error(f"metadata is not JSON-serializable: {error}") from error
        registered = self._connection.execute("SELECT domain FROM runs WHERE run_id = ?", [run_id]).fetchall()
        if not registered:
            raise self._error(f"run {run_id!r} is not registered; call register_run first")
        self._check_model_dimension(domain, modality, model_name, model_version, dim)

        table = _embedding_table(dim)
        batch = pa.table(
            {
                "sample_id": pa.array(sample_ids, type=pa.string()),
                "vec": pa.FixedSizeListArray.from_arrays(pa.array(unit.reshape(-1), type=pa.float32()), dim),
                "meta": pa.array(meta_json, type=pa.string()),
            }
        )
        view_name = f"incoming_{uuid.uuid4().hex}"
        created = table not in _embedding_tables(self._connection)
        with self._transaction() as connection:
            connection.execute(
                f"CREATE TABLE IF NOT EXISTS {table} ("
                "sample_id VARCHAR NOT NULL, domain VARCHAR NOT NULL, modality VARCHAR NOT NULL, "
                "model_name VARCHAR NOT NULL, model_version VARCHAR NOT NULL, run_id VARCHAR NOT NULL, "
                f"vec FLOAT[{dim}] NOT NULL, meta JSON, "
                "created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT current_timestamp, "
                "PRIMARY KEY (sample_id, modality, model_name, model_version))"
            )
            connection.register(view_name, batch)
            try:
                connection.execute(
                    f"INSERT OR REPLACE INTO {table} (sample_id, domain, modality, model_name, "  # noqa: S608
                    "model_version, run_id, vec, meta, created_at) "
                    f"SELECT sample_id, ?, ?, ?, ?, ?, vec, meta::JSON, current_timestamp FROM {view_name}",
                    [domain, modality, model_name, model_version, run_id],
                )
            finally:
                connection.unregister(view_name)
        if created:
            self._refresh_views()
        return len(sample_ids)

    def upsert_samples(self, domain: str, frame: pd.DataFrame) -> int:
        """Inserts or updates sample rows; see :meth:`EmbeddingStore.upsert_samples`."""
        self._validate_domain(domain)
        if not isinstance(frame, pd.DataFrame) or "sample_id" not in frame.columns:
            raise self._error("upsert_samples needs a pandas DataFrame with a 'sample_id' column")
        bad_columns = [str(c) for c in frame.columns if not COLUMN_PATTERN.match(str(c))]
        if bad_columns:
            raise self._error(f"sample column names must match {COLUMN_PATTERN.pattern}: {bad_columns}")
        lowered = [str(c).lower() for c in frame.columns]
        if len(set(lowered)) != len(lowered):
            raise self._error(f"sample columns differ only in case (DuckDB ignores case): {list(frame.columns)}")
        if frame.empty:
            return 0
        frame = frame.assign(sample_id=frame["sample_id"].astype(str))
        if frame["sample_id"].duplicated().any():
            duplicates = frame.loc[frame["sample_id"].duplicated(), "sample_id"].unique().tolist()
            raise self._error(f"duplicate sample ids in samples frame: {duplicates[:5]}")
        table = _samples_table(domain)
        view_name = f"incoming_{uuid.uuid4().hex}"
        with self._transaction() as connection:
            connection.register(view_name, frame)
            try:
                incoming_types = dict(
                    (row[0], row[1])
                    for row in connection.execute(f"DESCRIBE SELECT * FROM {view_name}").fetchall()  # noqa: S608
                )
                for column, column_type in incoming_types.items():
                    if not _COLUMN_TYPE_PATTERN.match(column_type):
                        raise self._error(
                            f"sample column {column!r} has type {column_type}; use scalar columns "
                            "(numbers, strings, booleans, timestamps) or JSON strings"
                        )
                existing = {name.lower(): name for name in _table_columns(connection, table)}
                if not existing:
                    columns_sql = ", ".join(
                        f"{_quote(column)} {'VARCHAR PRIMARY KEY' if column == 'sample_id' else column_type}"
                        for column, column_type in incoming_types.items()
                    )
                    connection.execute(f"CREATE TABLE {table} ({columns_sql})")
                else:
                    for column, column_type in incoming_types.items():
                        if column.lower() not in existing:
                            connection.execute(f"ALTER TABLE {table} ADD COLUMN {_quote(column)} {column_type}")
                connection.execute(f"INSERT OR REPLACE INTO {table} BY NAME SELECT * FROM {view_name}")  # noqa: S608
            except duckdb.ConversionException as error:
                raise self._error(f"samples for {domain!r} do not fit the existing columns: {error}") from error
            finally:
                connection.unregister(view_name)
        return len(frame)


@dataclass(frozen=True)
class ModelVectors:
    """One model's stored vectors held in memory for exact search."""

    sample_ids: np.ndarray
    run_ids: np.ndarray
    metas: np.ndarray
    vectors: np.ndarray

    @property
    def nbytes(self) -> int:
        """Approximate memory held, in bytes."""
        return self.vectors.nbytes + 64 * len(self.sample_ids) + sum(len(m or "") for m in self.metas)


class EmbeddingStore:
    """A DuckDB file of embeddings with their identity (see the module docstring for the design).

    Args:
        path: The store file; created on the first write.
        memory_limit: DuckDB memory limit for this object's connections.
        threads: DuckDB threads (default: all cores).
        vector_cache_mb: Memory for exact in-memory indexes of whole models (0 disables). An unfiltered
            :meth:`nearest` loads the model's vectors once (through Arrow) and ranks with one matrix-vector
            product; the cache is dropped whenever a writer swaps in a new file. Filtered queries rank in
            DuckDB, where the filter runs before ranking.

    Example:
        >>> store = EmbeddingStore(tmp / "embeddings.duckdb")
        >>> with store.writing() as writer:  # one copy and one swap for many batches
        ...     writer.register_run("r1", "astro", "astroclip", "v1", config={})
        ...     writer.write_embeddings(domain="astro", modality="spectrum", model_name="astroclip",
        ...                             model_version="v1", run_id="r1", sample_ids=ids, vectors=x)
        >>> store.nearest(sample_id=ids[0], k=5, domain="astro", modality="spectrum")
    """

    def __init__(
        self,
        path: str | Path = DEFAULT_STORE_PATH,
        memory_limit: str = "4GB",
        threads: int | None = None,
        vector_cache_mb: float = 4096,
    ) -> None:
        self.path = Path(path)
        self.memory_limit = memory_limit
        self.threads = threads
        self.vector_cache_mb = vector_cache_mb
        self._vector_cache: dict[tuple[str, str, str, str, str], ModelVectors] = {}
        self._active_writer: StoreWriter | None = None
        self._reader: duckdb.DuckDBPyConnection | None = None
        self._reader_identity: tuple[int, int, int] | None = None

    @property
    def temporary_path(self) -> Path:
        """Where writers build the next version of the store before swapping it in."""
        return self.path.with_name(f"{self.path.stem}.tmp{self.path.suffix or '.duckdb'}")

    def _error(self, message: str) -> StoreError:
        return StoreError(f"{self.path}: {message}")

    # ----------------------------------------------------------------------------------------- writing

    @contextmanager
    def writing(self) -> Iterator[StoreWriter]:
        """Opens a private copy of the store for writing and swaps it in atomically on success.

        Writers in other processes wait on ``<name>.duckdb.lock``. Readers keep reading the current
        file meanwhile. If the block raises (or the process dies) the live store is unchanged.

        Yields:
            A :class:`StoreWriter`; each of its calls is one transaction.
        """
        if self._active_writer is not None:
            yield self._active_writer
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.temporary_path
        with FileLock(str(self.path) + ".lock"):
            for leftover in (temporary, Path(str(temporary) + ".wal")):
                leftover.unlink(missing_ok=True)  # from a writer that died; the lock says none is running
            live_wal = Path(str(self.path) + ".wal")
            if live_wal.exists():
                # Only a program that opened the live file for writing leaves this; copying the store
                # without it would drop those changes, and swapping under it would pair it with a new file.
                raise self._error(
                    f"{live_wal} exists: another program has the store open for writing (or crashed while it "
                    "had); close it, or open and close the store once with DuckDB to checkpoint, then retry"
                )
            if self.path.exists():
                shutil.copyfile(self.path, temporary)
            connection = duckdb.connect(str(temporary), config={"memory_limit": self.memory_limit})
            try:
                if self.threads is not None:
                    connection.execute("SET threads = ?", [int(self.threads)])
                self._active_writer = StoreWriter(connection, self.path)
                yield self._active_writer
                connection.execute("CHECKPOINT")
            except BaseException:
                connection.close()
                temporary.unlink(missing_ok=True)
                Path(str(temporary) + ".wal").unlink(missing_ok=True)
                raise
            finally:
                self._active_writer = None
            connection.close()
            fsync_file(temporary)
            os.replace(temporary, self.path)
            fsync_directory(self.path.parent)

    def register_run(
        self,
        run_id: str,
        domain: str,
        model_name: str,
        model_version: str,
        config: Mapping[str, Any] | None = None,
        checkpoint_sha256: str | None = None,
        git_sha: str | None = None,
    ) -> None:
        """Records a run (replacing an earlier record with the same id).

        Args:
            run_id: Unique run id, e.g. the run folder name.
            domain: Domain name (lowercase identifier, e.g. ``"astro"``).
            model_name: Model name (e.g. ``"ViT-B-16"``).
            model_version: Model version (e.g. a release tag or the checkpoint step).
            config: The run's resolved configuration (stored as JSON).
            checkpoint_sha256: SHA-256 hex digest of the checkpoint file the vectors came from.
            git_sha: Commit of the code; detected with ``git rev-parse HEAD`` when omitted.
        """
        with self.writing() as writer:
            writer.register_run(run_id, domain, model_name, model_version, config, checkpoint_sha256, git_sha)

    def write_embeddings(
        self,
        *,
        domain: str,
        modality: str,
        model_name: str,
        model_version: str,
        run_id: str,
        sample_ids: Sequence[str],
        vectors: Any,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> int:
        """Writes a batch of vectors in one transaction (idempotent: a re-run replaces, never duplicates).

        Vectors are L2-normalized and stored as ``FLOAT[D]`` in ``embeddings_<D>``. The whole batch is
        rejected if any vector is zero, NaN or infinite, if a sample id repeats, or if the model already
        has vectors of another dimension. Outside :meth:`writing`, each call copies and swaps the file
        once; wrap many batches in ``with store.writing() as writer`` for large exports.

        Args:
            domain: Domain name (lowercase identifier).
            modality: Modality name (e.g. ``"image"``, ``"text"``, ``"photometry"``).
            model_name: Model name.
            model_version: Model version.
            run_id: A run recorded with :meth:`register_run`.
            sample_ids: N sample ids (strings).
            vectors: (N, D) numpy array or torch tensor.
            metadata: Optional N JSON-serializable dicts (or None) stored in the ``meta`` column.

        Returns:
            The number of vectors written.

        Raises:
            StoreError: On any invalid input; nothing of the batch is written.
        """
        with self.writing() as writer:
            return writer.write_embeddings(
                domain=domain,
                modality=modality,
                model_name=model_name,
                model_version=model_version,
                run_id=run_id,
                sample_ids=sample_ids,
                vectors=vectors,
                metadata=metadata,
            )

    def upsert_samples(self, domain: str, frame: pd.DataFrame) -> int:
        """Inserts or updates rows of ``samples_<domain>`` from a DataFrame (one transaction).

        The table is created from the first frame's columns (``sample_id`` becomes the primary key);
        later frames may add columns. An existing sample's row is updated in the columns the frame has;
        its other columns keep their values.

        Args:
            domain: Domain name (lowercase identifier).
            frame: A DataFrame with a ``sample_id`` column and scalar columns whose names match
                ``[A-Za-z_][A-Za-z0-9_]*``.

        Returns:
            The number of rows written.
        """
        with self.writing() as writer:
            return writer.upsert_samples(domain, frame)

    # ----------------------------------------------------------------------------------------- reading

    def _reader_connection(self) -> duckdb.DuckDBPyConnection:
        """A read-only connection, reopened whenever a writer has swapped in a new file.

        Holding it open blocks nobody (writers never open the live file) and keeps DuckDB's buffer
        cache warm between queries.
        """
        if not self.path.is_file():
            raise self._error("no embedding store here yet (write embeddings first)")
        status = self.path.stat()
        identity = (status.st_ino, status.st_mtime_ns, status.st_size)
        if self._reader is None or identity != self._reader_identity:
            self.close()
            self._reader = open_readonly(self.path, memory_limit=self.memory_limit, threads=self.threads)
            self._reader_identity = identity
        return self._reader

    def close(self) -> None:
        """Closes the cached read-only connection and drops the vector cache (a later query reopens it)."""
        self._vector_cache.clear()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
            self._reader_identity = None

    def sql(self, query: str, parameters: Sequence[Any] | None = None) -> pd.DataFrame:
        """Runs a read-only query (with bound ``?`` parameters) on the store and returns a DataFrame."""
        return self._reader_connection().execute(query, list(parameters or [])).df()

    def _resolve_model(
        self,
        connection: duckdb.DuckDBPyConnection,
        domain: str,
        modality: str,
        model_name: str | None,
        model_version: str | None,
        dim: int | None,
    ) -> tuple[str, str, int]:
        """Finds the single (model_name, model_version, D) the query refers to."""
        tables = _embedding_tables(connection)
        if dim is not None:
            tables = {name: d for name, d in tables.items() if d == dim}
        candidates = set()
        if model_name is not None and model_version is not None:
            # Fully specified: an existence probe per table is enough (and far cheaper than DISTINCT).
            for table, table_dim in tables.items():
                found = connection.execute(
                    f"SELECT 1 FROM {table} WHERE domain = ? AND modality = ? AND model_name = ? "  # noqa: S608
                    "AND model_version = ? LIMIT 1",
                    [domain, modality, model_name, model_version],
                ).fetchall()
                if found:
                    candidates.add((model_name, model_version, table_dim))
            tables = {}
        for table, table_dim in tables.items():
            conditions = ["domain = ?", "modality = ?"]
            parameters: list[Any] = [domain, modality]
            for column, value in (("model_name", model_name), ("model_version", model_version)):
                if value is not None:
                    conditions.append(f"{column} = ?")
                    parameters.append(value)
            rows = connection.execute(
                f"SELECT DISTINCT model_name, model_version FROM {table} "  # noqa: S608
                f"WHERE {' AND '.join(conditions)}",
                parameters,
            ).fetchall()
            candidates.update((name, version, table_dim) for name, version in rows)
        wanted = f"domain={domain!r}, modality={modality!r}, model_name={model_name!r}, " + (
            f"model_version={model_version!r}" + (f", dimension {dim}" if dim is not None else "")
        )
        if not candidates:
            raise self._error(f"no vectors for {wanted}")
        if len(candidates) > 1:
            listed = sorted(f"{name} {version} (D={d})" for name, version, d in candidates)
            raise self._error(
                f"vectors of several models match {wanted}: {listed}; pass model_name and model_version "
                "(similarities between different models' vectors are meaningless)"
            )
        return candidates.pop()

    def _filter_sql(
        self, connection: duckdb.DuckDBPyConnection, domain: str, filters: Mapping[str, Any]
    ) -> tuple[list[str], list[Any], bool]:
        """SQL conditions and parameters for equality filters; True if the samples table is needed."""
        conditions: list[str] = []
        parameters: list[Any] = []
        sample_columns = {name.lower(): name for name in _table_columns(connection, _samples_table(domain))}
        needs_samples = False
        for key, value in filters.items():
            if not isinstance(key, str):
                raise self._error(f"filter keys must be strings; got {key!r}")
            if key.startswith("meta."):
                meta_key = key[len("meta.") :]
                if not META_KEY_PATTERN.match(meta_key):
                    raise self._error(f"meta filter key {meta_key!r} must match {META_KEY_PATTERN.pattern}")
                expression = "json_extract_string(e.meta, ?)"
                parameters_for_expression: list[Any] = ["$." + meta_key]
                values = value if isinstance(value, list | tuple | set) else [value]
                values = [v if isinstance(v, str) or v is None else json.dumps(v) for v in values]
            else:
                if key.lower() not in sample_columns:
                    known = sorted(sample_columns.values())
                    raise self._error(
                        f"filter {key!r} is neither 'meta.<key>' nor a column of samples_{domain} (columns: {known})"
                    )
                expression = f"s.{_quote(sample_columns[key.lower()])}"
                parameters_for_expression = []
                needs_samples = True
                values = list(value) if isinstance(value, list | tuple | set) else [value]
            if not values:
                raise self._error(f"filter {key!r} has an empty list of values")
            if len(values) == 1 and values[0] is None:
                conditions.append(f"{expression} IS NULL")
                parameters.extend(parameters_for_expression)
            else:
                conditions.append(f"{expression} IN ({', '.join('?' for _ in values)})")
                parameters.extend(parameters_for_expression + list(values))
        return conditions, parameters, needs_samples

    def get_vectors(
        self,
        sample_ids: Sequence[str],
        *,
        domain: str,
        modality: str,
        model_name: str | None = None,
        model_version: str | None = None,
    ) -> np.ndarray:
        """Stored (unit-norm) vectors of the given samples, in the given order, as (N, D) float32.

        Raises:
            StoreError: If a sample has no vector for the resolved model.
        """
        connection = self._reader_connection()
        model_name, model_version, dim = self._resolve_model(
            connection, domain, modality, model_name, model_version, None
        )
        ids = [str(sample_id) for sample_id in sample_ids]
        table = _embedding_table(dim)
        result = connection.sql(
            f"SELECT sample_id, vec FROM {table} WHERE domain = ? AND modality = ? AND model_name = ? "  # noqa: S608
            "AND model_version = ? AND sample_id IN (SELECT unnest(?::VARCHAR[]))",
            params=[domain, modality, model_name, model_version, ids],
        ).to_arrow_table()
        found = dict(zip(result.column("sample_id").to_pylist(), range(result.num_rows), strict=True))
        missing = [sample_id for sample_id in ids if sample_id not in found]
        if missing:
            raise self._error(f"no {modality} vector of model {model_name} {model_version} for samples {missing[:5]}")
        matrix = result.column("vec").combine_chunks().values.to_numpy().reshape(-1, dim)
        return matrix[[found[sample_id] for sample_id in ids]]

    def nearest(
        self,
        *,
        vector: Any = None,
        sample_id: str | None = None,
        k: int = 10,
        domain: str,
        modality: str,
        model_name: str | None = None,
        model_version: str | None = None,
        filters: Mapping[str, Any] | None = None,
        exclude_query: bool = True,
        include_sample_columns: bool = False,
    ) -> pd.DataFrame:
        """Exact k nearest neighbours by cosine similarity, filtered before ranking.

        Args:
            vector: A (D,) query vector (normalized here), or
            sample_id: the id of a stored sample whose vector is the query.
            k: Number of neighbours.
            domain: Domain of the candidates.
            modality: Modality of the candidates (and of the query sample).
            model_name: Model of the candidates; may be omitted when only one model matches.
            model_version: Model version; may be omitted when only one version matches.
            filters: Equality filters ``{name: value or list of values}``: ``"meta.<key>"`` (dotted for
                nested keys) compares the JSON meta value as text, any other name is a column of
                ``samples_<domain>``. ``None`` means IS NULL.
            exclude_query: Leave the query sample itself out of the result (sample-id queries only).
            include_sample_columns: Add the columns of ``samples_<domain>`` (prefixed ``sample_``).

        Returns:
            DataFrame with ``rank`` (1-based), ``sample_id``, ``score`` (cosine similarity), ``domain``,
            ``modality``, ``model_name``, ``model_version``, ``run_id``, ``meta`` (JSON text), best first.

        Raises:
            StoreError: On an unknown domain/model/filter, an ambiguous model, a missing sample or a
                vector of the wrong dimension.
        """
        if (vector is None) == (sample_id is None):
            raise self._error("nearest needs exactly one of vector= or sample_id=")
        if not isinstance(domain, str) or not DOMAIN_PATTERN.match(domain):
            raise self._error(f"domain {domain!r} must match {DOMAIN_PATTERN.pattern}")
        if not isinstance(k, int) or k < 1:
            raise self._error(f"k must be a positive integer; got {k!r}")
        connection = self._reader_connection()
        if vector is not None:
            if hasattr(vector, "detach"):
                vector = vector.detach().float().cpu().numpy()
            query = np.asarray(vector, dtype=np.float64).reshape(-1)
            dim: int | None = query.shape[0]
        else:
            dim = None
        model_name, model_version, dim = self._resolve_model(
            connection, domain, modality, model_name, model_version, dim
        )
        if sample_id is not None:
            query = self.get_vectors(
                [sample_id], domain=domain, modality=modality, model_name=model_name, model_version=model_version
            )[0].astype(np.float64)
        norm = float(np.linalg.norm(query))
        if not math.isfinite(norm) or norm < _MIN_NORM:
            raise self._error("the query vector is zero, NaN or infinite")
        query = query / norm

        table = _embedding_table(dim)
        if not filters:
            index = self._cached_model_vectors(connection, table, domain, modality, model_name, model_version)
            if index is not None:
                return self._nearest_in_memory(
                    connection, table, index, query, k, domain, modality, model_name, model_version,
                    sample_id if exclude_query else None, include_sample_columns,
                )  # fmt: skip
        conditions = ["e.domain = ?", "e.modality = ?", "e.model_name = ?", "e.model_version = ?"]
        parameters: list[Any] = [domain, modality, model_name, model_version]
        filter_conditions, filter_parameters, needs_samples = self._filter_sql(connection, domain, filters or {})
        conditions += filter_conditions
        parameters += filter_parameters
        if sample_id is not None and exclude_query:
            conditions.append("e.sample_id <> ?")
            parameters.append(str(sample_id))
        join = ""
        sample_select = ""
        if needs_samples or include_sample_columns:
            samples_table = _samples_table(domain)
            sample_columns = _table_columns(connection, samples_table)
            if not sample_columns:
                raise self._error(f"samples_{domain} does not exist; upsert_samples first")
            join = f"LEFT JOIN {samples_table} s ON s.sample_id = e.sample_id"
            if include_sample_columns:
                sample_select = "".join(
                    f", s.{_quote(column)} AS {_quote('sample_' + column)}"
                    for column in sample_columns
                    if column != "sample_id"
                )
        statement = (
            f"SELECT e.sample_id, array_cosine_similarity(e.vec, ?::FLOAT[{dim}]) AS score, e.domain, "  # noqa: S608
            f"e.modality, e.model_name, e.model_version, e.run_id, e.meta{sample_select} "
            f"FROM {table} e {join} WHERE {' AND '.join(conditions)} "
            "ORDER BY score DESC, e.sample_id LIMIT ?"
        )
        frame = connection.execute(statement, [query.astype(np.float32).tolist(), *parameters, k]).df()
        frame.insert(0, "rank", np.arange(1, len(frame) + 1))
        return frame

    def _cached_model_vectors(
        self,
        connection: duckdb.DuckDBPyConnection,
        table: str,
        domain: str,
        modality: str,
        model_name: str,
        model_version: str,
    ) -> ModelVectors | None:
        """One model's ids, identity columns and (N, D) float32 unit vectors, loaded once per store file.

        Returns None when the model would not fit in ``vector_cache_mb``.
        """
        key = (table, domain, modality, model_name, model_version)
        if key in self._vector_cache:
            return self._vector_cache[key]
        if self.vector_cache_mb <= 0:
            return None
        parameters = [domain, modality, model_name, model_version]
        where = "WHERE domain = ? AND modality = ? AND model_name = ? AND model_version = ?"
        count = connection.execute(f"SELECT count(*) FROM {table} {where}", parameters).fetchall()[0][0]  # noqa: S608
        dim = int(table.rsplit("_", 1)[1])
        cached_bytes = sum(entry.nbytes for entry in self._vector_cache.values())
        if (cached_bytes + count * (dim * 4 + 128)) / 2**20 > self.vector_cache_mb:
            return None
        result = connection.sql(
            f"SELECT sample_id, run_id, CAST(meta AS VARCHAR) AS meta, vec FROM {table} {where}",  # noqa: S608
            params=parameters,
        ).to_arrow_table()
        vectors = result.column("vec").combine_chunks().values.to_numpy().reshape(-1, dim)
        self._vector_cache[key] = ModelVectors(
            sample_ids=result.column("sample_id").to_numpy(zero_copy_only=False).astype(object),
            run_ids=result.column("run_id").to_numpy(zero_copy_only=False).astype(object),
            metas=result.column("meta").to_numpy(zero_copy_only=False).astype(object),
            vectors=np.ascontiguousarray(vectors, dtype=np.float32),
        )
        return self._vector_cache[key]

    def _nearest_in_memory(
        self,
        connection: duckdb.DuckDBPyConnection,
        table: str,
        index: ModelVectors,
        query: np.ndarray,
        k: int,
        domain: str,
        modality: str,
        model_name: str,
        model_version: str,
        excluded_sample: str | None,
        include_sample_columns: bool,
    ) -> pd.DataFrame:
        """Exact top-k by one matrix-vector product over the cached vectors (same order as the SQL path)."""
        scores = index.vectors @ query.astype(np.float32)
        ids = index.sample_ids
        if excluded_sample is not None:
            scores[ids == str(excluded_sample)] = -np.inf
        take = min(k + 1, len(scores))
        candidates = np.argpartition(-scores, take - 1)[:take] if take < len(scores) else np.arange(len(scores))
        order = sorted(candidates.tolist(), key=lambda i: (-float(scores[i]), str(ids[i])))
        chosen = [i for i in order if np.isfinite(scores[i])][:k]
        rows = pd.DataFrame(
            {
                "rank": np.arange(1, len(chosen) + 1),
                "sample_id": [str(ids[i]) for i in chosen],
                "score": np.asarray([scores[i] for i in chosen], dtype=np.float64),
                "domain": domain,
                "modality": modality,
                "model_name": model_name,
                "model_version": model_version,
                "run_id": [index.run_ids[i] for i in chosen],
                "meta": [index.metas[i] for i in chosen],
            }
        )
        if include_sample_columns:
            samples_table = _samples_table(domain)
            sample_columns = _table_columns(connection, samples_table)
            if not sample_columns:
                raise self._error(f"samples_{domain} does not exist; upsert_samples first")
            selected = ", ".join(
                f"{_quote(column)} AS {_quote('sample_' + column)}"
                for column in sample_columns
                if column != "sample_id"
            )
            extra = connection.execute(
                f"SELECT sample_id, {selected} FROM {samples_table} "  # noqa: S608
                "WHERE sample_id IN (SELECT unnest(?::VARCHAR[]))",
                [rows["sample_id"].tolist()],
            ).df()
            rows = rows.merge(extra, on="sample_id", how="left")
        return rows

    # ----------------------------------------------------------------------------------------- export

    def export_parquet(self, out_dir: str | Path) -> Path:
        """Exports the store to Parquet for other engines, partitioned by domain and model.

        Layout: ``embeddings_<D>/domain=<d>/model_name=<m>/model_version=<v>/*.parquet`` (``vec`` as a
        list of floats, since Parquet has no fixed-size arrays), ``runs.parquet``,
        ``samples_<domain>.parquet`` and ``manifest.json`` recording every table's dimension and row
        count. Read it back with :func:`read_parquet_export`, which casts ``vec`` to ``FLOAT[D]``.
        The folder is built beside ``out_dir`` and renamed into place, replacing an earlier export.

        Returns:
            ``out_dir``.
        """
        out_dir = Path(out_dir)
        if "'" in str(out_dir.resolve()):
            raise self._error(f"export folder {out_dir} may not contain a quote character")
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
        if not self.path.is_file():
            raise self._error("no embedding store here yet (write embeddings first)")
        # An unrestricted read-only connection: COPY needs file access, which open_readonly forbids.
        connection = duckdb.connect(":memory:")
        try:
            connection.execute("ATTACH ? AS store (READ_ONLY)", [str(self.path)])
            connection.execute("USE store")
            manifest: dict[str, Any] = {"format": "domain-clip-suite embedding export", "version": 1, "tables": {}}
            for table, dim in _embedding_tables(connection).items():
                rows = connection.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]  # noqa: S608
                connection.execute(
                    f"COPY (SELECT * REPLACE (vec::FLOAT[] AS vec) FROM {table}) TO '{staging / table}' "  # noqa: S608
                    "(FORMAT parquet, PARTITION_BY (domain, model_name, model_version))"
                )
                manifest["tables"][table] = {"kind": "embeddings", "dim": dim, "rows": rows, "path": table}
            tables = [row[0] for row in connection.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
                "AND (table_name = 'runs' OR table_name LIKE 'samples\\_%' ESCAPE '\\')"
            ).fetchall()]  # fmt: skip
            for table in tables:
                if table != "runs" and not DOMAIN_PATTERN.match(table[len("samples_") :]):
                    continue
                rows = connection.execute(f"SELECT count(*) FROM {_quote(table)}").fetchall()[0][0]  # noqa: S608
                connection.execute(
                    f"COPY {_quote(table)} TO '{staging / (table + '.parquet')}' (FORMAT parquet)"  # noqa: S608
                )
                kind = "runs" if table == "runs" else "samples"
                manifest["tables"][table] = {"kind": kind, "rows": rows, "path": table + ".parquet"}
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        finally:
            connection.close()
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        previous = None
        if out_dir.exists():
            previous = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex}")
            os.replace(out_dir, previous)
        os.replace(staging, out_dir)
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
        return out_dir


def read_parquet_export(export_dir: str | Path) -> duckdb.DuckDBPyConnection:
    """Opens a Parquet export as an in-memory DuckDB database with the store's table names.

    Every ``embeddings_<D>`` view casts ``vec`` back to ``FLOAT[D]`` (the dimension comes from the
    manifest), so the store's queries run unchanged; ``all_embeddings`` is recreated too.

    Args:
        export_dir: A folder written by :meth:`EmbeddingStore.export_parquet`.

    Returns:
        An in-memory connection with views ``runs``, ``samples_<domain>``, ``embeddings_<D>``,
        ``all_embeddings`` and ``embedding_inventory``.

    Raises:
        StoreError: If the manifest is missing or malformed, or a table's row count differs from it.
    """
    export_dir = Path(export_dir)
    manifest_path = export_dir / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        tables = manifest["tables"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise StoreError(f"{manifest_path}: not a readable export manifest ({error})") from error
    if "'" in str(export_dir):
        raise StoreError(f"{export_dir}: export folder names may not contain a quote character")
    connection = duckdb.connect(":memory:")
    embedding_views = []
    for table, entry in sorted(tables.items()):
        kind = entry.get("kind") if isinstance(entry, dict) else None
        if kind == "embeddings":
            match = _EMBEDDING_TABLE_PATTERN.match(table)
            if not match or int(match.group(1)) != entry.get("dim"):
                raise StoreError(f"{manifest_path}: table {table!r} does not match its dimension {entry.get('dim')}")
            dim = int(match.group(1))
            source = export_dir / table
            parquet = f"read_parquet('{source}/**/*.parquet', hive_partitioning = true)"
            select = (
                "SELECT sample_id, domain, modality, model_name, model_version, run_id, "  # noqa: S608
                f"vec::FLOAT[{dim}] AS vec, meta::JSON AS meta, created_at FROM {parquet}"
            )
            embedding_views.append((table, dim))
        elif kind in ("runs", "samples") and (table == "runs" or DOMAIN_PATTERN.match(table[len("samples_") :])):
            select = f"SELECT * FROM read_parquet('{export_dir / (table + '.parquet')}')"  # noqa: S608
        else:
            raise StoreError(f"{manifest_path}: unexpected table entry {table!r}")
        connection.execute(f"CREATE VIEW {_quote(table)} AS {select}")
        rows = connection.execute(f"SELECT count(*) FROM {_quote(table)}").fetchall()[0][0]  # noqa: S608
        if rows != entry.get("rows"):
            raise StoreError(f"{export_dir / table}: {rows} rows, but the manifest says {entry.get('rows')}")
    if embedding_views:
        union = " UNION ALL ".join(
            f"SELECT sample_id, domain, modality, model_name, model_version, run_id, {dim} AS dim, "  # noqa: S608
            f"vec::FLOAT[] AS vec, meta, created_at FROM {table}"
            for table, dim in embedding_views
        )
        connection.execute(f"CREATE VIEW all_embeddings AS {union}")
        connection.execute(_INVENTORY_VIEW_DDL)
    return connection
