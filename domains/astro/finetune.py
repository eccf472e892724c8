"""Fine-tune AstroM3 classifiers: one modality or all three, with or without CLIP initialisation.

    python -m domains.astro.finetune --mode photo                                    # from scratch, demo data
    python -m domains.astro.finetune --mode photo --clip_run runs/astro/pretrain-demo
    python -m domains.astro.finetune --mode all --subset sub10 --seeds [42,66,0] \\
        --clip_run 'runs/astro/pretrain-demo-seed{seed}'                             # one CLIP run per split seed

Modes: ``photo`` / ``spectra`` / ``meta`` (that tower + a linear head on its raw features) and ``all``
(the three normalised projections averaged, then a linear head). With ``--clip_run`` the encoders start
from a pretraining run (unimodal modes take only their tower; the architecture is the CLIP run's) and all
weights are trained. Label budgets: ``--subset full|sub50|sub25|sub10``. Model selection and early stopping
use validation accuracy only; the test split is touched once, at the end.

Writes ``runs/astro/<run_name>/config.yaml`` and per seed ``seed-<N>/`` (``metrics.csv``, ``checkpoints/``,
``model.safetensors``, ``classifier.json``, ``eval/metrics.json``, ``eval/confusion_matrix.png``), plus
``eval/summary.json`` (test accuracy mean ± std over seeds).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from domains.astro.evaluate import evaluate_classifier, summarize_seeds
from domains.astro.model import (
    FINETUNE_MODES,
    AstroClassifier,
    AstroModelConfig,
    demo_model_config,
    model_config_from_dict,
)
from domains.astro.pretrain import derive_trainer_steps, load_pretrained_clip
from domains.astro.training_data import (
    epoch_aware_batches,
    load_astro_splits,
    map_batches,
    resolve_ingest_dir,
)
from shared.cli import config_to_dict, parse_config, run_dir_for, save_config, write_text_atomically
from shared.trainer import Trainer, TrainerConfig, seed_everything


def demo_finetune_trainer() -> TrainerConfig:
    """Trainer settings of the CPU demo fine-tuning."""
    return TrainerConfig(
        lr=1e-3,
        weight_decay=1e-4,
        betas=(0.9, 0.999),
        schedule="plateau",
        plateau_patience=3,
        plateau_decay=0.1,
        grad_clip_norm=5.0,
        select_metric="val_accuracy",
        select_mode="max",
        early_stopping_patience=6,
        log_every=10,
        keep_last=1,
        progress_bar=False,
    )


@dataclass
class FinetuneConfig:
    """Supervised fine-tuning of AstroM3 classifiers (defaults: CPU demo, photometry, no CLIP)."""

    run_name: str = "finetune-demo"
    """Output folder name under runs/astro/."""
    runs_root: str = "runs"
    """Root of the run folders."""
    data: str | None = None
    """Ingest folder (python -m domains.astro.ingest); empty: the built-in demo set."""
    demo_stars: int = 2000
    """Stars in the built-in demo set (only without --data)."""
    mode: str = "photo"
    """photo, spectra, meta (one modality) or all (the three fused)."""
    subset: str = "full"
    """Label budget: full, sub50, sub25 or sub10."""
    seeds: list[int] = field(default_factory=lambda: [42])
    """Split seeds to run (paper: 42 66 0 12 123); each gets its own seed-<N> folder."""
    clip_run: str | None = None
    """Pretraining run to initialise the encoders from; '{seed}' in it is replaced by each split seed. Empty:
    random initialisation."""
    fusion: str = "avg"
    """Mode 'all' only: avg (paper) or concat of the three normalised embeddings."""
    batch_size: int = 32
    """Objects per training batch."""
    epochs: int = 20
    """Maximum passes over the training split (paper: 50, with early stopping)."""
    min_steps: int = 0
    """Train at least this many optimizer steps (small label budgets have few steps per epoch)."""
    warmup_epochs: float = 0.0
    """Linear learning-rate warm-up in epochs."""
    eval_batch_size: int = 256
    """Objects per batch when predicting."""
    model: AstroModelConfig = field(default_factory=demo_model_config)
    """Architecture when training from scratch (a CLIP run brings its own)."""
    trainer: TrainerConfig = field(default_factory=demo_finetune_trainer)
    """Shared trainer settings; max_steps, warmup_steps, validate_every and checkpoint_every are derived from
    the epoch settings above."""


@dataclass
class FinetuneResult:
    """Where a fine-tuning run wrote, its per-seed test metrics and their summary."""

    run_dir: Path
    per_seed: dict[int, dict[str, Any]]
    summary: dict[str, Any]


def classifier_validation(classifier: AstroClassifier, dataset: Any, batch_size: int, device: torch.device) -> dict:
    """Validation accuracy and mean cross-entropy over ``dataset``."""
    outputs = map_batches(lambda batch: {"logits": classifier(batch)["logits"], "label": batch["label"]},
                          dataset, batch_size, device)  # fmt: skip
    logits, labels = torch.from_numpy(outputs["logits"]), torch.from_numpy(outputs["label"]).long()
    return {
        "val_accuracy": float((logits.argmax(-1) == labels).float().mean()),
        "val_loss": float(F.cross_entropy(logits, labels)),
    }


def clip_run_for_seed(clip_run: str | None, seed: int) -> str | None:
    """``clip_run`` with ``{seed}`` filled in."""
    return clip_run.replace("{seed}", str(seed)) if clip_run else None


def finetune_one_seed(config: FinetuneConfig, seed: int, run_dir: Path) -> dict[str, Any]:
    """Train, select on validation and test one seed into ``run_dir/seed-<seed>``; returns test metrics."""
    clip_run = clip_run_for_seed(config.clip_run, seed)
    model_config = config.model
    clip_model = None
    if clip_run:
        clip_model, clip_values = load_pretrained_clip(clip_run)
        if int(clip_values.get("seed", seed)) != seed:
            raise ValueError(
                f"{clip_run} was pretrained on split seed {clip_values['seed']} but this is seed {seed}: its "
                "training objects overlap this seed's val/test objects; pretrain with --seed "
                f"{seed} (or pass --clip_run with '{{seed}}')"
            )
        model_config = model_config_from_dict(clip_values["model"])
    ingest_dir = resolve_ingest_dir(config.data, config.runs_root, config.demo_stars)
    splits = load_astro_splits(
        ingest_dir, config.subset, seed, model_config.photometry.seq_len, window_seed=config.trainer.seed
    )
    trainer_config = replace(config.trainer)
    derive_trainer_steps(
        trainer_config, len(splits.train), config.batch_size, config.epochs, config.warmup_epochs, config.min_steps
    )
    seed_everything(trainer_config.seed + seed)  # the head's initial weights depend on the seeds only
    classifier = AstroClassifier(config.mode, len(splits.classes), model_config, fusion=config.fusion)
    if clip_model is not None:
        classifier.load_clip_encoders(clip_model)
    seed_dir = run_dir / f"seed-{seed}"
    spec = {
        "mode": config.mode,
        "fusion": config.fusion,
        "subset": config.subset,
        "seed": seed,
        "data": str(ingest_dir),
        "clip_run": clip_run,
        "classes": splits.classes,
        "model": config_to_dict(model_config),
    }
    write_text_atomically(seed_dir / "classifier.json", json.dumps(spec, indent=2))
    trainer = Trainer(classifier, trainer_config, seed_dir)
    make_batches = epoch_aware_batches(splits.train, config.batch_size, seed=trainer_config.seed + seed)
    result = trainer.fit(
        make_batches, lambda model: classifier_validation(model, splits.val, config.eval_batch_size, trainer.device)
    )
    title = f"{config.mode} {'CLIP' if clip_run else 'no CLIP'} {config.subset} seed {seed}"
    metrics = evaluate_classifier(
        classifier, splits.test, splits.classes, seed_dir / "eval", config.eval_batch_size, trainer.device, title
    )
    metrics["best_val_accuracy"] = result.best_metric
    metrics["steps"] = result.step
    metrics["stop_reason"] = result.stop_reason
    metrics["n_train"] = len(splits.train)
    write_text_atomically(seed_dir / "eval" / "metrics.json", json.dumps(metrics, indent=2))
    return metrics


def run_finetune(config: FinetuneConfig) -> FinetuneResult:
    """Fine-tune every seed of ``config`` and summarise the test accuracy over seeds."""
    if config.mode not in FINETUNE_MODES:
        raise ValueError(f"mode must be one of {FINETUNE_MODES}, got {config.mode!r}")
    if not config.seeds:
        raise ValueError("give at least one seed")
    if len(config.seeds) > 1 and config.clip_run and "{seed}" not in config.clip_run:
        raise ValueError(
            "several seeds need one CLIP run per split seed: put '{seed}' in --clip_run "
            "(e.g. runs/astro/pretrain-demo-seed{seed})"
        )
    run_dir = run_dir_for("astro", config.run_name, root=config.runs_root)
    save_config(config, run_dir)
    per_seed = {seed: finetune_one_seed(config, seed, run_dir) for seed in config.seeds}
    summary = summarize_seeds(per_seed)
    summary.update(mode=config.mode, subset=config.subset, clip=bool(config.clip_run))
    write_text_atomically(run_dir / "eval" / "summary.json", json.dumps(summary, indent=2))
    return FinetuneResult(run_dir, per_seed, summary)


def main(argv: list[str] | None = None) -> FinetuneResult:
    """Command-line entry point (``python -m domains.astro.finetune --help``)."""
    config = parse_config(FinetuneConfig, argv, prog="python -m domains.astro.finetune", description=__doc__)
    result = run_finetune(config)
    accuracy = result.summary["accuracy"]
    values = ", ".join(f"{v:.4f}" for v in accuracy["values"])
    print(
        f"{config.mode} ({'CLIP init' if config.clip_run else 'no CLIP'}, {config.subset}) test accuracy "
        f"{np.round(accuracy['mean'], 4)} ± {np.round(accuracy['std'], 4)} over seeds {config.seeds} [{values}]"
    )
    print(f"wrote {result.run_dir} (config.yaml, seed-*/ with model.safetensors and eval/, eval/summary.json)")
    print(f"next: python -m domains.astro.evaluate --run {result.run_dir}")
    return result


if __name__ == "__main__":
    main()
