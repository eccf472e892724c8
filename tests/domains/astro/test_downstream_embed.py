"""The embed command: vectors, anomaly scores and label-error flags round-tripped through the store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from domains.astro.clip_pretraining import PretrainConfig, load_pretrained_clip, run_pretrain
from domains.astro.datasets import load_astro_splits, map_batches
from domains.astro.downstream import anomaly_scores, fused_embeddings
from domains.astro.embedding_export import EmbedConfig, run_embed
from domains.astro.model import MODALITIES, AstroModelConfig
from domains.astro.training_budget import with_epoch_budget
from shared.store import EmbeddingStore
from shared.trainer import TrainerConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_embed_writes_every_modality_with_scores_and_flags(
    tmp_path: Path, write_astro_ingest: Callable[..., Path], tiny_astro_config: Callable[[], AstroModelConfig]
) -> None:
    ingest_dir = write_astro_ingest(tmp_path / "ingest", n_objects=60, seeds=(1,))
    pretrained = run_pretrain(
        PretrainConfig(
            run_name="clip",
            runs_root=str(tmp_path / "runs"),
            input=str(ingest_dir),
            seed=1,
            batch_size=16,
            model=tiny_astro_config(),
            trainer=with_epoch_budget(
                TrainerConfig(progress_bar=False, select_metric="val_loss", select_mode="min"),
                max_epochs=1,
                warmup_epochs=1.0,
            ),
        )
    )
    store_path = tmp_path / "store.duckdb"
    result = run_embed(
        EmbedConfig(run=str(pretrained.run_dir), store=str(store_path), top_k=3, min_modalities=2, map_method="pca")
    )
    assert np.isfinite(result.samples[["map_x", "map_y"]].to_numpy()).all()

    splits = load_astro_splits(ingest_dir, "full", 1, seq_len=32)
    n_objects = len(splits.train) + len(splits.val) + len(splits.test)
    assert result.n_objects == n_objects == len(result.samples)
    store = EmbeddingStore(store_path)
    inventory = store.sql("SELECT modality, sum(num_vectors) AS n FROM embedding_inventory GROUP BY modality")
    assert dict(zip(inventory["modality"], inventory["n"])) == {m: n_objects for m in (*MODALITIES, "fused")}

    # Stored vectors are the model's own embeddings of the test split.
    model, _ = load_pretrained_clip(pretrained.run_dir)
    import torch

    ours = map_batches(lambda b: {m: model.encode(m, b[m]) for m in MODALITIES}, splits.test, 64, torch.device("cpu"))
    test_ids = [obj.sample_id for obj in splits.test.objects]
    for modality in MODALITIES:
        stored = store.get_vectors(test_ids, domain="astro", modality=modality)
        np.testing.assert_allclose(stored, ours[modality], atol=1e-5)
    np.testing.assert_allclose(
        store.get_vectors(test_ids, domain="astro", modality="fused"), fused_embeddings(ours), atol=1e-5
    )

    samples = store.sql("SELECT * FROM samples_astro ORDER BY sample_id").set_index("sample_id")
    assert set(samples["split"]) == {"train", "val", "test"}
    assert samples["label"].isin(["EW", "SR", "RRAB"]).all()
    # Anomaly scores are IsolationForest on the fused embeddings of all objects, recomputed independently.
    frame = result.samples.set_index("sample_id")
    all_ids = frame.index.tolist()
    fused_all = store.get_vectors(all_ids, domain="astro", modality="fused")
    expected = anomaly_scores(fused_all, "isolation_forest")
    np.testing.assert_allclose(samples.loc[all_ids, "anomaly_isolation_forest"], expected, rtol=1e-4, atol=1e-5)
    # Per modality exactly top_k objects are flagged; candidates are those flagged at least twice.
    flags = samples["misclassification_flags"]
    assert flags.max() <= 3
    assert (samples["label_error_candidate"] == (flags >= 2)).all()
    distance = samples["centroid_distance_spectra"]
    assert distance.notna().all() and (distance >= -1e-6).all() and (distance <= 2 + 1e-6).all()

    neighbours = store.nearest(sample_id=test_ids[0], k=3, domain="astro", modality="photometry")
    assert len(neighbours) == 3 and test_ids[0] not in neighbours["sample_id"].tolist()
    # Re-running replaces rather than duplicates.
    run_embed(EmbedConfig(run=str(pretrained.run_dir), store=str(store_path)))
    again = store.sql("SELECT sum(num_vectors) AS n FROM embedding_inventory")
    assert int(again["n"].iloc[0]) == 4 * n_objects
    with pytest.raises(FileNotFoundError, match="finished domains.astro.pretrain run"):
        run_embed(EmbedConfig(run=str(tmp_path), store=str(store_path)))


def test_help_documents_every_option(
    capsys: pytest.CaptureFixture[str], help_text: Callable[..., str], assert_help_documents_every_option: Callable
) -> None:
    from domains.astro import embed

    assert_help_documents_every_option(EmbedConfig, help_text(embed.main, capsys))
