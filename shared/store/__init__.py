"""The DuckDB embedding store: every vector with its full identity, queryable by analysts and the explorer.

Layout of one store file (default ``runs/embeddings.duckdb``; the full schema is in docs/store.md):

- ``runs``: one row per training/export run (model identity, checkpoint hash, resolved config, git sha).
- ``embeddings_<D>``: one table per vector dimension D, ``vec FLOAT[D] NOT NULL`` (unit L2 norm),
  keyed by ``(sample_id, modality, model_name, model_version)``.
- ``samples_<domain>``: per-domain sample attributes (``sample_id`` primary key + any columns).
- Views: ``all_embeddings`` (every dimension, ``vec`` as ``FLOAT[]`` and a ``dim`` column) and
  ``embedding_inventory`` (row counts per domain, modality, model, version and dimension).

Modules, one job each:

- :mod:`~shared.store.schema`: table names, identifier rules, DDL, catalogue lookups, :class:`StoreError`.
- :mod:`~shared.store.writer`: :class:`StoreWriter` (validated batches, one transaction each) and
  :func:`~shared.store.writer.write_session` (private copy, atomic swap, writer lock).
- :mod:`~shared.store.readonly`: :func:`open_readonly`, the locked-down connection readers use.
- :mod:`~shared.store.query`: model resolution, filters, stored vectors, exact k-NN (SQL or in memory).
- :mod:`~shared.store.vector_index`: the in-memory index of one model's vectors.
- :mod:`~shared.store.parquet_export`: Parquet export and :func:`read_parquet_export`.
- :mod:`~shared.store.embedding_store`: :class:`EmbeddingStore`, the one object callers use.

Concurrency. DuckDB lets no other process open a file, not even read-only, while a writer holds it. So
writers never open the live file for writing: :meth:`EmbeddingStore.writing` copies the store to a
temporary file beside it, writes there (one transaction per batch), checkpoints, and swaps it into place
with :func:`shared.atomic_files.atomic_output` (fsync, rename, fsync of the folder). Readers use
short-lived read-only connections (:func:`open_readonly`) and see either the old or the new file, never a
half-written one; a writer killed mid-write leaves the live store untouched. Writers are serialized by a
lock file ``<name>.duckdb.lock``.

SQL safety. Identifiers (domain, column and JSON key names) are checked against strict patterns and are
the only text formatted into SQL; every value is bound as a parameter.
"""

from shared.store.embedding_store import EmbeddingStore
from shared.store.parquet_export import export_parquet, read_parquet_export
from shared.store.readonly import open_readonly
from shared.store.schema import (
    COLUMN_PATTERN,
    DEFAULT_STORE_PATH,
    DOMAIN_PATTERN,
    META_KEY_PATTERN,
    StoreError,
)
from shared.store.vector_index import ModelVectors
from shared.store.writer import StoreWriter

__all__ = [
    "COLUMN_PATTERN",
    "DEFAULT_STORE_PATH",
    "DOMAIN_PATTERN",
    "META_KEY_PATTERN",
    "EmbeddingStore",
    "ModelVectors",
    "StoreError",
    "StoreWriter",
    "export_parquet",
    "open_readonly",
    "read_parquet_export",
]
