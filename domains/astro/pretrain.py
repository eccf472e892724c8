"""Trimodal CLIP pretraining of AstroM3 (photometry, spectra, metadata) through the shared trainer.

    python -m domains.astro.pretrain                          # demo: built-in data, a few minutes on CPU
    python -m domains.astro.pretrain --config domains/astro/configs/paper.yaml --data runs/astro/<ingest>
    python -m domains.astro.pretrain --help                   # every option

Labels are not used. Training reads the ``train`` split of the chosen (subset, seed); validation computes
the CLIP loss and AstroM3's matching accuracy on ``val`` in training-size batches. Epoch settings
(``epochs``, ``warmup_epochs``) are turned into the trainer's step counts; validation and checkpoints
happen once per epoch. Writes ``runs/astro/<run_name>/`` (``config.yaml``, ``metrics.csv``,
``checkpoints/``, ``model.safetensors``, ``eval/metrics.json``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from domains.astro.model import (
    CLIP_PAIRS,
    AstroModelConfig,
    build_astrom3_model,
    clip_matching_accuracy,
    demo_model_config,
    model_config_from_dict,
)
from domains.astro.training_data import (
    collate_astro_batch,
    epoch_aware_batches,
    load_astro_splits,
    resolve_ingest_dir,
)
from shared.checkpoints import load_weights
from shared.cli import parse_config, run_dir_for, save_config, write_text_atomically
from shared.contrastive_model import ContrastiveModel
from shared.device import move_to_device
from shared.trainer import Trainer, TrainerConfig, seed_everything


def demo_pretrain_trainer() -> TrainerConfig:
    """Trainer settings of the CPU demo (Adam-style values scaled to a small model and batch)."""
    return TrainerConfig(
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
    )


@dataclass
class PretrainConfig:
    """Trimodal CLIP pretraining of AstroM3 (defaults: the CPU demo on the built-in data set)."""

    run_name: str = "pretrain-demo"
    """Output folder name under runs/astro/."""
    runs_root: str = "runs"
    """Root of the run folders."""
    data: str | None = None
    """Ingest folder (python -m domains.astro.ingest); empty: the built-in demo set (ingested on first use)."""
    demo_stars: int = 2000
    """Stars in the built-in demo set (only without --data)."""
    subset: str = "full"
    """Split subset to pretrain on: full, sub50, sub25 or sub10 (the paper pretrains on full)."""
    seed: int = 42
    """Split seed; fine-tune with the same seed, else pretraining has seen the fine-tuning test objects."""
    batch_size: int = 64
    """Objects per contrastive batch (paper: 512); the last incomplete batch of an epoch is dropped."""
    epochs: int = 12
    """Passes over the training split (paper: up to 100); sets trainer.max_steps."""
    warmup_epochs: float = 1.0
    """Linear learning-rate warm-up in epochs (paper: 10); sets trainer.warmup_steps."""
    eval_batch_size: int = 256
    """Objects per batch when embedding for evaluation."""
    model: AstroModelConfig = field(default_factory=demo_model_config)
    """Towers, projections and temperatures."""
    trainer: TrainerConfig = field(default_factory=demo_pretrain_trainer)
    """Shared trainer settings; max_steps, warmup_steps, validate_every and checkpoint_every are derived from
    the epoch settings above."""


@dataclass
class PretrainResult:
    """Where a pretraining run wrote and how it ended."""

    run_dir: Path
    model_path: Path
    metrics: dict[str, float]
    stop_reason: str


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


def derive_trainer_steps(
    trainer: TrainerConfig, n_train: int, batch_size: int, epochs: float, warmup: float, min_steps: int = 0
) -> int:
    """Set the trainer's step counts from epoch settings (at least ``min_steps``); returns the steps per epoch."""
    steps_per_epoch = n_train // (batch_size * trainer.accum_steps)
    if steps_per_epoch < 1:
        raise ValueError(
            f"the training split has {n_train} objects, fewer than one batch of {batch_size} x "
            f"{trainer.accum_steps}: lower --batch_size"
        )
    trainer.max_steps = max(1, min_steps, math.ceil(epochs * steps_per_epoch))
    trainer.warmup_steps = int(round(warmup * steps_per_epoch))
    trainer.validate_every = steps_per_epoch
    trainer.checkpoint_every = steps_per_epoch
    return steps_per_epoch


def run_pretrain(config: PretrainConfig) -> PretrainResult:
    """Pretrain and evaluate; see the module docstring."""
    if config.model.photometry.seq_len != 200 and config.data is None:
        raise ValueError("the built-in data set has 200-step windows: keep model.photometry.seq_len at 200")
    ingest_dir = resolve_ingest_dir(config.data, config.runs_root, config.demo_stars)
    splits = load_astro_splits(
        ingest_dir, config.subset, config.seed, config.model.photometry.seq_len, window_seed=config.trainer.seed
    )
    config.data = str(ingest_dir)
    derive_trainer_steps(config.trainer, len(splits.train), config.batch_size, config.epochs, config.warmup_epochs)
    run_dir = run_dir_for("astro", config.run_name, root=config.runs_root)
    save_config(config, run_dir)
    seed_everything(config.trainer.seed)  # the initial weights depend on the seed, not on earlier work
    model = build_astrom3_model(config.model)
    trainer = Trainer(model, config.trainer, run_dir)
    make_batches = epoch_aware_batches(splits.train, config.batch_size, seed=config.trainer.seed)

    def validate(trained: torch.nn.Module) -> dict[str, float]:
        return validation_metrics(trained, splits.val, config.batch_size, trainer.device)

    result = trainer.fit(make_batches, validate)
    model.eval()
    with torch.no_grad():
        metrics = {
            **{f"val_{k}" if not k.startswith("val_") else k: v for k, v in validate(model).items()},
            **{
                f"test_{k.removeprefix('val_')}": v
                for k, v in validation_metrics(model, splits.test, config.batch_size, trainer.device).items()
            },
            "steps": float(result.step),
            "n_train": float(len(splits.train)),
        }
    write_text_atomically(run_dir / "eval" / "metrics.json", json.dumps(metrics, indent=2))
    return PretrainResult(run_dir, result.model_path, metrics, result.stop_reason)


def load_pretrained_clip(run_dir: str | Path) -> tuple[ContrastiveModel, dict[str, Any]]:
    """Rebuild a pretraining run's CLIP model from its ``config.yaml`` and load ``model.safetensors``.

    Returns:
        ``(model in eval mode, the run's resolved config as a dict)``.

    Raises:
        FileNotFoundError: The folder is not a finished pretraining run.
    """
    import yaml

    run_dir = Path(run_dir)
    config_path, weights = run_dir / "config.yaml", run_dir / "model.safetensors"
    for path in (config_path, weights):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; is {run_dir} a finished domains.astro.pretrain run?")
    values = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    if "model" not in values or "trainer" not in values:
        raise ValueError(f"{config_path}: not a pretraining config (no model/trainer sections)")
    model = build_astrom3_model(model_config_from_dict(values["model"]))
    load_weights(model, weights)
    return model.eval(), values


def main(argv: list[str] | None = None) -> PretrainResult:
    """Command-line entry point (``python -m domains.astro.pretrain --help``)."""
    config = parse_config(PretrainConfig, argv, prog="python -m domains.astro.pretrain", description=__doc__)
    result = run_pretrain(config)
    metrics = result.metrics
    print(
        f"pretraining stopped ({result.stop_reason}) after {int(metrics['steps'])} steps: "
        f"val CLIP loss {metrics['val_loss']:.3f}, matching accuracy {metrics['val_clip_accuracy']:.3f} "
        f"(test {metrics['test_clip_accuracy']:.3f})"
    )
    print(f"wrote {result.run_dir} (config.yaml, metrics.csv, checkpoints/, model.safetensors, eval/metrics.json)")
    print(
        "next: python -m domains.astro.finetune --mode photo "
        f"--clip_run {result.run_dir} --seeds [{config.seed}]\n"
        f"      python -m domains.astro.embed --clip_run {result.run_dir}"
    )
    return result


if __name__ == "__main__":
    main()
