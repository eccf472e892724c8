"""CLIP pretraining command on a tiny synthetic ingest folder: run folder, learning, exact reload."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
import torch
import yaml

from domains.astro import pretrain
from domains.astro.clip_pretraining import (
    VALIDATION_METRICS,
    PretrainConfig,
    check_validation_metrics,
    load_pretrained_clip,
    run_pretrain,
    validation_metrics,
)
from domains.astro.datasets import collate_astro_batch, load_astro_splits
from domains.astro.demo import DEMO_FORMAT_VERSION
from domains.astro.model import AstroModelConfig, build_astrom3_model
from domains.astro.training_budget import with_epoch_budget
from shared.cli import config_to_dict, parse_config, run_command
from shared.run_folder import RunFolder, read_metrics
from shared.trainer import TrainerConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ingest_dir(tmp_path_factory: pytest.TempPathFactory, write_astro_ingest: Callable[..., Path]) -> Path:
    return write_astro_ingest(tmp_path_factory.mktemp("ingest"))


@pytest.fixture
def tiny_pretrain_config(tiny_astro_config: Callable[[], AstroModelConfig]) -> Callable[..., PretrainConfig]:
    return partial(make_tiny_pretrain_config, model=tiny_astro_config())


def make_tiny_pretrain_config(
    ingest_dir: Path, runs_root: Path, model: AstroModelConfig, epochs: int = 6
) -> PretrainConfig:
    return PretrainConfig(
        run_name="clip",
        runs_root=str(runs_root),
        input=str(ingest_dir),
        seed=1,
        batch_size=16,
        eval_batch_size=64,
        model=model,
        trainer=with_epoch_budget(
            TrainerConfig(
                lr=3e-3,
                weight_decay=0.0,
                schedule="constant",
                grad_clip_norm=45.0,
                select_metric="val_loss",
                select_mode="min",
                progress_bar=False,
                log_every=1,
            ),
            max_epochs=epochs,
            warmup_epochs=0.5,
        ),
    )


def test_pretrain_writes_the_run_folder_and_learns(
    ingest_dir: Path, tmp_path: Path, tiny_pretrain_config: Callable[..., PretrainConfig]
) -> None:
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


def test_pretrained_run_reloads_exactly(
    ingest_dir: Path, tmp_path: Path, tiny_pretrain_config: Callable[..., PretrainConfig]
) -> None:
    result = run_pretrain(tiny_pretrain_config(ingest_dir, tmp_path, epochs=1))
    model, values = load_pretrained_clip(result.run_dir)
    assert values["seed"] == 1 and values["input"] == str(ingest_dir)
    splits = load_astro_splits(ingest_dir, "full", 1, seq_len=32)
    batch = collate_astro_batch([splits.val[i] for i in range(4)])
    with torch.no_grad():
        reloaded = validation_metrics(model, splits.val, 16, torch.device("cpu"))
    assert reloaded["val_loss"] == pytest.approx(result.metrics["val_loss"], rel=1e-5)
    assert model.encode("spectra", batch["spectra"]).shape == (4, 16)


def test_missing_or_wrong_run_folders_are_reported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not an astro ingest folder"):
        run_pretrain(PretrainConfig(input=str(tmp_path), runs_root=str(tmp_path)))
    with pytest.raises(FileNotFoundError, match="finished domains.astro.pretrain run"):
        load_pretrained_clip(tmp_path)


def test_help_documents_every_option(
    capsys: pytest.CaptureFixture[str], help_text: Callable[..., str], assert_help_documents_every_option: Callable
) -> None:
    text = help_text(pretrain.main, capsys)
    assert_help_documents_every_option(PretrainConfig, text)
    for option in ("--run_name", "--input", "--seed", "--batch_size", "--trainer.max_epochs", "--trainer.warmup_epochs",
                   "--model.photometry.attention", "--model.photometry.pooling", "--trainer.lr"):  # fmt: skip
        assert option in text
    assert "ProbSparse" in text


CONFIGS = Path(__file__).resolve().parents[3] / "domains" / "astro" / "configs"


@pytest.mark.parametrize("preset", ["paper", "gpu", "demo"])
def test_presets_parse_into_the_pretraining_config(preset: str) -> None:
    config = parse_config(PretrainConfig, ["--config", str(CONFIGS / f"{preset}.yaml")])
    assert config.model.photometry.seq_len == 200 and config.model.spectra.length == 2575
    if preset == "demo":
        # The preset documents exactly what running the command with no arguments does.
        assert config_to_dict(config) == config_to_dict(PretrainConfig())
        return
    assert config.batch_size == 512 and config.trainer.warmup_epochs == 10 and config.trainer.grad_clip_norm == 45.0
    assert config.trainer.lr == pytest.approx(0.0039210) and config.trainer.betas == (0.92619, 0.999)
    assert (config.model.photometry.dropout, config.model.spectra.dropout, config.model.metadata.dropout) == (
        0.245,
        0.339,
        0.160,
    )
    assert config.trainer.schedule == "plateau" and config.trainer.plateau_decay == pytest.approx(0.1125)
    assert config.trainer.early_stopping_patience == 6
    # The paper's recipe: Adam with coupled decay, up to 100 epochs, weights selected on matching accuracy,
    # plateau and early stopping on the CLIP loss (metrics the validation reports).
    assert config.trainer.optimizer == "adam" and config.trainer.max_epochs == 100 and config.trainer.max_steps is None
    assert (config.trainer.select_metric, config.trainer.select_mode) == ("clip_accuracy", "max")
    assert (config.trainer.stop_metric, config.trainer.stop_mode) == ("val_loss", "min")
    check_validation_metrics(config.trainer, VALIDATION_METRICS)
    model = build_astrom3_model(config.model)
    assert 15.5e6 < sum(p.numel() for p in model.parameters()) < 16.2e6


def _tiny_model_yaml(path: Path, model: AstroModelConfig) -> Path:
    path.write_text(yaml.safe_dump({"model": config_to_dict(model)}), encoding="utf-8")
    return path


def test_max_steps_on_a_step_budget_is_exactly_what_runs_and_what_is_saved(
    ingest_dir: Path, tmp_path: Path, tiny_astro_config: Callable[[], AstroModelConfig]
) -> None:
    model_yaml = _tiny_model_yaml(tmp_path / "model.yaml", tiny_astro_config())
    losses = {}
    for trainer_seed in (7, 8):
        argv = ["--config", str(model_yaml), "--input", str(ingest_dir), "--runs_root", str(tmp_path), "--seed", "1",
                "--run_name", f"steps-{trainer_seed}", "--batch_size", "16", "--trainer.max_epochs", "null",
                "--trainer.max_steps", "3", "--trainer.seed", str(trainer_seed)]  # fmt: skip
        run_command(pretrain.main, argv)
        run_dir = tmp_path / "astro" / f"steps-{trainer_seed}"
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert saved["trainer"]["max_steps"] == 3 and saved["trainer"]["max_epochs"] is None
        assert saved["trainer"]["seed"] == trainer_seed
        train_rows = [row for row in read_metrics(run_dir) if row["phase"] == "train"]
        assert max(row["step"] for row in train_rows) == 3
        losses[trainer_seed] = [row["value"] for row in train_rows if row["metric"] == "loss" and row["step"] == 3]
        assert RunFolder(run_dir).marker()["command"] == "domains.astro.pretrain"
    # The saved seed is the one used: another seed starts from other weights and windows.
    assert losses[7] != losses[8]


def test_max_steps_on_an_epoch_preset_is_refused_naming_both_flags(
    ingest_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--input", str(ingest_dir), "--runs_root", str(tmp_path), "--seed", "1", "--batch_size", "16",
            "--model.photometry.seq_len", "32", "--trainer.max_steps", "3"]  # fmt: skip
    with pytest.raises(SystemExit) as exited:
        run_command(pretrain.main, argv)
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "--trainer.max_steps" in error and "--trainer.max_epochs" in error
    assert not (tmp_path / "astro").exists()  # refused before any run folder was written


def test_missing_demo_ingest_is_announced_in_one_line_naming_the_ingest_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import domains.astro.ingest_pipeline as ingest_pipeline

    calls = []

    def fake_ingest(config: ingest_pipeline.IngestConfig) -> None:
        calls.append((config, capsys.readouterr().out))
        folder = RunFolder.create("astro", config.run_name, config.runs_root)
        report = {"demo_format_version": DEMO_FORMAT_VERSION}  # a demo ingest of the current generator
        (folder.path / "ingest_report.json").write_text(json.dumps(report))
        folder.mark_finished("domains.astro.ingest", [])

    monkeypatch.setattr(ingest_pipeline, "run_ingest", fake_ingest)
    folder = ingest_pipeline.resolve_ingest_dir(None, str(tmp_path), demo_stars=300)
    assert folder == tmp_path / "astro" / "ingest-demo-300"
    ((config, announced),) = calls
    assert config.demo_stars == 300 and config.run_name == "ingest-demo-300"
    lines = announced.strip().splitlines()
    assert len(lines) == 1 and "python -m domains.astro.ingest" in lines[0] and "--demo_stars 300" in lines[0]
    # Once built, it is reused without a word.
    assert ingest_pipeline.resolve_ingest_dir(None, str(tmp_path), demo_stars=300) == folder
    assert len(calls) == 1 and capsys.readouterr().out == ""
    # A demo ingest from an older generator (e.g. budgets that capped val/test) is rebuilt, not reused.
    (folder / "ingest_report.json").write_text(json.dumps({"demo_format_version": DEMO_FORMAT_VERSION - 1}))
    assert ingest_pipeline.resolve_ingest_dir(None, str(tmp_path), demo_stars=300) == folder
    assert len(calls) == 2
