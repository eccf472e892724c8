"""The in-memory index behind unfiltered k-NN: one model's vectors loaded once, ranked by one matrix product.

Exact, not approximate: the ranking equals DuckDB's ``array_cosine_similarity`` order (ties broken by
sample id). The store drops the cache whenever a writer swaps in a new file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

#: Rows per block when an index is loaded (64k x 512 float32 = 128 MiB at most in flight).
LOAD_BLOCK_ROWS = 65_536

#: Cache key: ``(table, domain, modality, model_name, model_version)``.
IndexKey = tuple[str, str, str, str, str]


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


class VectorIndexCache:
    """Models' vectors (:class:`ModelVectors`) loaded through Arrow, within a memory budget."""

    def __init__(self) -> None:
        self._entries: dict[IndexKey, ModelVectors] = {}
        self._loading = threading.Lock()  # concurrent first queries load a model once, not once each

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[IndexKey]:
        return iter(self._entries)

    def clear(self) -> None:
        """Drops every loaded model (the store file changed)."""
        self._entries.clear()

    def load(
        self,
        connection: duckdb.DuckDBPyConnection,
        table: str,
        domain: str,
        modality: str,
        model_name: str,
        model_version: str,
        budget_mb: float,
        open_loader: Callable[[], duckdb.DuckDBPyConnection | None] | None = None,
    ) -> ModelVectors | None:
        """One model's ids, identity columns and (N, D) float32 unit vectors, loaded once per store file.

        Args:
            connection: A connection to the file version the index is for.
            table: ``embeddings_<D>``.
            domain: Identity of the model's vectors.
            modality: See ``domain``.
            model_name: See ``domain``.
            model_version: See ``domain``.
            budget_mb: Memory allowed for all loaded models together.
            open_loader: Opens a short-lived connection to the same file version for the scan (its
                buffers are freed when it closes), or returns None; ``connection`` is used then.

        Returns:
            The loaded model, or None when it would not fit in ``budget_mb`` next to what is already
            loaded (a budget of 0 disables the cache).
        """
        key = (table, domain, modality, model_name, model_version)
        if key in self._entries:
            return self._entries[key]
        if budget_mb <= 0:
            return None
        with self._loading:
            if key in self._entries:
                return self._entries[key]
            loader = open_loader() if open_loader is not None else None
            try:
                return self._load(connection, loader or connection, key, budget_mb)
            finally:
                if loader is not None:
                    loader.close()

    def _load(
        self,
        connection: duckdb.DuckDBPyConnection,
        scanner: duckdb.DuckDBPyConnection,
        key: IndexKey,
        budget_mb: float,
    ) -> ModelVectors | None:
        table, domain, modality, model_name, model_version = key
        parameters = [domain, modality, model_name, model_version]
        where = "WHERE domain = ? AND modality = ? AND model_name = ? AND model_version = ?"
        count = connection.execute(f"SELECT count(*) FROM {table} {where}", parameters).fetchall()[0][0]  # noqa: S608
        dim = int(table.rsplit("_", 1)[1])
        cached_bytes = sum(entry.nbytes for entry in self._entries.values())
        if (cached_bytes + count * (dim * 4 + 128)) / 2**20 > budget_mb:
            return None
        # Filled block by block into one preallocated array: the process never holds the vectors twice
        # (a whole Arrow table plus its numpy copy was 2x, and DuckDB's result buffers on top of that).
        vectors = np.empty((count, dim), dtype=np.float32)
        sample_ids, run_ids, metas = [], [], []
        filled = 0
        reader = scanner.sql(
            f"SELECT sample_id, run_id, CAST(meta AS VARCHAR) AS meta, vec FROM {table} {where}",  # noqa: S608
            params=parameters,
        ).to_arrow_reader(LOAD_BLOCK_ROWS)
        for batch in reader:
            rows = batch.num_rows
            if filled + rows > count:  # cannot happen on one snapshot; refuse rather than write out of bounds
                raise RuntimeError(f"{table}: more vectors than counted while loading the index")
            block = batch.column("vec").flatten().to_numpy(zero_copy_only=False).reshape(rows, dim)
            vectors[filled : filled + rows] = block
            filled += rows
            sample_ids.append(batch.column("sample_id").to_numpy(zero_copy_only=False).astype(object))
            run_ids.append(batch.column("run_id").to_numpy(zero_copy_only=False).astype(object))
            metas.append(batch.column("meta").to_numpy(zero_copy_only=False).astype(object))
        empty = np.empty(0, dtype=object)
        self._entries[key] = ModelVectors(
            sample_ids=np.concatenate(sample_ids) if sample_ids else empty,
            run_ids=np.concatenate(run_ids) if run_ids else empty,
            metas=np.concatenate(metas) if metas else empty,
            vectors=vectors[:filled],
        )
        return self._entries[key]


def nearest_in_memory(
    index: ModelVectors,
    query: np.ndarray,
    k: int,
    *,
    domain: str,
    modality: str,
    model_name: str,
    model_version: str,
    excluded_sample: str | None,
) -> pd.DataFrame:
    """Exact top-k by one matrix-vector product over the loaded vectors (same order as the SQL path).

    Args:
        index: The model's vectors.
        query: A unit (D,) query vector.
        k: Number of neighbours.
        domain: Identity columns copied into the result.
        modality: See ``domain``.
        model_name: See ``domain``.
        model_version: See ``domain``.
        excluded_sample: A sample id left out of the result (the query sample), or None.

    Returns:
        ``rank, sample_id, score, domain, modality, model_name, model_version, run_id, meta``, best first.
    """
    scores = index.vectors @ query.astype(np.float32)
    ids = index.sample_ids
    if excluded_sample is not None:
        scores[ids == str(excluded_sample)] = -np.inf
    take = min(k + 1, len(scores))
    candidates = np.argpartition(-scores, take - 1)[:take] if take < len(scores) else np.arange(len(scores))
    order = sorted(candidates.tolist(), key=lambda i: (-float(scores[i]), str(ids[i])))
    chosen = [i for i in order if np.isfinite(scores[i])][:k]
    return pd.DataFrame(
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
