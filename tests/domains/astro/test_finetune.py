"""Fine-tuning and evaluation commands on a tiny synthetic ingest folder."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from domains.astro.classifier_evaluation import EvaluateConfig, evaluate_run, load_finetuned_classifier
from domains.astro.classifier_finetuning import FinetuneConfig, run_finetune
from domains.astro.clip_pretraining import PretrainConfig, load_pretrained_clip, run_pretrain
from domains.astro.model import AstroModelConfig
from domains.astro.training_budget import with_epoch_budget
from shared.cli import config_to_dict, run_command
from shared.run_folder import RunFolder, read_metrics, sha256_of
from shared.trainer import TrainerConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def quick_trainer(**overrides: object) -> TrainerConfig:
    values = dict(
        lr=3e-3,
        weight_decay=0.0,
        schedule="constant",
        select_metric="val_accuracy",
        select_mode="max",
        progress_bar=False,
        log_every=5,
    )
    values.update(overrides)
    return TrainerConfig(**values)


@pytest.fixture(scope="module")
def ingest_dir(tmp_path_factory: pytest.TempPathFactory, write_astro_ingest: Callable[..., Path]) -> Path:
    return write_astro_ingest(tmp_path_factory.mktemp("ingest"))


@pytest.fixture(scope="module")
def clip_runs(
    ingest_dir: Path, tmp_path_factory: pytest.TempPathFactory, tiny_astro_config: Callable[[], AstroModelConfig]
) -> Path:
    """One short CLIP pretraining per split seed (1 and 2)."""
    root = tmp_path_factory.mktemp("runs")
    for seed in (1, 2):
        run_pretrain(
            PretrainConfig(
                run_name=f"clip-seed{seed}",
                runs_root=str(root),
                input=str(ingest_dir),
                seed=seed,
                batch_size=16,
                model=tiny_astro_config(),
                trainer=with_epoch_budget(
                    quick_trainer(select_metric="val_loss", select_mode="min"), max_epochs=2, warmup_epochs=1.0
                ),
            )
        )
    return root / "astro"


def make_finetune_config(
    ingest_dir: Path,
    runs_root: Path,
    model: AstroModelConfig,
    epochs: int = 4,
    trainer: TrainerConfig | None = None,
    **overrides: object,
) -> FinetuneConfig:
    """A 4-epoch fine-tuning of the tiny model (the same one the CLIP runs use)."""
    values = dict(
        run_name="ft",
        runs_root=str(runs_root),
        input=str(ingest_dir),
        mode="meta",
        seeds=[1],
        batch_size=16,
        model=model,
        trainer=with_epoch_budget(trainer or quick_trainer(), max_epochs=epochs),
    )
    values.update(overrides)
    return FinetuneConfig(**values)


@pytest.fixture
def finetune_config(tiny_astro_config: Callable[[], AstroModelConfig]) -> Callable[..., FinetuneConfig]:
    return partial(make_finetune_config, model=tiny_astro_config())


def test_metadata_classifier_learns_and_reports_consistent_metrics(
    ingest_dir: Path, tmp_path: Path, finetune_config: Callable[..., FinetuneConfig]
) -> None:
    # Selection on validation loss: with 12 validation objects, accuracy ties would pick an early epoch.
    # recipe none: this test's own trainer settings, not AstroM3's per-mode recipe (tested in test_finetune_recipe).
    trainer = quick_trainer(lr=1e-2, select_metric="val_loss", select_mode="min")
    config = finetune_config(ingest_dir, tmp_path, seeds=[1, 2], epochs=8, trainer=trainer)
    result = run_finetune(dataclasses.replace(config, recipe="none"))
    assert sorted(result.per_seed) == [1, 2]
    for seed, metrics in result.per_seed.items():
        seed_dir = tmp_path / "astro" / "ft" / f"seed-{seed}"
        saved = json.loads((seed_dir / "eval" / "metrics.json").read_text())
        predictions = pd.read_csv(seed_dir / "eval" / "predictions.csv", dtype={"sample_id": str})
        # The reported accuracy is the fraction of correct rows in the saved predictions.
        assert saved["accuracy"] == pytest.approx((predictions["true"] == predictions["predicted"]).mean())
        assert np.sum(saved["confusion_matrix"]) == len(predictions) == saved["n_objects"]
        assert set(saved["per_class"]) == {"EW", "SR", "RRAB"}
        assert (seed_dir / "eval" / "confusion_matrix.png").stat().st_size > 1000
        # Three classes with a strong catalogue signal: far above chance (1/3).
        assert metrics["accuracy"] >= 0.8
    accuracies = [result.per_seed[s]["accuracy"] for s in (1, 2)]
    summary = json.loads((tmp_path / "astro" / "ft" / "eval" / "summary.json").read_text())
    assert summary["accuracy"]["mean"] == pytest.approx(np.mean(accuracies))
    # The spread over seeds is the sample standard deviation (ddof 1, shared.seed_statistics).
    assert summary["accuracy"]["std"] == pytest.approx(np.std(accuracies, ddof=1))


def test_evaluate_command_reproduces_the_finetune_test_metrics(
    ingest_dir: Path, tmp_path: Path, finetune_config: Callable[..., FinetuneConfig]
) -> None:
    result = run_finetune(finetune_config(ingest_dir, tmp_path, mode="spectra", epochs=2))
    summary = evaluate_run(EvaluateConfig(run=str(result.run_dir)))
    assert summary["accuracy"]["values"] == [pytest.approx(result.per_seed[1]["accuracy"])]
    val = evaluate_run(EvaluateConfig(run=str(result.run_dir / "seed-1"), split="val"))
    assert (result.run_dir / "seed-1" / "eval" / "val" / "metrics.json").is_file()
    assert val["accuracy"]["values"][0] == pytest.approx(result.per_seed[1]["best_val_accuracy"])
    # The fine-tuning run's marker lists what evaluate (re)wrote, with the files' current hashes.
    outputs = RunFolder(result.run_dir).marker()["outputs"]
    for name in ("seed-1/eval/metrics.json", "seed-1/eval/val/metrics.json", "eval/summary_test.json"):
        assert outputs[name]["sha256"] == sha256_of(result.run_dir / name), name


@pytest.mark.parametrize("mode", ["photo", "all"])
def test_clip_initialisation_starts_from_the_pretrained_encoders(
    mode: str,
    ingest_dir: Path,
    clip_runs: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    finetune_config: Callable[..., FinetuneConfig],
) -> None:
    captured = {}

    import domains.astro.classifier_finetuning as finetune_module

    original = finetune_module.Trainer

    class RecordingTrainer(original):  # type: ignore[misc, valid-type]
        def __init__(self, model: torch.nn.Module, *args: object, **kwargs: object) -> None:
            captured["initial"] = {k: v.clone() for k, v in model.state_dict().items()}
            super().__init__(model, *args, **kwargs)

    monkeypatch.setattr(finetune_module, "Trainer", RecordingTrainer)
    config = finetune_config(
        ingest_dir, tmp_path, mode=mode, seeds=[1, 2], epochs=1, run=str(clip_runs / "clip-seed{seed}")
    )
    result = run_finetune(config)
    clip, _ = load_pretrained_clip(clip_runs / "clip-seed2")
    initial = captured["initial"]
    if mode == "photo":
        expected = clip.towers["photometry"].state_dict()
    else:
        expected = clip.state_dict()
    for name, value in expected.items():
        torch.testing.assert_close(initial[f"backbone.{name}"], value)
    classifier, spec = load_finetuned_classifier(result.run_dir / "seed-2")
    assert spec["clip_run"] == str(clip_runs / "clip-seed2") and spec["mode"] == mode
    assert classifier.head.out_features == 3


def test_clip_run_from_another_split_seed_is_refused(
    ingest_dir: Path, clip_runs: Path, tmp_path: Path, finetune_config: Callable[..., FinetuneConfig]
) -> None:
    config = finetune_config(ingest_dir, tmp_path, seeds=[2], run=str(clip_runs / "clip-seed1"))
    with pytest.raises(ValueError, match="split seed 1 but this is seed 2"):
        run_finetune(config)
    with pytest.raises(ValueError, match="'\\{seed\\}'"):
        run_finetune(finetune_config(ingest_dir, tmp_path, seeds=[1, 2], run=str(clip_runs / "clip-seed1")))


@pytest.mark.parametrize("command", ["finetune", "evaluate"])
def test_help_documents_every_option(
    command: str,
    capsys: pytest.CaptureFixture[str],
    help_text: Callable[..., str],
    assert_help_documents_every_option: Callable,
) -> None:
    from domains.astro import evaluate, finetune

    main, config_cls = {"finetune": (finetune.main, FinetuneConfig), "evaluate": (evaluate.main, EvaluateConfig)}[
        command
    ]
    assert_help_documents_every_option(config_cls, help_text(main, capsys))


def test_max_steps_on_a_step_budget_is_exactly_what_runs_and_what_is_saved(
    ingest_dir: Path,
    tmp_path: Path,
    tiny_astro_config: Callable[[], AstroModelConfig],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from domains.astro import finetune

    model_yaml = tmp_path / "model.yaml"
    model_yaml.write_text(yaml.safe_dump({"model": config_to_dict(tiny_astro_config())}), encoding="utf-8")
    common = ["--config", str(model_yaml), "--input", str(ingest_dir), "--runs_root", str(tmp_path), "--mode", "meta",
              "--seeds", "[1]", "--batch_size", "16"]  # fmt: skip
    run_command(finetune.main, [*common, "--trainer.max_epochs", "null", "--trainer.max_steps", "3",
                                "--trainer.seed", "5"])  # fmt: skip
    run_dir = tmp_path / "astro" / "finetune-demo"
    for folder in (run_dir, run_dir / "seed-1"):
        saved = yaml.safe_load((folder / "config.yaml").read_text())
        assert saved["trainer"]["max_steps"] == 3 and saved["trainer"]["seed"] == 5
    train_steps = [row["step"] for row in read_metrics(run_dir / "seed-1") if row["phase"] == "train"]
    assert max(train_steps) == 3
    assert RunFolder(run_dir).marker()["command"] == "domains.astro.finetune"
    capsys.readouterr()

    with pytest.raises(SystemExit) as exited:
        run_command(finetune.main, [*common, "--run_name", "refused", "--trainer.max_steps", "3"])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "--trainer.max_steps" in error and "--trainer.max_epochs" in error


def test_min_steps_floor_is_visible_in_the_seed_config(
    ingest_dir: Path, tmp_path: Path, finetune_config: Callable[..., FinetuneConfig]
) -> None:
    # 96 training objects / 16 = 6 steps per epoch: 1 epoch is under the floor of 10 steps.
    result = run_finetune(finetune_config(ingest_dir, tmp_path, epochs=1, min_steps=10))
    saved = yaml.safe_load((result.run_dir / "seed-1" / "config.yaml").read_text())
    assert saved["min_steps"] == 10 and saved["trainer"]["max_steps"] == 10 and saved["trainer"]["max_epochs"] is None
    assert result.per_seed[1]["steps"] == 10
    top = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert top["trainer"]["max_epochs"] == 1 and top["trainer"]["max_steps"] is None
