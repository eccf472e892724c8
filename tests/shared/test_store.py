"""The DuckDB embedding store: round trips, validation, idempotence, k-NN, export, readers and a killed writer."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from shared.store import EmbeddingStore, StoreError, open_readonly, read_parquet_export

REPO_ROOT = Path(__file__).resolve().parents[2]
DIM = 16


def _ids(n, start=0, prefix="s"):
    return [f"{prefix}{i:04d}" for i in range(start, start + n)]


def _write(store, vectors, ids, *, modality="image", model="m", version="v1", metadata=None, domain="astro"):
    return store.write_embeddings(
        domain=domain, modality=modality, model_name=model, model_version=version, run_id="run1",
        sample_ids=ids, vectors=vectors, metadata=metadata,
    )  # fmt: skip


@pytest.fixture
def store(tmp_path):
    store = EmbeddingStore(tmp_path / "embeddings.duckdb")
    store.register_run("run1", "astro", "m", "v1", config={"trainer": {"lr": 0.001}}, git_sha="abc")
    yield store
    store.close()


def _count(path, table=f"embeddings_{DIM}"):
    with open_readonly(path) as connection:
        return connection.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]  # noqa: S608


def test_vectors_round_trip_normalized_as_fixed_size_arrays(store):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, DIM)) * rng.uniform(0.1, 10, size=(30, 1))
    assert _write(store, x, _ids(30), metadata=[{"i": i} for i in range(30)]) == 30
    back = store.get_vectors(_ids(30)[::-1], domain="astro", modality="image")
    np.testing.assert_allclose(back, (x / np.linalg.norm(x, axis=1, keepdims=True))[::-1], rtol=1e-6)
    with open_readonly(store.path) as connection:
        types = dict(
            connection.execute(
                "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ?", [f"embeddings_{DIM}"]
            ).fetchall()
        )
        assert types["vec"] == f"FLOAT[{DIM}]"
        row = connection.execute(
            "SELECT domain, modality, model_name, model_version, run_id, meta->>'i' FROM all_embeddings "
            "WHERE sample_id = 's0007'"
        ).fetchall()
        assert row == [("astro", "image", "m", "v1", "run1", "7")]
        run = connection.execute("SELECT config_json->>'$.trainer.lr', git_sha FROM runs").fetchall()
        assert run == [("0.001", "abc")]


def test_rewriting_replaces_instead_of_duplicating(store):
    rng = np.random.default_rng(1)
    _write(store, rng.standard_normal((10, DIM)), _ids(10))
    new = rng.standard_normal((10, DIM))
    _write(store, new, _ids(10))
    assert _count(store.path) == 10
    np.testing.assert_allclose(
        store.get_vectors(["s0003"], domain="astro", modality="image")[0], new[3] / np.linalg.norm(new[3]), rtol=1e-6
    )
    inventory = store.sql("SELECT num_vectors, dim FROM embedding_inventory")
    assert inventory.to_dict("records") == [{"num_vectors": 10, "dim": DIM}]


@pytest.mark.parametrize(
    ("vectors", "ids", "kwargs", "message"),
    [
        (np.vstack([np.ones((2, DIM)), np.zeros((1, DIM))]), _ids(3), {}, "zero"),
        (np.vstack([np.ones((2, DIM)), np.full((1, DIM), np.nan)]), _ids(3), {}, "NaN"),
        (np.ones((3, DIM)), ["a", "b", "a"], {}, "duplicate"),
        (np.ones((3, DIM)), _ids(2), {}, "3 vectors for 2"),
        (np.ones((2, DIM)), _ids(2), {"domain": "astro; DROP TABLE runs"}, "must match"),
        (np.ones((2, DIM)), _ids(2), {"metadata": [{"x": float("nan")}, None]}, "JSON"),
        ([[1.0, 2.0], [1.0]], _ids(2), {}, "rectangular"),
    ],
)
def test_bad_batches_are_rejected_whole_with_a_clear_error(store, vectors, ids, kwargs, message):
    _write(store, np.ones((1, DIM)), ["keep"])
    before = store.path.read_bytes()
    with pytest.raises(StoreError, match=message) as error:
        _write(store, vectors, ids, **kwargs)
    assert str(store.path) in str(error.value)
    assert store.path.read_bytes() == before
    assert not store.temporary_files()


def test_a_model_cannot_change_dimension_and_runs_must_be_registered(store):
    _write(store, np.ones((2, DIM)), _ids(2))
    with pytest.raises(StoreError, match=f"dimension {DIM}"):
        _write(store, np.ones((2, DIM + 1)), _ids(2, start=5))
    with pytest.raises(StoreError, match="not registered"):
        store.write_embeddings(domain="astro", modality="image", model_name="m", model_version="v1",
                               run_id="nope", sample_ids=["x"], vectors=np.ones((1, DIM)))  # fmt: skip


def test_one_transaction_per_batch_inside_a_writing_session(store):
    with store.writing() as writer:
        writer.write_embeddings(domain="astro", modality="image", model_name="m", model_version="v1",
                                run_id="run1", sample_ids=_ids(5), vectors=np.ones((5, DIM)))  # fmt: skip
        with pytest.raises(StoreError):
            writer.write_embeddings(domain="astro", modality="image", model_name="m", model_version="v1",
                                    run_id="run1", sample_ids=_ids(3, 5), vectors=np.zeros((3, DIM)))  # fmt: skip
    assert _count(store.path) == 5
    # An exception escaping the session discards everything written in it.
    with pytest.raises(RuntimeError), store.writing() as writer:
        writer.write_embeddings(domain="astro", modality="image", model_name="m", model_version="v1",
                                run_id="run1", sample_ids=_ids(5, 10), vectors=np.ones((5, DIM)))  # fmt: skip
        raise RuntimeError("export failed")
    assert _count(store.path) == 5
    assert not store.temporary_files()


def _brute_force(x, query, allowed, k):
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    scores = unit @ (query / np.linalg.norm(query))
    order = sorted((i for i in allowed), key=lambda i: -scores[i])[:k]
    return order, scores[order]


@pytest.fixture
def filled(store):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((60, DIM))
    ids = _ids(60)
    _write(
        store, x, ids, metadata=[{"survey": ["A", "B", "C"][i % 3], "quality": {"ok": i % 2 == 0}} for i in range(60)]
    )
    _write(store, rng.standard_normal((60, DIM)), ids, modality="text")
    frame = pd.DataFrame({"sample_id": ids, "split": ["train", "test"] * 30, "label": [i % 4 for i in range(60)]})
    store.upsert_samples("astro", frame)
    return store, x, ids


def test_nearest_by_vector_matches_brute_force_with_filters(filled):
    store, x, ids = filled
    query = np.random.default_rng(3).standard_normal(DIM)
    found = store.nearest(vector=query, k=7, domain="astro", modality="image")
    order, scores = _brute_force(x, query, range(60), 7)
    assert found["sample_id"].tolist() == [ids[i] for i in order]
    np.testing.assert_allclose(found["score"], scores, rtol=1e-5)
    assert found["rank"].tolist() == list(range(1, 8))

    allowed = [i for i in range(60) if i % 2 == 1 and i % 3 in (0, 2) and (i % 4) in (1, 3)]
    filtered = store.nearest(
        vector=query, k=5, domain="astro", modality="image",
        filters={"split": "test", "meta.survey": ["A", "C"], "label": [1, 3]}, include_sample_columns=True,
    )  # fmt: skip
    order, _ = _brute_force(x, query, allowed, 5)
    assert filtered["sample_id"].tolist() == [ids[i] for i in order]
    assert set(filtered["sample_split"]) == {"test"}
    nested = store.nearest(vector=query, k=60, domain="astro", modality="image", filters={"meta.quality.ok": True})
    assert sorted(nested["sample_id"]) == [ids[i] for i in range(0, 60, 2)]


def test_nearest_by_sample_id_excludes_the_query_and_uses_its_modality(filled):
    store, x, ids = filled
    found = store.nearest(sample_id="s0010", k=3, domain="astro", modality="image", model_name="m")
    order, _ = _brute_force(x, x[10], [i for i in range(60) if i != 10], 3)
    assert found["sample_id"].tolist() == [ids[i] for i in order]
    with_self = store.nearest(sample_id="s0010", k=1, domain="astro", modality="image", exclude_query=False)
    assert with_self["sample_id"].tolist() == ["s0010"]
    assert with_self["score"][0] == pytest.approx(1.0, abs=1e-6)


def test_nearest_rejects_ambiguity_unknown_names_and_injection(filled):
    store, _, _ = filled
    store.register_run("run2", "astro", "other", "v9")
    store.write_embeddings(domain="astro", modality="image", model_name="other", model_version="v9",
                           run_id="run2", sample_ids=["z"], vectors=np.ones((1, DIM)))  # fmt: skip
    query = np.ones(DIM)
    with pytest.raises(StoreError, match="several models"):
        store.nearest(vector=query, domain="astro", modality="image")
    assert len(store.nearest(vector=query, domain="astro", modality="image", model_name="other")) == 1
    with pytest.raises(StoreError, match="no vectors"):
        store.nearest(vector=np.ones(DIM + 2), domain="astro", modality="image", model_name="m")
    with pytest.raises(StoreError, match="neither"):
        store.nearest(vector=query, domain="astro", modality="image", model_name="m", filters={"split; --": "x"})
    with pytest.raises(StoreError, match="must match"):
        store.nearest(vector=query, domain="astro", modality="image", model_name="m", filters={"meta.a'b": 1})
    injected = store.nearest(
        vector=query, domain="astro", modality="image", model_name="m", filters={"split": "x' OR '1'='1"}
    )
    assert injected.empty
    with pytest.raises(StoreError, match="zero"):
        store.nearest(vector=np.zeros(DIM), domain="astro", modality="image", model_name="m")


def test_upsert_samples_updates_adds_columns_and_keeps_others(store):
    store.upsert_samples("news", pd.DataFrame({"sample_id": ["a", "b"], "label": ["fake", "real"], "n": [1, 2]}))
    store.upsert_samples(
        "news", pd.DataFrame({"sample_id": ["a", "c"], "label": ["real", "fake"], "lang": ["en", "zh"]})
    )
    rows = store.sql("SELECT sample_id, label, n, lang FROM samples_news ORDER BY sample_id")
    assert rows.astype(object).where(rows.notna(), None).values.tolist() == [
        ["a", "real", 1, "en"], ["b", "real", 2, None], ["c", "fake", None, "zh"],
    ]  # fmt: skip
    with pytest.raises(StoreError, match="column names"):
        store.upsert_samples("news", pd.DataFrame({"sample_id": ["a"], 'x"; DROP': [1]}))
    with pytest.raises(StoreError, match="duplicate"):
        store.upsert_samples("news", pd.DataFrame({"sample_id": ["a", "a"]}))


def test_readonly_connections_are_locked_down(filled):
    store, _, _ = filled
    with open_readonly(store.path) as connection:
        assert connection.execute("SELECT count(*) FROM samples_astro").fetchall() == [(60,)]
        for statement, error in [
            ("CREATE TABLE t (x INT)", duckdb.Error),
            ("SELECT * FROM read_csv('/etc/hostname')", duckdb.Error),
            ("SET enable_external_access = true", duckdb.Error),
            (f"COPY runs TO '{store.path.parent / 'leak.csv'}'", duckdb.Error),
        ]:
            with pytest.raises(error):
                connection.execute(statement)
    assert not (store.path.parent / "leak.csv").exists()
    with pytest.raises(StoreError, match="no embedding store"):
        open_readonly(store.path.parent / "missing.duckdb")


def test_parquet_export_round_trips_with_fixed_dimension(filled, tmp_path):
    store, x, ids = filled
    store.register_run("run3", "news", "tiny", "v1")
    store.write_embeddings(domain="news", modality="text", model_name="tiny", model_version="v1",
                           run_id="run3", sample_ids=["n1", "n2"], vectors=np.eye(2, 8))  # fmt: skip
    out = store.export_parquet(tmp_path / "export")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tables"][f"embeddings_{DIM}"] == {
        "kind": "embeddings",
        "dim": DIM,
        "rows": 120,
        "path": f"embeddings_{DIM}",
    }
    assert (out / f"embeddings_{DIM}" / "domain=astro" / "model_name=m" / "model_version=v1").is_dir()
    connection = read_parquet_export(out)
    types = dict(connection.execute("SELECT column_name, column_type FROM (DESCRIBE embeddings_16)").fetchall())
    assert types["vec"] == f"FLOAT[{DIM}]"
    table = connection.sql(
        "SELECT sample_id, vec FROM embeddings_16 WHERE modality = 'image' ORDER BY sample_id"
    ).to_arrow_table()
    vectors = table.column("vec").combine_chunks().values.to_numpy().reshape(-1, DIM)
    np.testing.assert_allclose(vectors, x / np.linalg.norm(x, axis=1, keepdims=True), rtol=1e-6)
    assert connection.execute("SELECT count(*), count(DISTINCT dim) FROM all_embeddings").fetchall() == [(122, 2)]
    assert connection.execute("SELECT count(*) FROM samples_astro").fetchall() == [(60,)]
    # A second export replaces the first; a tampered manifest is caught on read.
    store.export_parquet(out)
    manifest["tables"]["runs"]["rows"] = 99
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="manifest says 99"):
        read_parquet_export(out)


def _run_python(script: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *args], env=env)


def _wait_for(path: Path, process: subprocess.Popen) -> None:
    while not path.exists():
        assert process.poll() is None, f"helper process exited early with {process.returncode}"
        time.sleep(0.05)


READER = """
    import json, os, sys
    from pathlib import Path
    import numpy as np
    from shared.store import EmbeddingStore, open_readonly
    store_path, progress, stop, report = map(Path, sys.argv[1:5])
    store = EmbeddingStore(store_path)
    counts, errors = [], []
    while True:
        finishing = stop.exists()
        try:
            with open_readonly(store_path) as connection:
                counts.append(connection.execute("SELECT count(*) FROM embeddings_16").fetchall()[0][0])
            found = store.nearest(vector=np.ones(16), k=3, domain="astro", modality="image")
            assert len(found) == 3
        except Exception as error:  # any lock conflict or torn read is a failure to report
            errors.append(repr(error))
        Path(f"{progress}.tmp").write_text(str(counts[-1] if counts else -1))
        os.replace(f"{progress}.tmp", progress)
        if finishing:
            break
    report.write_text(json.dumps({"counts": counts, "errors": errors}))
"""


def _wait_until_reader_saw(progress: Path, count: int, reader: subprocess.Popen) -> None:
    while not (progress.exists() and int(progress.read_text()) >= count):
        assert reader.poll() is None, f"reader exited early with {reader.returncode}"
        time.sleep(0.02)


def test_a_reader_process_runs_queries_throughout_an_export(store, tmp_path):
    _write(store, np.random.default_rng(4).standard_normal((100, DIM)), _ids(100))
    progress, stop, report = tmp_path / "progress", tmp_path / "stop", tmp_path / "report.json"
    reader = _run_python(READER, str(store.path), str(progress), str(stop), str(report))
    try:
        _wait_until_reader_saw(progress, 100, reader)
        rng = np.random.default_rng(5)
        for batch in range(1, 7):
            with store.writing() as writer:
                for part in range(2):  # two transactions per swap, while the reader keeps querying
                    writer.write_embeddings(
                        domain="astro", modality="image", model_name="m", model_version="v1", run_id="run1",
                        sample_ids=_ids(100, start=100 * (2 * batch + part)), vectors=rng.standard_normal((100, DIM)),
                    )  # fmt: skip
            _wait_until_reader_saw(progress, 100 + 200 * batch, reader)
        stop.touch()
        assert reader.wait(timeout=120) == 0
    finally:
        if reader.poll() is None:
            reader.kill()
    result = json.loads(report.read_text())
    assert result["errors"] == []
    assert set(result["counts"]) == {100 + 200 * b for b in range(7)}  # every swap seen, never a partial one
    assert result["counts"] == sorted(result["counts"])


WRITER = """
    import sys
    from pathlib import Path
    import numpy as np
    from shared.store import EmbeddingStore
    store_path, started = Path(sys.argv[1]), Path(sys.argv[2])
    store = EmbeddingStore(store_path)
    rng = np.random.default_rng(6)
    with store.writing() as writer:
        for batch in range(40):
            writer.write_embeddings(
                domain="astro", modality="image", model_name="m", model_version="v1", run_id="run1",
                sample_ids=[f"k{batch}-{i}" for i in range(500)], vectors=rng.standard_normal((500, 16)),
            )
            started.touch()
"""


@pytest.mark.parametrize("delay_s", [0.0, 0.4])
def test_a_writer_killed_mid_write_leaves_the_store_as_before(store, tmp_path, delay_s):
    _write(store, np.random.default_rng(7).standard_normal((50, DIM)), _ids(50))
    before = store.path.read_bytes()
    started = tmp_path / "started"
    writer = _run_python(WRITER, str(store.path), str(started))
    try:
        _wait_for(started, writer)
        time.sleep(delay_s)
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.wait(timeout=60)
    count = _count(store.path)
    assert count in (50, 50 + 40 * 500)  # as before, or (if it finished first) fully updated
    if count == 50:
        assert store.path.read_bytes() == before
        assert store.temporary_files()  # the killed writer's private copy is left behind
    # The lock died with the writer and its leftovers are cleared by the next writer.
    _write(store, np.ones((1, DIM)), ["after"])
    assert _count(store.path) == count + 1
    assert not store.temporary_files()


def test_float32_vectors_too_large_to_square_are_still_normalized(store):
    huge = np.full((2, DIM), 3e30, dtype=np.float32)
    huge[1, 0] = -3e30
    _write(store, huge, _ids(2))
    back = store.get_vectors(_ids(2), domain="astro", modality="image")
    expected = huge.astype(np.float64) / np.linalg.norm(huge.astype(np.float64), axis=1, keepdims=True)
    np.testing.assert_allclose(back, expected, rtol=1e-6)


def test_a_foreign_write_ahead_log_blocks_writers_with_a_clear_error(store):
    _write(store, np.ones((1, DIM)), ["a"])
    wal = Path(f"{store.path}.wal")
    wal.write_bytes(b"left by another program")
    with pytest.raises(StoreError, match="open for writing"):
        _write(store, np.ones((1, DIM)), ["b"])
    wal.unlink()
    _write(store, np.ones((1, DIM)), ["b"])
    assert _count(store.path) == 2


def test_in_memory_index_and_sql_ranking_agree_and_the_index_follows_swaps(tmp_path):
    """The cached exact index gives the same neighbours as DuckDB's ranking, and sees a newly swapped file."""
    path = tmp_path / "embeddings.duckdb"
    rng = np.random.default_rng(3)
    ids = [f"s{i:03d}" for i in range(200)]
    writer_store = EmbeddingStore(path)
    with writer_store.writing() as writer:
        writer.register_run("r", "astro", "m", "v1", config={})
        writer.write_embeddings(
            domain="astro", modality="photometry", model_name="m", model_version="v1", run_id="r",
            sample_ids=ids, vectors=rng.standard_normal((200, 24)).astype(np.float32),
            metadata=[{"i": i} for i in range(200)],
        )  # fmt: skip
        writer.upsert_samples("astro", pd.DataFrame({"sample_id": ids, "label": [i % 4 for i in range(200)]}))
    cached, uncached = EmbeddingStore(path), EmbeddingStore(path, vector_cache_mb=0)
    query = rng.standard_normal(24)
    for kwargs in ({"vector": query}, {"sample_id": "s017", "include_sample_columns": True}):
        fast = cached.nearest(k=7, domain="astro", modality="photometry", **kwargs)
        slow = uncached.nearest(k=7, domain="astro", modality="photometry", **kwargs)
        assert fast["sample_id"].tolist() == slow["sample_id"].tolist()
        assert np.allclose(fast["score"], slow["score"], atol=1e-5)
        assert fast.columns.tolist() == slow.columns.tolist()
    assert cached._vector_cache  # the unfiltered queries went through the in-memory index
    with writer_store.writing() as writer:
        writer.write_embeddings(
            domain="astro", modality="photometry", model_name="m", model_version="v1", run_id="r",
            sample_ids=["new"], vectors=query.astype(np.float32)[None, :],
        )  # fmt: skip
    assert cached.nearest(vector=query, k=1, domain="astro", modality="photometry")["sample_id"].tolist() == ["new"]


def test_a_file_that_is_not_a_store_is_refused_naming_it(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.duckdb"
    bogus.write_text("not a database")
    store = EmbeddingStore(bogus)
    with pytest.raises(StoreError, match=f"{bogus}: not a DuckDB database file"):
        store.sql("SELECT 1")
    with pytest.raises(StoreError, match="not a DuckDB database file"), store.writing():
        pass
    assert bogus.read_text() == "not a database"  # nothing written over it


def _write_generation(store: EmbeddingStore, generation: int, candidates: int = 40) -> None:
    """All vectors rewritten in one swap, tagged with ``generation``; sample ``q`` equals one candidate's vector."""
    rng = np.random.default_rng(generation)
    vectors = rng.standard_normal((candidates, 8)).astype(np.float32)
    twin = generation % candidates
    ids = [f"c{i:02d}" for i in range(candidates)] + ["q"]
    with store.writing() as writer:
        writer.write_embeddings(
            domain="astro", modality="photometry", model_name="m", model_version="v1", run_id="r",
            sample_ids=ids, vectors=np.vstack([vectors, vectors[twin]]),
            metadata=[{"generation": generation}] * len(ids),
        )  # fmt: skip


def test_readers_never_fail_and_see_one_version_while_a_writer_swaps(tmp_path):
    """8 reader threads query while a writer swaps the file again and again: no error, every answer consistent.

    Four threads share one store object (one cached connection), four open a store object per call as the
    explorer does.

    A sample-id query reads the query vector and ranks the candidates; both must come from one file version
    (``q`` is a copy of candidate ``c<generation>`` in every version, so its nearest neighbour names the
    version it was read from).
    """
    import threading

    path = tmp_path / "embeddings.duckdb"
    writer_store = EmbeddingStore(path)
    writer_store.register_run("r", "astro", "m", "v1", config={})
    _write_generation(writer_store, 0)
    shared = EmbeddingStore(path, memory_limit="256MB", threads=1)
    errors: list[BaseException] = []
    answers = []
    stop = threading.Event()

    def read(shared_object: bool) -> None:
        while not stop.is_set():
            store = shared if shared_object else EmbeddingStore(path, memory_limit="256MB", threads=1)
            try:
                found = store.nearest(sample_id="q", k=3, domain="astro", modality="photometry")
                by_vector = store.nearest(vector=np.ones(8), k=2, domain="astro", modality="photometry")
                answers.append((found, by_vector))
            except BaseException as error:  # noqa: BLE001 — every failure counts
                errors.append(error)
            finally:
                if not shared_object:
                    store.close()

    readers = [threading.Thread(target=read, args=(i % 2 == 0,)) for i in range(8)]
    for thread in readers:
        thread.start()
    swaps = 0
    try:
        while swaps < 10:
            swaps += 1
            _write_generation(writer_store, swaps)
    finally:
        stop.set()
        for thread in readers:
            thread.join(timeout=60)
    shared.close()
    assert not errors, f"{len(errors)} of {len(errors) + len(answers)} reader calls failed, first: {errors[0]!r}"
    assert len(answers) >= 8
    seen_generations = set()
    for found, by_vector in answers:
        generations = {json.loads(meta)["generation"] for meta in [*found["meta"], *by_vector["meta"][:0]]}
        assert len(generations) == 1, generations
        generation = generations.pop()
        seen_generations.add(generation)
        assert found["sample_id"].iloc[0] == f"c{generation % 40:02d}"
        assert found["score"].iloc[0] == pytest.approx(1.0, abs=1e-5)
    assert len(seen_generations) > 1  # the readers really ran across swaps


def test_read_only_connections_leave_no_spill_folder(tmp_path):
    """Readers (spilling or not) leave nothing in $TMPDIR once closed; checked in a fresh process."""
    spill_root = tmp_path / "tmp"
    spill_root.mkdir()
    path = tmp_path / "embeddings.duckdb"
    store = EmbeddingStore(path)
    store.register_run("r", "astro", "m", "v1", config={})
    _write_generation(store, 1)
    store.close()
    script = textwrap.dedent("""
        import os, sys
        from shared.store import EmbeddingStore, open_readonly
        store, spill_root = EmbeddingStore(sys.argv[1]), sys.argv[2]
        for _ in range(3):
            store.nearest(sample_id="q", k=1, domain="astro", modality="photometry")
            store.close()
            open_readonly(store.path).close()
        assert not os.listdir(spill_root), os.listdir(spill_root)
        connection = open_readonly(store.path, memory_limit="64MB", threads=1)
        sql = "SELECT count(*) FROM (SELECT range % 1000003 AS a, random() AS b FROM range(6000000) ORDER BY b)"
        assert connection.execute(sql).fetchall()[0][0] == 6_000_000
        assert os.listdir(spill_root), "the query was meant to spill, so the cleanup is checked"
        connection.close()
        assert not os.listdir(spill_root), os.listdir(spill_root)
    """)
    result = subprocess.run(
        [sys.executable, "-c", script, str(path), str(spill_root)], cwd=REPO_ROOT,
        env={**os.environ, "TMPDIR": str(spill_root)}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_call_keeps_its_file_version_when_another_call_sees_a_swap_midway(tmp_path, monkeypatch):
    """Deterministic interleaving: while one ``nearest`` is between reading its query vector and ranking, a
    writer swaps the file and another call on the same store object opens the new version. The first call
    must finish on its own version (no "connection already closed"), and the second sees the new one."""
    import shared.store.query as store_query

    path = tmp_path / "embeddings.duckdb"
    writer_store = EmbeddingStore(path)
    writer_store.register_run("r", "astro", "m", "v1", config={})
    _write_generation(writer_store, 0)
    store = EmbeddingStore(path, vector_cache_mb=0)  # rank in DuckDB: the first call needs its connection after
    original = store_query.read_vectors
    inner_answers = []

    def read_then_interleave(*args, **kwargs):
        vectors = original(*args, **kwargs)
        if not inner_answers:
            inner_answers.append(None)
            _write_generation(writer_store, 7)
            inner_answers[0] = store.nearest(sample_id="q", k=1, domain="astro", modality="photometry")
        return vectors

    monkeypatch.setattr(store_query, "read_vectors", read_then_interleave)
    outer = store.nearest(sample_id="q", k=1, domain="astro", modality="photometry")
    assert json.loads(outer["meta"].iloc[0])["generation"] == 0 and outer["sample_id"].iloc[0] == "c00"
    inner = inner_answers[0]
    assert json.loads(inner["meta"].iloc[0])["generation"] == 7 and inner["sample_id"].iloc[0] == "c07"
    store.close()
