"""Shared fixtures for the explorer tests: a small store with every domain."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shared.store import EmbeddingStore


@pytest.fixture(scope="session")
def store_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("explorer") / "embeddings.duckdb"
    store = EmbeddingStore(path)
    rng = np.random.default_rng(0)
    with store.writing() as writer:
        for domain, modality in (("astro", "photometry"), ("biomed", "image"), ("news", "post"), ("recsys", "item")):
            ids = [f"{domain}-{i:03d}" for i in range(40)]
            writer.register_run(f"{domain}-run", domain, f"{domain}-model", "v1", config={"trainer": {"lr": 1e-3}})
            writer.write_embeddings(
                domain=domain,
                modality=modality,
                model_name=f"{domain}-model",
                model_version="v1",
                run_id=f"{domain}-run",
                sample_ids=ids,
                vectors=rng.standard_normal((40, 16)).astype(np.float32),
                metadata=[{"index": i} for i in range(40)],
            )
            writer.upsert_samples(
                domain, pd.DataFrame({"sample_id": ids, "label": [f"class{i % 3}" for i in range(40)]})
            )
    return path
