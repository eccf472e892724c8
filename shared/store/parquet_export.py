"""Parquet export of a store for other engines (Spark, Polars, pandas), and reading an export back.

Layout of an export folder: ``embeddings_<D>/domain=<d>/model_name=<m>/model_version=<v>/*.parquet``
(``vec`` as a list of floats, since Parquet has no fixed-size arrays), ``runs.parquet``,
``samples_<domain>.parquet`` and ``manifest.json`` recording every table's kind, dimension and row count.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb

from shared.atomic_files import atomic_directory, write_text_atomically
from shared.store.schema import (
    DOMAIN_PATTERN,
    EMBEDDING_TABLE_PATTERN,
    INVENTORY_VIEW_DDL,
    StoreError,
    all_embeddings_select,
    embedding_tables,
    quote,
    store_error,
)

MANIFEST_FILE = "manifest.json"


def export_parquet(store_path: str | Path, out_dir: str | Path) -> Path:
    """Exports a store to Parquet, partitioned by domain and model (see the module docstring for the layout).

    The folder is built beside ``out_dir`` (every file fsynced), then renamed into place, replacing an
    earlier export; a failed export leaves the earlier one as it was. Read it back with
    :func:`read_parquet_export`, which casts ``vec`` to ``FLOAT[D]``.

    Args:
        store_path: The store file.
        out_dir: The export folder.

    Returns:
        ``out_dir``.

    Raises:
        StoreError: There is no store file, or the folder's path contains a quote character.
    """
    store_path, out_dir = Path(store_path), Path(out_dir)
    if "'" in str(out_dir.resolve()):
        raise store_error(store_path, f"export folder {out_dir} may not contain a quote character")
    if not store_path.is_file():
        raise store_error(store_path, "no embedding store here yet (write embeddings first)")
    with atomic_directory(out_dir) as staging:
        manifest = _copy_tables(store_path, staging)
        write_text_atomically(staging / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return out_dir


def _copy_tables(store_path: Path, staging: Path) -> dict[str, Any]:
    """Writes every table of the store into ``staging``; returns the manifest."""
    # An unrestricted read-only connection: COPY needs file access, which open_readonly forbids.
    connection = duckdb.connect(":memory:")
    try:
        connection.execute("ATTACH ? AS store (READ_ONLY)", [str(store_path)])
        connection.execute("USE store")
        manifest: dict[str, Any] = {"format": "domain-clip-suite embedding export", "version": 1, "tables": {}}
        for table, dim in embedding_tables(connection).items():
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
            rows = connection.execute(f"SELECT count(*) FROM {quote(table)}").fetchall()[0][0]  # noqa: S608
            connection.execute(
                f"COPY {quote(table)} TO '{staging / (table + '.parquet')}' (FORMAT parquet)"  # noqa: S608
            )
            kind = "runs" if table == "runs" else "samples"
            manifest["tables"][table] = {"kind": kind, "rows": rows, "path": table + ".parquet"}
    finally:
        connection.close()
    return manifest


def read_parquet_export(export_dir: str | Path) -> duckdb.DuckDBPyConnection:
    """Opens a Parquet export as an in-memory DuckDB database with the store's table names.

    Every ``embeddings_<D>`` view casts ``vec`` back to ``FLOAT[D]`` (the dimension comes from the
    manifest), so the store's queries run unchanged; ``all_embeddings`` is recreated too.

    Args:
        export_dir: A folder written by :func:`export_parquet`.

    Returns:
        An in-memory connection with views ``runs``, ``samples_<domain>``, ``embeddings_<D>``,
        ``all_embeddings`` and ``embedding_inventory``.

    Raises:
        StoreError: If the manifest is missing or malformed, or a table's row count differs from it.
    """
    export_dir = Path(export_dir)
    manifest_path = export_dir / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text())
        tables = manifest["tables"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise StoreError(f"{manifest_path}: not a readable export manifest ({error})") from error
    if "'" in str(export_dir):
        raise StoreError(f"{export_dir}: export folder names may not contain a quote character")
    connection = duckdb.connect(":memory:")
    embedding_views = {}
    for table, entry in sorted(tables.items()):
        kind = entry.get("kind") if isinstance(entry, dict) else None
        if kind == "embeddings":
            match = EMBEDDING_TABLE_PATTERN.match(table)
            if not match or int(match.group(1)) != entry.get("dim"):
                raise StoreError(f"{manifest_path}: table {table!r} does not match its dimension {entry.get('dim')}")
            dim = int(match.group(1))
            source = export_dir / table
            parquet = f"read_parquet('{source}/**/*.parquet', hive_partitioning = true)"
            select = (
                "SELECT sample_id, domain, modality, model_name, model_version, run_id, "  # noqa: S608
                f"vec::FLOAT[{dim}] AS vec, meta::JSON AS meta, created_at FROM {parquet}"
            )
            embedding_views[table] = dim
        elif kind in ("runs", "samples") and (table == "runs" or DOMAIN_PATTERN.match(table[len("samples_") :])):
            select = f"SELECT * FROM read_parquet('{export_dir / (table + '.parquet')}')"  # noqa: S608
        else:
            raise StoreError(f"{manifest_path}: unexpected table entry {table!r}")
        connection.execute(f"CREATE VIEW {quote(table)} AS {select}")
        rows = connection.execute(f"SELECT count(*) FROM {quote(table)}").fetchall()[0][0]  # noqa: S608
        if rows != entry.get("rows"):
            raise StoreError(f"{export_dir / table}: {rows} rows, but the manifest says {entry.get('rows')}")
    if embedding_views:
        connection.execute(f"CREATE VIEW all_embeddings AS {all_embeddings_select(embedding_views)}")
        connection.execute(INVENTORY_VIEW_DDL)
    return connection
