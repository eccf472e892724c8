"""Querying a store: which model a query means, equality filters, stored vectors and exact k-NN.

Every function takes an open (read-only) connection and the store's path (for error messages).
Similarities are only meaningful between vectors of one model and version, so each query resolves to
exactly one ``(model_name, model_version, D)`` first and refuses an ambiguous one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from shared.store.schema import (
    DOMAIN_PATTERN,
    META_KEY_PATTERN,
    MIN_NORM,
    embedding_table,
    embedding_tables,
    quote,
    samples_table,
    store_error,
    table_columns,
)
from shared.store.vector_index import VectorIndexCache, nearest_in_memory


def resolve_model(
    connection: duckdb.DuckDBPyConnection,
    store_path: Path,
    domain: str,
    modality: str,
    model_name: str | None,
    model_version: str | None,
    dim: int | None,
) -> tuple[str, str, int]:
    """The single ``(model_name, model_version, D)`` a query refers to.

    Raises:
        StoreError: No model matches, or several do.
    """
    tables = embedding_tables(connection)
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
        raise store_error(store_path, f"no vectors for {wanted}")
    if len(candidates) > 1:
        listed = sorted(f"{name} {version} (D={d})" for name, version, d in candidates)
        raise store_error(
            store_path,
            f"vectors of several models match {wanted}: {listed}; pass model_name and model_version "
            "(similarities between different models' vectors are meaningless)",
        )
    return candidates.pop()


def filter_sql(
    connection: duckdb.DuckDBPyConnection, store_path: Path, domain: str, filters: Mapping[str, Any]
) -> tuple[list[str], list[Any], bool]:
    """SQL conditions (on ``e`` = embeddings, ``s`` = samples) and parameters for equality filters.

    Returns:
        ``(conditions, parameters, needs_samples)``; ``needs_samples`` is True when a condition reads
        the ``samples_<domain>`` table.
    """
    conditions: list[str] = []
    parameters: list[Any] = []
    sample_columns = {name.lower(): name for name in table_columns(connection, samples_table(domain))}
    needs_samples = False
    for key, value in filters.items():
        if not isinstance(key, str):
            raise store_error(store_path, f"filter keys must be strings; got {key!r}")
        if key.startswith("meta."):
            meta_key = key[len("meta.") :]
            if not META_KEY_PATTERN.match(meta_key):
                raise store_error(store_path, f"meta filter key {meta_key!r} must match {META_KEY_PATTERN.pattern}")
            expression = "json_extract_string(e.meta, ?)"
            parameters_for_expression: list[Any] = ["$." + meta_key]
            values = value if isinstance(value, list | tuple | set) else [value]
            values = [v if isinstance(v, str) or v is None else json.dumps(v) for v in values]
        else:
            if key.lower() not in sample_columns:
                known = sorted(sample_columns.values())
                raise store_error(
                    store_path,
                    f"filter {key!r} is neither 'meta.<key>' nor a column of samples_{domain} (columns: {known})",
                )
            expression = f"s.{quote(sample_columns[key.lower()])}"
            parameters_for_expression = []
            needs_samples = True
            values = list(value) if isinstance(value, list | tuple | set) else [value]
        if not values:
            raise store_error(store_path, f"filter {key!r} has an empty list of values")
        if len(values) == 1 and values[0] is None:
            conditions.append(f"{expression} IS NULL")
            parameters.extend(parameters_for_expression)
        else:
            conditions.append(f"{expression} IN ({', '.join('?' for _ in values)})")
            parameters.extend(parameters_for_expression + list(values))
    return conditions, parameters, needs_samples


def sample_columns(connection: duckdb.DuckDBPyConnection, store_path: Path, domain: str) -> list[str]:
    """Columns of ``samples_<domain>`` other than ``sample_id``.

    Raises:
        StoreError: The domain has no sample table.
    """
    columns = table_columns(connection, samples_table(domain))
    if not columns:
        raise store_error(store_path, f"samples_{domain} does not exist; upsert_samples first")
    return [column for column in columns if column != "sample_id"]


def read_vectors(
    connection: duckdb.DuckDBPyConnection,
    store_path: Path,
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
    model_name, model_version, dim = resolve_model(
        connection, store_path, domain, modality, model_name, model_version, None
    )
    ids = [str(sample_id) for sample_id in sample_ids]
    table = embedding_table(dim)
    result = connection.sql(
        f"SELECT sample_id, vec FROM {table} WHERE domain = ? AND modality = ? AND model_name = ? "  # noqa: S608
        "AND model_version = ? AND sample_id IN (SELECT unnest(?::VARCHAR[]))",
        params=[domain, modality, model_name, model_version, ids],
    ).to_arrow_table()
    found = dict(zip(result.column("sample_id").to_pylist(), range(result.num_rows), strict=True))
    missing = [sample_id for sample_id in ids if sample_id not in found]
    if missing:
        raise store_error(
            store_path, f"no {modality} vector of model {model_name} {model_version} for samples {missing[:5]}"
        )
    matrix = result.column("vec").combine_chunks().values.to_numpy().reshape(-1, dim)
    return matrix[[found[sample_id] for sample_id in ids]]


def check_nearest_arguments(store_path: Path, vector: Any, sample_id: str | None, domain: str, k: int) -> None:
    """Refuses a k-NN query without exactly one of ``vector``/``sample_id``, a bad domain name or ``k < 1``.

    Raises:
        StoreError: Naming the store and the argument.
    """
    if (vector is None) == (sample_id is None):
        raise store_error(store_path, "nearest needs exactly one of vector= or sample_id=")
    if not isinstance(domain, str) or not DOMAIN_PATTERN.match(domain):
        raise store_error(store_path, f"domain {domain!r} must match {DOMAIN_PATTERN.pattern}")
    if not isinstance(k, int) or k < 1:
        raise store_error(store_path, f"k must be a positive integer; got {k!r}")


def find_nearest(
    connection: duckdb.DuckDBPyConnection,
    store_path: Path,
    index_cache: VectorIndexCache,
    index_budget_mb: float,
    *,
    open_loader: Callable[[], duckdb.DuckDBPyConnection | None] | None = None,
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
    """Exact k nearest neighbours by cosine similarity (see :meth:`shared.store.EmbeddingStore.nearest`).

    Unfiltered queries rank in memory (``index_cache``, within ``index_budget_mb``); filtered ones rank in
    DuckDB, where the filter runs before ranking.
    """
    check_nearest_arguments(store_path, vector, sample_id, domain, k)
    if vector is not None:
        if hasattr(vector, "detach"):
            vector = vector.detach().float().cpu().numpy()
        query = np.asarray(vector, dtype=np.float64).reshape(-1)
        dim: int | None = query.shape[0]
    else:
        dim = None
    model_name, model_version, dim = resolve_model(
        connection, store_path, domain, modality, model_name, model_version, dim
    )
    if sample_id is not None:
        query = read_vectors(
            connection, store_path, [sample_id], domain=domain, modality=modality,
            model_name=model_name, model_version=model_version,
        )[0].astype(np.float64)  # fmt: skip
    norm = float(np.linalg.norm(query))
    if not math.isfinite(norm) or norm < MIN_NORM:
        raise store_error(store_path, "the query vector is zero, NaN or infinite")
    query = query / norm

    table = embedding_table(dim)
    identity = {"domain": domain, "modality": modality, "model_name": model_name, "model_version": model_version}
    if not filters:
        index = index_cache.load(
            connection, table, domain, modality, model_name, model_version, index_budget_mb, open_loader
        )
        if index is not None:
            rows = nearest_in_memory(index, query, k, excluded_sample=sample_id if exclude_query else None, **identity)
            if include_sample_columns:
                rows = _with_sample_columns(connection, store_path, domain, rows)
            return rows
    return _nearest_by_sql(
        connection, store_path, table, dim, query, k, identity, filters or {},
        sample_id if exclude_query else None, include_sample_columns,
    )  # fmt: skip


def _nearest_by_sql(
    connection: duckdb.DuckDBPyConnection,
    store_path: Path,
    table: str,
    dim: int,
    query: np.ndarray,
    k: int,
    identity: Mapping[str, str],
    filters: Mapping[str, Any],
    excluded_sample: str | None,
    include_sample_columns: bool,
) -> pd.DataFrame:
    """Top-k ranked by DuckDB's ``array_cosine_similarity``, filters applied before ranking."""
    domain = identity["domain"]
    conditions = ["e.domain = ?", "e.modality = ?", "e.model_name = ?", "e.model_version = ?"]
    parameters: list[Any] = [domain, identity["modality"], identity["model_name"], identity["model_version"]]
    filter_conditions, filter_parameters, needs_samples = filter_sql(connection, store_path, domain, filters)
    conditions += filter_conditions
    parameters += filter_parameters
    if excluded_sample is not None:
        conditions.append("e.sample_id <> ?")
        parameters.append(str(excluded_sample))
    join = ""
    sample_select = ""
    if needs_samples or include_sample_columns:
        columns = sample_columns(connection, store_path, domain)
        join = f"LEFT JOIN {samples_table(domain)} s ON s.sample_id = e.sample_id"
        if include_sample_columns:
            sample_select = "".join(f", s.{quote(column)} AS {quote('sample_' + column)}" for column in columns)
    statement = (
        f"SELECT e.sample_id, array_cosine_similarity(e.vec, ?::FLOAT[{dim}]) AS score, e.domain, "  # noqa: S608
        f"e.modality, e.model_name, e.model_version, e.run_id, e.meta{sample_select} "
        f"FROM {table} e {join} WHERE {' AND '.join(conditions)} "
        "ORDER BY score DESC, e.sample_id LIMIT ?"
    )
    frame = connection.execute(statement, [query.astype(np.float32).tolist(), *parameters, k]).df()
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    return frame


def _with_sample_columns(
    connection: duckdb.DuckDBPyConnection, store_path: Path, domain: str, rows: pd.DataFrame
) -> pd.DataFrame:
    """``rows`` with the columns of ``samples_<domain>`` added (prefixed ``sample_``), matched by sample id."""
    selected = ", ".join(
        f"{quote(column)} AS {quote('sample_' + column)}" for column in sample_columns(connection, store_path, domain)
    )
    extra = connection.execute(
        f"SELECT sample_id, {selected} FROM {samples_table(domain)} "  # noqa: S608
        "WHERE sample_id IN (SELECT unnest(?::VARCHAR[]))",
        [rows["sample_id"].tolist()],
    ).df()
    return rows.merge(extra, on="sample_id", how="left")
