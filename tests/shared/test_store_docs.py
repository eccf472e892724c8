"""Runs the analyst queries of docs/store.md against a small store (and its Parquet export)."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shared.store import EmbeddingStore, open_readonly, read_parquet_export

DOCS = Path(__file__).resolve().parents[2] / "docs" / "store.md"
README = Path(__file__).resolve().parents[2] / "README.md"


def _sql_blocks(page: Path = DOCS) -> list[str]:
    return re.findall(r"```sql\n(.*?)```", page.read_text(), flags=re.DOTALL)


def test_the_readme_shows_the_same_tested_queries() -> None:
    assert _sql_blocks(README) == _sql_blocks(DOCS)


@pytest.fixture(scope="module")
def astro_store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("docs_store")
    store = EmbeddingStore(folder / "embeddings.duckdb")
    rng = np.random.default_rng(0)
    ids = [f"star-{i:04d}" for i in range(1, 25)]
    photometry = rng.standard_normal((24, 512))
    with store.writing() as writer:
        writer.register_run("astro-demo", "astro", "astroclip", "v1", config={"trainer": {"lr": 0.0005}},
                            checkpoint_sha256="0" * 64)  # fmt: skip
        writer.write_embeddings(
            domain="astro", modality="photometry", model_name="astroclip", model_version="v1", run_id="astro-demo",
            sample_ids=ids, vectors=photometry,
            metadata=[{"survey": "ASAS-SN" if i % 4 else "Gaia"} for i in range(24)],
        )  # fmt: skip
        writer.write_embeddings(
            domain="astro", modality="spectrum", model_name="astroclip", model_version="v1", run_id="astro-demo",
            sample_ids=ids, vectors=photometry + rng.standard_normal((24, 512)),
        )  # fmt: skip
        writer.register_run("news-demo", "news", "tiny", "v1", config={"trainer": {"lr": 0.001}})
        writer.write_embeddings(domain="news", modality="text", model_name="tiny", model_version="v1",
                                run_id="news-demo", sample_ids=["n1", "n2"], vectors=rng.standard_normal((2, 64)))  # fmt: skip
        writer.upsert_samples(
            "astro",
            pd.DataFrame({"sample_id": ids, "split": ["train", "val", "test"] * 8, "label": ["RRAB", "EW"] * 12}),
        )
    yield store, photometry, ids
    store.close()


def test_the_page_has_five_analyst_queries():
    assert len(_sql_blocks()) == 5


@pytest.mark.parametrize("index", range(5))
def test_each_documented_query_runs_on_the_store_and_on_its_export(astro_store, tmp_path, index):
    store, _, _ = astro_store
    query = _sql_blocks()[index]
    with open_readonly(store.path) as connection:
        from_store = connection.execute(query).fetchall()
    assert from_store, f"query {index + 1} of {DOCS} returned no rows"
    from_export = read_parquet_export(store.export_parquet(tmp_path / "export")).execute(query).fetchall()
    assert sorted(map(repr, from_export)) == sorted(map(repr, from_store))


def test_documented_answers_are_right(astro_store):
    store, photometry, ids = astro_store
    blocks = _sql_blocks()
    with open_readonly(store.path) as connection:
        inventory = connection.execute(blocks[0]).fetchall()
        neighbours = connection.execute(blocks[1]).fetchall()
        per_split = connection.execute(blocks[2]).fetchall()
        provenance = connection.execute(blocks[4]).fetchall()
    assert [(row[0], row[1], row[4], row[5]) for row in inventory] == [
        ("astro", "photometry", 512, 24), ("astro", "spectrum", 512, 24), ("news", "text", 64, 2),
    ]  # fmt: skip
    unit = photometry / np.linalg.norm(photometry, axis=1, keepdims=True)
    scores = unit @ unit[0]
    expected = [ids[i] for i in np.argsort(-scores)[1:6]]
    assert [row[0] for row in neighbours] == expected
    # 18 of 24 stars are ASAS-SN (i % 4 != 0); split = i % 3, label = i % 2.
    expected_counts = {}
    for i in range(24):
        if i % 4:
            key = (["train", "val", "test"][i % 3], ["RRAB", "EW"][i % 2])
            expected_counts[key] = expected_counts.get(key, 0) + 1
    assert {(row[0], row[1]): row[2] for row in per_split} == expected_counts
    assert {(row[1], row[7], row[8]) for row in provenance} == {("astroclip", "0.0005", 48), ("tiny", "0.001", 2)}
