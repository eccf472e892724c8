"""The store's layout: table names, the identifier rules that keep SQL safe, the DDL and catalogue lookups.

A store file holds ``runs`` (one row per run), one ``embeddings_<D>`` table per vector dimension D
(``vec FLOAT[D]``), ``samples_<domain>`` tables of per-domain sample attributes, and two views,
``all_embeddings`` and ``embedding_inventory`` (docs/store.md has the full schema). Identifiers (domain,
column and JSON key names) are checked against the patterns below and are the only text formatted into
SQL; every value is bound as a parameter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import duckdb

DEFAULT_STORE_PATH = Path("runs/embeddings.duckdb")

#: Domains become table names (``samples_<domain>``), so they are restricted to this pattern.
DOMAIN_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
#: Sample-table column names and JSON meta keys (dot-separated for nested keys).
COLUMN_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
META_KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62}){0,7}$")
#: DuckDB type names accepted for sample-table columns (from DESCRIBE of the caller's DataFrame).
COLUMN_TYPE_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]*( WITH TIME ZONE)?(\(\d+(, ?\d+)?\))?(\[\d*\])*$")
EMBEDDING_TABLE_PATTERN = re.compile(r"^embeddings_([1-9][0-9]{0,5})$")
MAX_DIM = 65_535
#: Vectors with an L2 norm below this are treated as zero (their direction is noise).
MIN_NORM = 1e-12

RUNS_DDL = """
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

INVENTORY_VIEW_DDL = """
CREATE OR REPLACE VIEW embedding_inventory AS
SELECT domain, modality, model_name, model_version, dim, count(*) AS num_vectors,
       count(DISTINCT run_id) AS num_runs, max(created_at) AS last_written
FROM all_embeddings GROUP BY ALL
"""

_EMPTY_ALL_EMBEDDINGS = (
    "SELECT NULL::VARCHAR AS sample_id, NULL::VARCHAR AS domain, NULL::VARCHAR AS modality, "
    "NULL::VARCHAR AS model_name, NULL::VARCHAR AS model_version, NULL::VARCHAR AS run_id, "
    "NULL::INTEGER AS dim, NULL::FLOAT[] AS vec, NULL::JSON AS meta, "
    "NULL::TIMESTAMP WITH TIME ZONE AS created_at WHERE false"
)


class StoreError(ValueError):
    """Bad input to the embedding store (the message names the store file and the problem)."""


def store_error(store_path: str | Path, message: str) -> StoreError:
    """A :class:`StoreError` whose message starts with the store file."""
    return StoreError(f"{store_path}: {message}")


def embedding_table(dim: int) -> str:
    """``embeddings_<dim>``, the table of D-dimensional vectors.

    Raises:
        StoreError: ``dim`` is outside ``[1, MAX_DIM]``.
    """
    if not 1 <= dim <= MAX_DIM:
        raise StoreError(f"vector dimension must be in [1, {MAX_DIM}]; got {dim}")
    return f"embeddings_{int(dim)}"


def samples_table(domain: str) -> str:
    """``samples_<domain>`` (``domain`` must already match :data:`DOMAIN_PATTERN`)."""
    return f"samples_{domain}"


def quote(identifier: str) -> str:
    """Quotes an identifier that already matched one of the identifier patterns."""
    return '"' + identifier + '"'


def embedding_tables(connection: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """``{table_name: D}`` for every embeddings table in the connection's current catalog, by D."""
    rows = connection.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = 'main'"
    ).fetchall()
    tables = {}
    for (name,) in rows:
        match = EMBEDDING_TABLE_PATTERN.match(name)
        if match:
            tables[name] = int(match.group(1))
    return dict(sorted(tables.items(), key=lambda item: item[1]))


def table_columns(connection: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    """``{column: type}`` of a table in the connection's current catalog (empty when it does not exist)."""
    rows = connection.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND table_name = ? ORDER BY column_index",
        [table],
    ).fetchall()
    return dict(rows)


def all_embeddings_select(tables: Mapping[str, int]) -> str:
    """The ``all_embeddings`` view's query: every ``{table: D}`` stacked, ``vec`` as ``FLOAT[]``, a ``dim`` column."""
    if not tables:
        return _EMPTY_ALL_EMBEDDINGS
    return " UNION ALL ".join(
        f"SELECT sample_id, domain, modality, model_name, model_version, run_id, {dim} AS dim, "  # noqa: S608
        f"vec::FLOAT[] AS vec, meta, created_at FROM {table}"
        for table, dim in tables.items()
    )
