"""Top-10 cosine search through the DuckDB embedding store vs numpy brute force, with the store's peak memory.

Builds a store of N x D float32 unit vectors (timed), then, in a fresh process that holds nothing else,
times ``EmbeddingStore.nearest`` (exact search: the model's vectors loaded block by block into one
array, ranked by a matrix-vector product) and records that process's peak RSS. The same queries are
ranked by numpy (matmul over the normalized matrix + ``argpartition``) in this process, and both must
return the same ids. Each side's first query is a warm-up (ours: it loads the index); the median over
``--queries`` queries is reported. Ends with one JSON line; ratio = ours / peer time, and
``store_peak_over_vectors`` = the query process's peak RSS / the vectors' size (target: at most 1.5).

    python -m benchmarks.bench_store            # 1M x 512 (~10 minutes on a busy 2-core machine)
    python -m benchmarks.bench_store --n 100000
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._report import peak_rss_mb, print_result
from shared.store import EmbeddingStore


def numpy_top_k(unit_vectors: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosine scores of the k best rows (unit_vectors rows are unit-norm)."""
    scores = unit_vectors @ (query / np.linalg.norm(query)).astype(unit_vectors.dtype)
    top = np.argpartition(-scores, k)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    return top, scores[top]


def query_in_fresh_process(store_path: Path, queries_path: Path, k: int) -> dict:
    """Runs the queries through the store in a child process; returns its ids, times and peak RSS (MiB)."""
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_store", "--query_store", str(store_path),
         "--query_file", str(queries_path), "--k", str(k)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_store_queries(store_path: Path, queries_path: Path, k: int) -> None:
    """The child's side: every query through ``EmbeddingStore.nearest``; prints one JSON line."""
    queries = np.load(queries_path)
    store = EmbeddingStore(store_path)
    found, times = [], []
    for query in queries:
        started = time.perf_counter()
        frame = store.nearest(
            vector=query, k=k, domain="bench", modality="vector", model_name="random", model_version="v1"
        )
        times.append(time.perf_counter() - started)
        found.append({"ids": frame["sample_id"].tolist(), "scores": frame["score"].tolist()})
    store.close()
    print(json.dumps({"found": found, "seconds": times, "peak_rss_mb": own_peak_rss_mb()}))


def own_peak_rss_mb() -> float:
    """This process's peak RSS in MiB since its ``exec`` (``VmHWM``; ``ru_maxrss`` would include the parent's
    peak, which a forked child inherits)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return peak_rss_mb()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000, help="number of stored vectors")
    parser.add_argument("--dim", type=int, default=512, help="vector dimension")
    parser.add_argument("--k", type=int, default=10, help="neighbours per query")
    parser.add_argument("--queries", type=int, default=7, help="timed queries per side (median reported)")
    parser.add_argument("--batch", type=int, default=100_000, help="vectors per write transaction")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--dir", type=Path, default=None, help="where to build the store (default: a temp dir)")
    parser.add_argument("--query_store", type=Path, default=None, help=argparse.SUPPRESS)  # the child's role
    parser.add_argument("--query_file", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.query_store is not None:
        run_store_queries(args.query_store, args.query_file, args.k)
        return

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
        store.close()
        queries_path = Path(workdir) / "queries.npy"
        np.save(queries_path, queries)
        child = query_in_fresh_process(store.path, queries_path, args.k)
        ours_times, peer_times = child["seconds"][1:], []
        first_query_seconds = child["seconds"][0]
        for index, (query, answer) in enumerate(zip(queries, child["found"], strict=True)):
            t0 = time.perf_counter()
            top, scores = numpy_top_k(vectors, query, args.k)
            if index > 0:
                peer_times.append(time.perf_counter() - t0)
            if answer["ids"] != sample_ids[top].tolist():
                # Only near-ties (float32 rounding) may differ: every id the store returned must score,
                # by numpy, what the store says and at least numpy's k-th best score.
                rows = np.searchsorted(sample_ids, np.asarray(answer["ids"]))
                their_scores = vectors[rows] @ (query / np.linalg.norm(query))
                np.testing.assert_allclose(answer["scores"], their_scores, atol=1e-5)
                assert their_scores.min() >= scores[-1] - 1e-5, "the store missed a true top-k neighbour"
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
        vectors_mb=round(vectors.nbytes / 2**20, 1),
        store_query_peak_rss_mb=round(child["peak_rss_mb"], 1),
        store_peak_over_vectors=round(child["peak_rss_mb"] / (vectors.nbytes / 2**20), 3),
    )


if __name__ == "__main__":
    main()
