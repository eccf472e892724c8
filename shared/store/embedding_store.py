"""The store as one object: :class:`EmbeddingStore` ties writing, querying and export to one file."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from shared.store.parquet_export import export_parquet
from shared.store.query import check_nearest_arguments, find_nearest, read_vectors
from shared.store.reader_snapshot import ReaderSnapshot, SnapshotKeeper
from shared.store.schema import DEFAULT_STORE_PATH, StoreError, store_error
from shared.store.vector_index import VectorIndexCache
from shared.store.writer import StoreWriter, temporary_files, write_session


class EmbeddingStore:
    """A DuckDB file of embeddings with their identity (the design is in the :mod:`shared.store` docstring).

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
        self._active_writer: StoreWriter | None = None
        self._snapshots = SnapshotKeeper(self.path, memory_limit, threads)

    def temporary_files(self) -> list[Path]:
        """Temporary copies writers build beside the store; empty unless a write is under way or a writer died."""
        return temporary_files(self.path)

    def _error(self, message: str) -> StoreError:
        return store_error(self.path, message)

    # ----------------------------------------------------------------------------------------- writing

    @contextmanager
    def writing(self) -> Iterator[StoreWriter]:
        """Opens a private copy of the store for writing and swaps it in atomically on success.

        Writers in other processes wait on ``<name>.duckdb.lock``. Readers keep reading the current
        file meanwhile. If the block raises (or the process dies) the live store is unchanged. Nested
        calls (e.g. :meth:`write_embeddings` inside the block) join the open session.

        Yields:
            A :class:`StoreWriter`; each of its calls is one transaction.
        """
        if self._active_writer is not None:
            yield self._active_writer
            return
        with write_session(self.path, memory_limit=self.memory_limit, threads=self.threads) as writer:
            self._active_writer = writer
            try:
                yield writer
            finally:
                self._active_writer = None

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
            run_id: Unique run id, e.g. the run folder's ``RunFolder.run_id``.
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

    @contextmanager
    def _reading(self) -> Iterator[tuple[duckdb.DuckDBPyConnection, ReaderSnapshot]]:
        """A cursor on one consistent version of the file for one call (see :mod:`shared.store.reader_snapshot`).

        The connection is reopened whenever a writer has swapped in a new file; a call still using the
        old version keeps it until it returns, so no reader ever fails because of a swap. Holding it open
        blocks nobody (writers never open the live file) and keeps DuckDB's buffer cache warm.
        """
        if not self.path.is_file():
            raise self._error("no embedding store here yet (write embeddings first)")
        try:
            with self._snapshots.lease() as (cursor, snapshot):
                yield cursor, snapshot
        except FileNotFoundError as error:
            if Path(error.filename or "") == self.path:
                raise self._error("no embedding store here yet (write embeddings first)") from error
            raise

    @property
    def _vector_cache(self) -> VectorIndexCache:
        """The in-memory indexes of the current file version (empty before a query)."""
        snapshot = self._snapshots.current
        return snapshot.index_cache if snapshot is not None else VectorIndexCache()

    def close(self) -> None:
        """Lets go of the read-only connection and its vector indexes (a later query reopens them).

        A query still running in another thread keeps its version until it returns.
        """
        self._snapshots.close()

    def sql(self, query: str, parameters: Sequence[Any] | None = None) -> pd.DataFrame:
        """Runs a read-only query (with bound ``?`` parameters) on the store and returns a DataFrame."""
        with self._reading() as (cursor, _):
            return cursor.execute(query, list(parameters or [])).df()

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
        with self._reading() as (cursor, _):
            return read_vectors(
                cursor, self.path, sample_ids,
                domain=domain, modality=modality, model_name=model_name, model_version=model_version,
            )  # fmt: skip

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
        check_nearest_arguments(self.path, vector, sample_id, domain, k)  # before opening the file
        with self._reading() as (cursor, snapshot):  # one file version for the whole call
            return find_nearest(
                cursor, self.path, snapshot.index_cache, self.vector_cache_mb, open_loader=snapshot.open_loader,
                vector=vector, sample_id=sample_id, k=k, domain=domain, modality=modality, model_name=model_name,
                model_version=model_version, filters=filters, exclude_query=exclude_query,
                include_sample_columns=include_sample_columns,
            )  # fmt: skip

    # ----------------------------------------------------------------------------------------- export

    def export_parquet(self, out_dir: str | Path) -> Path:
        """Exports the store to Parquet for other engines, partitioned by domain and model.

        Layout: ``embeddings_<D>/domain=<d>/model_name=<m>/model_version=<v>/*.parquet`` (``vec`` as a
        list of floats, since Parquet has no fixed-size arrays), ``runs.parquet``,
        ``samples_<domain>.parquet`` and ``manifest.json`` recording every table's dimension and row
        count. Read it back with :func:`shared.store.read_parquet_export`, which casts ``vec`` to
        ``FLOAT[D]``. The folder is built beside ``out_dir`` and renamed into place, replacing an earlier
        export.

        Returns:
            ``out_dir``.
        """
        return export_parquet(self.path, out_dir)
