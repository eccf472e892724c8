"""CLIP pretraining command on a tiny synthetic ingest folder: run folder, learning, exact reload."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from astro_model_fixtures import one_torch_thread, tiny_model_config, write_synthetic_ingest  # noqa: F401

from domains.astro import pretrain
from domains.astro.model import build_astrom3_model
from domains.astro.pretrain import PretrainConfig, load_pretrained_clip, run_pretrain, validation_metrics
from domains.astro.training_data import collate_astro_batch, load_astro_splits
from shared.trainer import TrainerConfig


@pytest.fixture(scope="module")
def ingest_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_ingest(tmp_path_factory.mktemp("ingest"))


def tiny_pretrain_config(ingest_dir: Path, runs_root: Path, epochs: int = 6) -> PretrainConfig:
    return PretrainConfig(
        run_name="clip",
        runs_root=str(runs_root),
        data=str(ingest_dir),
        seed=1,
        batch_size=16,
        epochs=epochs,
        warmup_epochs=0.5,
        eval_batch_size=64,
        model=tiny_model_config(),
        trainer=TrainerConfig(
            lr=3e-3,
            weight_decay=0.0,
            schedule="constant",
            grad_clip_norm=45.0,
            select_metric="val_loss",
            select_mode="min",
            progress_bar=False,
            log_every=1,
        ),
    )


def test_pretrain_writes_the_run_folder_and_learns(ingest_dir: Path, tmp_path: Path) -> None:
    config = tiny_pretrain_config(ingest_dir, tmp_path)
    splits = load_astro_splits(ingest_dir, "full", 1, seq_len=32)
    torch.manual_seed(0)
    untrained = build_astrom3_model(config.model).eval()
    with torch.no_grad():
        before = validation_metrics(untrained, splits.val, 16, torch.device("cpu"))

    result = run_pretrain(config)

    run_dir = tmp_path / "astro" / "clip"
    assert result.run_dir == run_dir
    for name in (
        "config.yaml",
        "metrics.csv",
        "model.safetensors",
        "eval/metrics.json",
        "checkpoints/best.safetensors",
    ):
        assert (run_dir / name).is_file(), name
    with (run_dir / "metrics.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    logged = {row["metric"] for row in rows}
    assert {"loss", "loss_photometry-spectra", "logit_scale_spectra-metadata", "val_loss", "clip_accuracy"} <= logged
    scales = [float(r["value"]) for r in rows if r["metric"].startswith("logit_scale_")]
    assert all(1.0 <= s <= 100.0 + 1e-3 for s in scales)
    # 96 training objects / batch 16 = 6 steps per epoch.
    assert result.metrics["steps"] == 36
    saved = json.loads((run_dir / "eval" / "metrics.json").read_text())
    assert saved["val_loss"] == pytest.approx(result.metrics["val_loss"])
    # The modalities share the class signal, so CLIP training lowers the validation loss.
    assert result.metrics["val_loss"] < before["val_loss"] - 0.3


def test_pretrained_run_reloads_exactly(ingest_dir: Path, tmp_path: Path) -> None:
    result = run_pretrain(tiny_pretrain_config(ingest_dir, tmp_path, epochs=1))
    model, values = load_pretrained_clip(result.run_dir)
    assert values["seed"] == 1 and values["data"] == str(ingest_dir)
    splits = load_astro_splits(ingest_dir, "full", 1, seq_len=32)
    batch = collate_astro_batch([splits.val[i] for i in range(4)])
    with torch.no_grad():
        reloaded = validation_metrics(model, splits.val, 16, torch.device("cpu"))
    assert reloaded["val_loss"] == pytest.approx(result.metrics["val_loss"], rel=1e-5)
    assert model.encode("spectra", batch["spectra"]).shape == (4, 16)


def test_missing_or_wrong_run_folders_are_reported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not an astro ingest folder"):
        run_pretrain(PretrainConfig(data=str(tmp_path), runs_root=str(tmp_path)))
    with pytest.raises(FileNotFoundError, match="finished domains.astro.pretrain run"):
        load_pretrained_clip(tmp_path)


def test_help_documents_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        pretrain.main(["--help"])
    assert stopped.value.code == 0
    text = capsys.readouterr().out
    for option in ("--run_name", "--data", "--seed", "--batch_size", "--epochs", "--warmup_epochs",
                   "--model.photometry.attention", "--model.photometry.pooling", "--trainer.lr"):  # fmt: skip
        assert option in text
    assert "ProbSparse" in text
