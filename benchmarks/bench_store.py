"""Top-10 cosine search through the DuckDB embedding store vs numpy brute force on the same vectors.

Loads N x D float32 unit vectors into a fresh store (timed), then times ``EmbeddingStore.nearest``
(exact search with ``array_cosine_similarity`` in DuckDB) against numpy (matmul over the normalized
matrix + ``argpartition``) for the same query vectors, asserting both return the same ids. Each side is
warmed up once (the store's first query opens its read-only connection and pages the table in), then
the median over ``--queries`` queries is reported. Ends with one JSON line; ratio = ours / peer time.

    python -m benchmarks.bench_store            # 1M x 512 (6 minutes on a busy 2-core machine, ~6 GB RSS)
    python -m benchmarks.bench_store --n 100000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._report import print_result
from shared.store import EmbeddingStore


def numpy_top_k(unit_vectors: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosine scores of the k best rows (unit_vectors rows are unit-norm)."""
    scores = unit_vectors @ (query / np.linalg.norm(query)).astype(unit_vectors.dtype)
    top = np.argpartition(-scores, k)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    return top, scores[top]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000, help="number of stored vectors")
    parser.add_argument("--dim", type=int, default=512, help="vector dimension")
    parser.add_argument("--k", type=int, default=10, help="neighbours per query")
    parser.add_argument("--queries", type=int, default=7, help="timed queries per side (median reported)")
    parser.add_argument("--batch", type=int, default=100_000, help="vectors per write transaction")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--dir", type=Path, default=None, help="where to build the store (default: a temp dir)")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    vectors = np.empty((args.n, args.dim), dtype=np.float32)
    for start in range(0, args.n, args.batch):
        block = rng.standard_normal((min(args.batch, args.n - start), args.dim), dtype=np.float32)
        vectors[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    sample_ids = np.array([f"s{i:07d}" for i in range(args.n)])

    with tempfile.TemporaryDirectory(dir=args.dir) as workdir:
        store = EmbeddingStore(Path(workdir) / "embeddings.duckdb")
        started = time.perf_counter()
        with store.writing() as writer:
            writer.register_run("bench", "bench", "random", "v1", config=vars(args) | {"dir": str(args.dir)})
            for start in range(0, args.n, args.batch):
                stop = min(args.n, start + args.batch)
                writer.write_embeddings(
                    domain="bench", modality="vector", model_name="random", model_version="v1", run_id="bench",
                    sample_ids=sample_ids[start:stop].tolist(), vectors=vectors[start:stop],
                )  # fmt: skip
        load_seconds = time.perf_counter() - started
        print(f"loaded {args.n:,} x {args.dim} vectors in {load_seconds:.1f} s", file=sys.stderr)

        queries = vectors[rng.integers(0, args.n, size=args.queries + 1)]
        noise = rng.standard_normal(queries.shape, dtype=np.float32) * np.float32(0.5 / np.sqrt(args.dim))
        queries = (queries + noise).astype(np.float32)  # a float64 query would make numpy upcast all N rows
        ours_times, peer_times = [], []
        for index, query in enumerate(queries):
            t0 = time.perf_counter()
            found = store.nearest(
                vector=query, k=args.k, domain="bench", modality="vector", model_name="random", model_version="v1"
            )
            t1 = time.perf_counter()
            top, scores = numpy_top_k(vectors, query, args.k)
            t2 = time.perf_counter()
            if found["sample_id"].tolist() != sample_ids[top].tolist():
                # Only near-ties (float32 rounding) may differ: every id the store returned must score,
                # by numpy, what the store says and at least numpy's k-th best score.
                rows = np.searchsorted(sample_ids, found["sample_id"].to_numpy())
                their_scores = vectors[rows] @ (query / np.linalg.norm(query))
                np.testing.assert_allclose(found["score"].to_numpy(), their_scores, atol=1e-5)
                assert their_scores.min() >= scores[-1] - 1e-5, "the store missed a true top-k neighbour"
            if index > 0:  # the first query of each side is the warm-up (ours: it builds the in-memory index)
                ours_times.append(t1 - t0)
                peer_times.append(t2 - t1)
            else:
                first_query_seconds = t1 - t0
        store.close()
        # The same queries ranked inside DuckDB (the path filtered queries take), for reference.
        sql_store = EmbeddingStore(store.path, vector_cache_mb=0)
        sql_times = []
        for query in queries[1:4]:
            t0 = time.perf_counter()
            sql_store.nearest(
                vector=query, k=args.k, domain="bench", modality="vector", model_name="random", model_version="v1"
            )
            sql_times.append(time.perf_counter() - t0)
        sql_store.close()

    ours, peer = statistics.median(ours_times), statistics.median(peer_times)
    print_result(
        "bench_store",
        f"top{args.k}_cosine_seconds_{args.n}x{args.dim}",
        ours,
        peer,
        ours / peer,
        peer_name="numpy matmul + argpartition",
        load_seconds=round(load_seconds, 2),
        load_vectors_per_second=round(args.n / load_seconds),
        first_query_seconds=round(first_query_seconds, 3),
        duckdb_ranking_seconds=round(statistics.median(sql_times), 4),
    )


if __name__ == "__main__":
    main()
