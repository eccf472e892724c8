"""Trimodal CLIP pretraining of AstroM3 (photometry, spectra, metadata) through the shared trainer, and
reloading a finished pretraining run (the work of ``python -m domains.astro.pretrain``).

Labels are not used. Training reads the ``train`` split of the chosen (subset, seed); validation computes
the CLIP loss and AstroM3's matching accuracy on ``val`` in training-size batches. The budget is the
trainer's, in epochs (``trainer.max_epochs``, ``trainer.warmup_epochs``; validation and checkpoints once
per epoch), resolved into steps before ``config.yaml`` is saved.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from domains.astro.datasets import (
    SUBSETS,
    collate_astro_batch,
    epoch_aware_batches,
    load_astro_splits,
    require_modalities,
)
from domains.astro.ingest_pipeline import resolve_ingest_dir
from domains.astro.input_errors import MissingAstroFolderError
from domains.astro.model import (
    CLIP_PAIRS,
    AstroModelConfig,
    build_astrom3_model,
    clip_matching_accuracy,
    demo_model_config,
    model_config_from_dict,
)
from domains.astro.training_budget import resolve_epoch_budget, with_epoch_budget
from shared.checkpoints import load_weights
from shared.contrastive_model import ContrastiveModel
from shared.device import move_to_device, pick_device
from shared.distributed import on_main_process
from shared.run_folder import FINISHED_MARKER, RunFolder
from shared.trainer import Trainer, TrainerConfig, check_trainer_config, seed_everything
from shared.user_errors import UserError

PRETRAIN_COMMAND = "domains.astro.pretrain"
"""The command name in a pretraining run's ``run.json`` marker."""


def demo_pretrain_trainer() -> TrainerConfig:
    """Trainer settings of the CPU demo: 12 epochs, 1 of warm-up (Adam-style values scaled to a small model)."""
    return with_epoch_budget(
        TrainerConfig(
            lr=2e-3,
            weight_decay=0.0046701,
            betas=(0.92619, 0.999),
            schedule="plateau",
            plateau_patience=3,
            plateau_decay=0.1125,
            grad_clip_norm=45.0,
            select_metric="val_loss",
            select_mode="min",
            early_stopping_patience=6,
            log_every=5,
            keep_last=2,
            progress_bar=False,
        ),
        max_epochs=12,
        warmup_epochs=1.0,
    )


@dataclass
class PretrainConfig:
    """Trimodal CLIP pretraining of AstroM3 (defaults: the CPU demo on the built-in data set)."""

    run_name: str = "pretrain-demo"
    """Output folder name under runs/astro/."""
    runs_root: str = "runs"
    """Root of the run folders."""
    input: str | None = None
    """Ingest folder (python -m domains.astro.ingest); empty: the built-in demo set (ingested on first use)."""
    demo_stars: int = 2000
    """Stars in the built-in demo set (only without --input)."""
    subset: str = "full"
    """Split subset to pretrain on: full, sub50, sub25 or sub10 (the paper pretrains on full)."""
    seed: int = 42
    """Split seed; fine-tune with the same seed, else pretraining has seen the fine-tuning test objects."""
    batch_size: int = 64
    """Objects per contrastive batch (paper: 512); the last incomplete batch of an epoch is dropped."""
    eval_batch_size: int = 256
    """Objects per batch when embedding for evaluation."""
    model: AstroModelConfig = field(default_factory=demo_model_config)
    """Towers, projections and temperatures."""
    trainer: TrainerConfig = field(default_factory=demo_pretrain_trainer)
    """Shared trainer settings; the budget is in epochs (trainer.max_epochs, paper: up to 100; trainer.warmup_epochs,
    paper: 10), resolved into steps before the config is saved."""


@dataclass
class PretrainResult:
    """Where a pretraining run wrote and how it ended.

    Attributes:
        run_dir: The run folder.
        model_path: The selected weights (``model.safetensors``).
        metrics: Validation and test CLIP loss and matching accuracy, steps and training-set size.
        stop_reason: Why training stopped (``max_steps``, ``early_stopping``).
        config: The resolved config, as saved in ``config.yaml``.
    """

    run_dir: Path
    model_path: Path
    metrics: dict[str, float]
    stop_reason: str
    config: PretrainConfig


def validation_metrics(
    model: ContrastiveModel, dataset: Any, batch_size: int, device: torch.device
) -> dict[str, float]:
    """CLIP loss (per pair and total) and matching accuracy on ``dataset``, in batches of ``batch_size``.

    Both depend on the batch size (more candidates per batch is harder), so validation uses the training
    batch size; a final partial batch is kept only when it is the sole batch.
    """
    n_batches = max(1, len(dataset) // batch_size)
    totals: dict[str, float] = {}
    weight_sum = 0
    for index in range(n_batches):
        indices = range(index * batch_size, min((index + 1) * batch_size, len(dataset)))
        batch = move_to_device(collate_astro_batch([dataset[i] for i in indices]), device)
        output = model(batch)
        scales = {f"{a}-{b}": float(model.loss.scale((a, b))) for a, b in CLIP_PAIRS}
        values = {
            "val_loss": float(output["loss"]),
            "clip_accuracy": clip_matching_accuracy(output["embeddings"], scales),
            **{f"val_loss_{name}": float(term) for name, term in output["loss_terms"].items()},
        }
        for name, value in values.items():
            totals[name] = totals.get(name, 0.0) + value * len(indices)
        weight_sum += len(indices)
    return {name: value / weight_sum for name, value in totals.items()}


VALIDATION_METRICS = ("val_loss", "clip_accuracy", *(f"val_loss_{a}-{b}" for a, b in CLIP_PAIRS))
"""What pretraining's validation reports (the choices of ``trainer.select_metric``/``trainer.stop_metric``)."""


def check_validation_metrics(
    trainer: TrainerConfig, available: tuple[str, ...], flag_prefix: str = "--trainer."
) -> None:
    """Refuse a selection or stopping metric the validation does not report (before any training).

    Raises:
        UserError: naming the flag and the metrics there are.
    """
    for name in ("select_metric", "stop_metric"):
        metric = getattr(trainer, name)
        if metric is not None and metric not in available:
            raise UserError(
                f"{flag_prefix}{name}: {metric!r} is not a validation metric; choose from {list(available)}"
            )


def _check_config(config: PretrainConfig, trainer_flags: str) -> None:
    check_trainer_config(config.trainer, trainer_flags)
    check_validation_metrics(config.trainer, VALIDATION_METRICS, trainer_flags)
    pick_device(config.trainer.device, f"{trainer_flags}device")
    if config.subset not in SUBSETS:
        raise UserError(f"--subset: must be one of {list(SUBSETS)}, got {config.subset!r}")
    if config.eval_batch_size < 1:
        raise UserError(f"--eval_batch_size: must be >= 1, got {config.eval_batch_size}")
    if config.model.photometry.seq_len != 200 and config.input is None:
        raise UserError(
            "--model.photometry.seq_len: the built-in data set has 200-step windows; keep it at 200 or give --input"
        )


def run_pretrain(config: PretrainConfig, trainer_flags: str = "--trainer.") -> PretrainResult:
    """Pretrain and evaluate; the run folder gets ``config.yaml`` (resolved), ``metrics.csv``,
    ``checkpoints/``, ``model.safetensors``, ``eval/metrics.json`` and the ``run.json`` marker.

    Args:
        config: The settings as given (the trainer's budget may be in epochs).
        trainer_flags: How the calling command spells the trainer's flags, for messages.
    """
    _check_config(config, trainer_flags)
    ingest_dir = resolve_ingest_dir(config.input, config.runs_root, config.demo_stars)
    require_modalities(ingest_dir, ["photometry", "spectra", "metadata"], "--input")  # CLIP pairs all three
    splits = load_astro_splits(
        ingest_dir, config.subset, config.seed, config.model.photometry.seq_len, window_seed=config.trainer.seed
    )
    trainer_config = resolve_epoch_budget(
        config.trainer, len(splits.train), config.batch_size, flag_prefix=trainer_flags
    )
    config = dataclasses.replace(config, input=str(ingest_dir), trainer=trainer_config)
    folder = RunFolder.create("astro", config.run_name, config.runs_root)
    folder.save_config(config)
    seed_everything(config.trainer.seed)  # the initial weights depend on the seed, not on earlier work
    model = build_astrom3_model(config.model)
    trainer = Trainer(model, config.trainer, folder.path)
    make_batches = epoch_aware_batches(splits.train, config.batch_size, seed=config.trainer.seed)

    # batch_size is per process: evaluation batches are the global batch, as with one process.
    eval_batch = config.batch_size * trainer.context.world_size

    def validate(trained: torch.nn.Module) -> dict[str, float]:
        return validation_metrics(trained, splits.val, eval_batch, trainer.device)

    result = trainer.fit(make_batches, validate)
    model.eval()

    def final_metrics() -> dict[str, float]:
        with torch.no_grad():
            return {
                **{f"val_{k}" if not k.startswith("val_") else k: v for k, v in validate(model).items()},
                **{
                    f"test_{k.removeprefix('val_')}": v
                    for k, v in validation_metrics(model, splits.test, eval_batch, trainer.device).items()
                },
                "steps": float(result.step),
                "n_train": float(len(splits.train)),
            }

    metrics = on_main_process(final_metrics)  # once, on rank 0; every rank gets the numbers
    folder.write_eval_metrics(metrics)
    folder.mark_finished(
        command=PRETRAIN_COMMAND,
        outputs=["config.yaml", "metrics.csv", "model.safetensors", "eval/metrics.json"],
        summary={"val_clip_accuracy": metrics["val_clip_accuracy"], "val_loss": metrics["val_loss"]},
    )
    return PretrainResult(folder.path, result.model_path, metrics, result.stop_reason, config)


def load_pretrained_clip(run_dir: str | Path, flag: str = "--run") -> tuple[ContrastiveModel, dict[str, Any]]:
    """Rebuild a pretraining run's CLIP model from its ``config.yaml`` and load ``model.safetensors``.

    Args:
        run_dir: A finished ``domains.astro.pretrain`` run folder.
        flag: The flag that named it (for messages).

    Returns:
        ``(model in eval mode, the run's resolved config as a dict)``.

    Raises:
        MissingAstroFolderError: The folder is not a finished pretraining run.
    """
    folder = RunFolder(Path(run_dir))
    if not folder.path.is_dir():
        raise MissingAstroFolderError(f"{flag} {folder.path}: no such run folder (a finished {PRETRAIN_COMMAND} run)")
    for name in (FINISHED_MARKER, "config.yaml", "model.safetensors"):
        if not (folder.path / name).is_file():
            raise MissingAstroFolderError(
                f"{flag} {folder.path}: {name} is missing; is it a finished {PRETRAIN_COMMAND} run?"
            )
    command = folder.marker().get("command")
    if command != PRETRAIN_COMMAND:
        raise UserError(f"{flag} {folder.path}: a {command} run, not a finished {PRETRAIN_COMMAND} run")
    try:
        values = folder.load_config()
    except UnicodeDecodeError:
        raise UserError(f"{folder.config_path}: not UTF-8 text") from None
    if "model" not in values or "trainer" not in values:
        raise UserError(f"{folder.config_path}: not a pretraining config (no model/trainer sections)")
    model = build_astrom3_model(model_config_from_dict(values["model"]))
    load_weights(model, folder.path / "model.safetensors")
    return model.eval(), values
