"""Writing a store: validated batches, one transaction each, into a private copy swapped in atomically.

DuckDB lets no other process open a file, not even read-only, while a writer holds it. So writers never
open the live file for writing: :func:`write_session` copies the store to a temporary file beside it
(``.<name>.<random>.tmp.duckdb``), writes there (one transaction per batch), checkpoints, and
:func:`shared.atomic_files.atomic_output` fsyncs and renames it into place. Readers see either the old or
the new file, never a half-written one; a writer killed mid-write leaves the live store untouched.
Writers are serialized by a lock file ``<name>.duckdb.lock``; the next writer removes what a killed one
left behind.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
from filelock import FileLock

from shared.atomic_files import atomic_output
from shared.store.schema import (
    COLUMN_PATTERN,
    COLUMN_TYPE_PATTERN,
    DOMAIN_PATTERN,
    INVENTORY_VIEW_DDL,
    MIN_NORM,
    RUNS_DDL,
    StoreError,
    all_embeddings_select,
    embedding_table,
    embedding_tables,
    quote,
    samples_table,
    store_error,
    table_columns,
)

#: Suffix of the temporary copy a writer builds (``atomic_output`` names it ``.<name>.<random><suffix>``).
TEMPORARY_SUFFIX = ".tmp.duckdb"


def current_git_sha() -> str | None:
    """The commit checked out in the working directory (``git rev-parse HEAD``), or None."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def temporary_files(store_path: str | Path) -> list[Path]:
    """Temporary copies (and their write-ahead logs) that writers build beside ``store_path``.

    Outside a write session this is empty unless a writer was killed; the next writer removes them.
    """
    store_path = Path(store_path)
    pattern = f".{store_path.name}.*{TEMPORARY_SUFFIX}"
    return sorted([*store_path.parent.glob(pattern), *store_path.parent.glob(pattern + ".wal")])


@contextmanager
def write_session(
    store_path: str | Path, memory_limit: str = "4GB", threads: int | None = None
) -> Iterator[StoreWriter]:
    """Opens a private copy of the store for writing and swaps it in atomically on success.

    Writers in other processes wait on ``<name>.duckdb.lock``. Readers keep reading the current file
    meanwhile. If the block raises (or the process dies) the live store is unchanged.

    Args:
        store_path: The live store file (created on the first successful session).
        memory_limit: DuckDB memory limit of the writing connection.
        threads: DuckDB threads (default: all cores).

    Yields:
        A :class:`StoreWriter`; each of its calls is one transaction.

    Raises:
        StoreError: Another program holds the live file open for writing (its ``.wal`` exists).
    """
    store_path = Path(store_path)
    store_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(store_path) + ".lock"):
        for leftover in temporary_files(store_path):
            leftover.unlink(missing_ok=True)  # from a writer that died; the lock says none is running
        live_wal = Path(str(store_path) + ".wal")
        if live_wal.exists():
            # Only a program that opened the live file for writing leaves this; copying the store
            # without it would drop those changes, and swapping under it would pair it with a new file.
            raise store_error(
                store_path,
                f"{live_wal} exists: another program has the store open for writing (or crashed while it "
                "had); close it, or open and close the store once with DuckDB to checkpoint, then retry",
            )
        with atomic_output(store_path, suffix=TEMPORARY_SUFFIX) as temporary:
            temporary_wal = Path(str(temporary) + ".wal")
            if store_path.exists():
                shutil.copyfile(store_path, temporary)
            else:
                temporary.unlink()  # DuckDB refuses an empty file; it creates the new store itself
            try:
                connection = duckdb.connect(str(temporary), config={"memory_limit": memory_limit})
            except duckdb.IOException as error:
                raise store_error(store_path, "not a DuckDB database file") from error
            try:
                if threads is not None:
                    connection.execute("SET threads = ?", [int(threads)])
                yield StoreWriter(connection, store_path)
                connection.execute("CHECKPOINT")
            except BaseException:
                connection.close()
                temporary_wal.unlink(missing_ok=True)
                raise
            connection.close()


class StoreWriter:
    """Writes into the private copy of a store during :meth:`EmbeddingStore.writing`.

    Every method runs one transaction: a failure rolls back that call's batch and nothing else.
    """

    def __init__(self, connection: duckdb.DuckDBPyConnection, store_path: Path) -> None:
        self._connection = connection
        self._store_path = store_path
        connection.execute(RUNS_DDL)
        self._refresh_views()

    def _error(self, message: str) -> StoreError:
        return store_error(self._store_path, message)

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
        union = all_embeddings_select(embedding_tables(self._connection))
        self._connection.execute(f"CREATE OR REPLACE VIEW all_embeddings AS {union}")
        self._connection.execute(INVENTORY_VIEW_DDL)

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
                 git_sha if git_sha is not None else current_git_sha()],
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
        zero = norms < MIN_NORM
        if zero.any():
            bad = [sample_ids[i] for i in np.flatnonzero(zero)[:5]]
            raise self._error(f"{int(zero.sum())} vectors are zero and have no direction (first: {bad})")
        return (matrix / norms[:, None].astype(matrix.dtype)).astype(np.float32, copy=False)

    def _check_model_dimension(self, domain: str, modality: str, model_name: str, model_version: str, dim: int):
        for table, other_dim in embedding_tables(self._connection).items():
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

        table = embedding_table(dim)
        batch = pa.table(
            {
                "sample_id": pa.array(sample_ids, type=pa.string()),
                "vec": pa.FixedSizeListArray.from_arrays(pa.array(unit.reshape(-1), type=pa.float32()), dim),
                "meta": pa.array(meta_json, type=pa.string()),
            }
        )
        view_name = f"incoming_{uuid.uuid4().hex}"
        created = table not in embedding_tables(self._connection)
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
        table = samples_table(domain)
        view_name = f"incoming_{uuid.uuid4().hex}"
        with self._transaction() as connection:
            connection.register(view_name, frame)
            try:
                incoming_types = dict(
                    (row[0], row[1])
                    for row in connection.execute(f"DESCRIBE SELECT * FROM {view_name}").fetchall()  # noqa: S608
                )
                for column, column_type in incoming_types.items():
                    if not COLUMN_TYPE_PATTERN.match(column_type):
                        raise self._error(
                            f"sample column {column!r} has type {column_type}; use scalar columns "
                            "(numbers, strings, booleans, timestamps) or JSON strings"
                        )
                existing = {name.lower(): name for name in table_columns(connection, table)}
                if not existing:
                    columns_sql = ", ".join(
                        f"{quote(column)} {'VARCHAR PRIMARY KEY' if column == 'sample_id' else column_type}"
                        for column, column_type in incoming_types.items()
                    )
                    connection.execute(f"CREATE TABLE {table} ({columns_sql})")
                else:
                    for column, column_type in incoming_types.items():
                        if column.lower() not in existing:
                            connection.execute(f"ALTER TABLE {table} ADD COLUMN {quote(column)} {column_type}")
                connection.execute(f"INSERT OR REPLACE INTO {table} BY NAME SELECT * FROM {view_name}")  # noqa: S608
            except duckdb.ConversionException as error:
                raise self._error(f"samples for {domain!r} do not fit the existing columns: {error}") from error
            finally:
                connection.unregister(view_name)
        return len(frame)
