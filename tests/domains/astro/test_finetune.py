"""Fine-tuning and evaluation commands on a tiny synthetic ingest folder."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from domains.astro.classifier_evaluation import EvaluateConfig, evaluate_run, load_finetuned_classifier
from domains.astro.classifier_finetuning import FinetuneConfig, run_finetune
from domains.astro.clip_pretraining import PretrainConfig, load_pretrained_clip, run_pretrain
from domains.astro.model import AstroModelConfig
from domains.astro.training_budget import with_epoch_budget
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
    trainer = quick_trainer(lr=1e-2, select_metric="val_loss", select_mode="min")
    result = run_finetune(finetune_config(ingest_dir, tmp_path, seeds=[1, 2], epochs=8, trainer=trainer))
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
