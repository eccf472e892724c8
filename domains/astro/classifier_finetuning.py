"""Fine-tuning AstroM3 classifiers (the work of ``python -m domains.astro.finetune``): one modality or all
three, with or without CLIP initialisation, one training per split seed.

Modes: ``photo`` / ``spectra`` / ``meta`` (that tower + a linear head on its raw features) and ``all``
(the three normalised projections averaged, then a linear head). With ``run`` the encoders start from a
pretraining run (unimodal modes take only their tower; the architecture is the CLIP run's) and all
weights are trained. Model selection and early stopping use validation metrics only; the test split is
touched once, at the end.

Run folder: ``config.yaml`` (the command's config, its budget as given) and per seed ``seed-<N>/`` with
that seed's resolved ``config.yaml`` (budget in steps for its split), ``metrics.csv``, ``checkpoints/``,
``model.safetensors``, ``classifier.json``, ``eval/metrics.json``, ``eval/confusion_matrix.png``; then
``eval/summary.json`` (test accuracy over seeds) and the ``run.json`` marker.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from domains.astro.classifier_evaluation import EVALUATION_OUTPUTS, evaluate_classifier, summarize_seeds
from domains.astro.clip_pretraining import check_validation_metrics, load_pretrained_clip
from domains.astro.datasets import (
    SUBSETS,
    epoch_aware_batches,
    load_astro_splits,
    map_batches,
    require_modalities,
    require_splits,
)
from domains.astro.finetune_recipes import RECIPES, apply_recipe
from domains.astro.ingest_pipeline import resolve_ingest_dir
from domains.astro.model import (
    FINETUNE_MODES,
    MODALITIES,
    MODE_TO_MODALITY,
    AstroClassifier,
    AstroModelConfig,
    demo_model_config,
    model_config_from_dict,
)
from domains.astro.training_budget import resolve_epoch_budget, with_epoch_budget
from shared.atomic_files import write_json_atomically
from shared.cli import config_to_dict
from shared.device import pick_device
from shared.distributed import on_main_process
from shared.run_folder import RunFolder
from shared.trainer import Trainer, TrainerConfig, check_trainer_config, seed_everything
from shared.user_errors import UserError

FINETUNE_COMMAND = "domains.astro.finetune"
"""The command name in a fine-tuning run's ``run.json`` marker."""

FUSIONS = ("avg", "concat")
"""How mode 'all' combines the three normalised embeddings."""


def demo_finetune_trainer() -> TrainerConfig:
    """Trainer settings of the CPU demo fine-tuning: the paper's shape (epochs with early stopping, a warm-up of a
    fifth of them, plateau schedule) at 20 epochs, 4 of warm-up; the recipe (``FinetuneConfig.recipe``) sets the
    optimizer, the selection on val accuracy and the early stopping on val loss."""
    return with_epoch_budget(
        TrainerConfig(
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
        ),
        max_epochs=20,
        warmup_epochs=4,
    )


@dataclass
class FinetuneConfig:
    """Supervised fine-tuning of AstroM3 classifiers (defaults: CPU demo, photometry, no CLIP)."""

    run_name: str = "finetune-demo"
    """Output folder name under runs/astro/."""
    runs_root: str = "runs"
    """Root of the run folders."""
    input: str | None = None
    """Ingest folder (python -m domains.astro.ingest); empty: the built-in demo set."""
    demo_stars: int = 2000
    """Stars in the built-in demo set (only without --input)."""
    mode: str = "photo"
    """photo, spectra, meta (one modality) or all (the three fused)."""
    subset: str = "full"
    """Label budget: full, sub50, sub25 or sub10."""
    seeds: list[int] = field(default_factory=lambda: [42])
    """Split seeds to run (paper: 42 66 0 12 123); each gets its own seed-<N> folder."""
    run: str | None = None
    """Pretraining run (domains.astro.pretrain) to initialise the encoders from; '{seed}' in it is replaced by
    each split seed. Empty: random initialisation."""
    fusion: str = "avg"
    """Mode 'all' only: avg (paper) or concat of the three normalised embeddings."""
    recipe: str = "official"
    """official: AstroM3's per-mode, per-budget optimizer settings and tower dropout (Adam with coupled decay,
    its learning rate, beta1, decay, clip and plateau factor; kept weights = best val accuracy, early stop on
    val loss; see domains/astro/finetune_recipes.py), the budget and warm-up staying trainer.max_epochs and
    trainer.warmup_epochs; none: the trainer settings exactly as given."""
    batch_size: int = 32
    """Objects per training batch."""
    min_steps: int = 0
    """Floor on the steps an epoch budget gives (small label budgets have few steps per epoch); a seed whose
    trainer.max_epochs give fewer trains min_steps steps (its seed-<N>/config.yaml says so)."""
    eval_batch_size: int = 256
    """Objects per batch when predicting."""
    model: AstroModelConfig = field(default_factory=demo_model_config)
    """Architecture when training from scratch (a CLIP run brings its own)."""
    trainer: TrainerConfig = field(default_factory=demo_finetune_trainer)
    """Shared trainer settings; the budget is in epochs (trainer.max_epochs, paper: 50 with early stopping),
    resolved into steps per seed before that seed's config is saved."""


@dataclass
class FinetuneResult:
    """Where a fine-tuning run wrote, its per-seed test metrics and their summary."""

    run_dir: Path
    per_seed: dict[int, dict[str, Any]]
    summary: dict[str, Any]


def classifier_validation(
    classifier: AstroClassifier, dataset: Any, batch_size: int, device: torch.device
) -> dict[str, float]:
    """Validation accuracy and mean cross-entropy over ``dataset``."""
    outputs = map_batches(
        lambda batch: {"logits": classifier(batch)["logits"], "label": batch["label"]}, dataset, batch_size, device
    )
    logits, labels = torch.from_numpy(outputs["logits"]), torch.from_numpy(outputs["label"]).long()
    return {
        "val_accuracy": float((logits.argmax(-1) == labels).float().mean()),
        "val_loss": float(F.cross_entropy(logits, labels)),
    }


def clip_run_for_seed(run: str | None, seed: int) -> str | None:
    """The pretraining run ``run`` with ``{seed}`` filled in."""
    return run.replace("{seed}", str(seed)) if run else None


def finetune_one_seed(
    config: FinetuneConfig, seed: int, run_dir: Path, trainer_flags: str = "--trainer."
) -> dict[str, Any]:
    """Train, select on validation and test one seed into ``run_dir/seed-<seed>``; returns test metrics."""
    clip_run = clip_run_for_seed(config.run, seed)
    model_config = config.model
    clip_model = None
    if clip_run:
        clip_model, clip_values = load_pretrained_clip(clip_run, flag="--run")
        if int(clip_values.get("seed", seed)) != seed:
            raise ValueError(
                f"--run {clip_run} was pretrained on split seed {clip_values['seed']} but this is seed {seed}: its "
                "training objects overlap this seed's val/test objects; pretrain with --seed "
                f"{seed} (or pass --run with '{{seed}}')"
            )
        model_config = model_config_from_dict(clip_values["model"])
    recipe_trainer, model_config = apply_recipe(config.trainer, model_config, config.mode, config.subset, config.recipe)
    ingest_dir = resolve_ingest_dir(config.input, config.runs_root, config.demo_stars)
    splits = load_astro_splits(
        ingest_dir, config.subset, seed, model_config.photometry.seq_len, window_seed=config.trainer.seed
    )
    trainer_config = resolve_epoch_budget(
        recipe_trainer, len(splits.train), config.batch_size, config.min_steps, flag_prefix=trainer_flags
    )
    seed_folder = RunFolder(run_dir).child(f"seed-{seed}")
    resolved = dataclasses.replace(
        config, input=str(ingest_dir), seeds=[seed], run=clip_run, model=model_config, trainer=trainer_config
    )
    seed_folder.save_config(resolved)
    if config.trainer.max_epochs is not None and trainer_config.max_epochs is None:
        print(f"seed {seed}: the epoch budget is under --min_steps; training {trainer_config.max_steps} steps")
    seed_everything(trainer_config.seed + seed)  # the head's initial weights depend on the seeds only
    classifier = AstroClassifier(config.mode, len(splits.classes), model_config, fusion=config.fusion)
    if clip_model is not None:
        classifier.load_clip_encoders(clip_model)
    spec = {
        "mode": config.mode,
        "fusion": config.fusion,
        "subset": config.subset,
        "seed": seed,
        "input": str(ingest_dir),
        "clip_run": clip_run,
        "classes": splits.classes,
        "model": config_to_dict(model_config),
    }
    write_json_atomically(seed_folder.path / "classifier.json", spec)
    trainer = Trainer(classifier, trainer_config, seed_folder.path)
    make_batches = epoch_aware_batches(splits.train, config.batch_size, seed=trainer_config.seed + seed)
    result = trainer.fit(
        make_batches, lambda model: classifier_validation(model, splits.val, config.eval_batch_size, trainer.device)
    )
    title = f"{config.mode} {'CLIP' if clip_run else 'no CLIP'} {config.subset} seed {seed}"
    metrics = on_main_process(  # once, on rank 0 (it writes the evaluation pictures)
        lambda: evaluate_classifier(
            classifier,
            splits.test,
            splits.classes,
            seed_folder.eval_dir(),
            config.eval_batch_size,
            trainer.device,
            title,
        )
    )
    metrics["best_val_accuracy"] = result.best_metric
    metrics["steps"] = result.step
    metrics["stop_reason"] = result.stop_reason
    metrics["n_train"] = len(splits.train)
    seed_folder.write_eval_metrics(metrics)
    return metrics


VALIDATION_METRICS = ("val_accuracy", "val_loss")
"""What fine-tuning's validation reports (the choices of ``trainer.select_metric``/``trainer.stop_metric``)."""


def _check_config(config: FinetuneConfig, trainer_flags: str) -> None:
    check_trainer_config(config.trainer, trainer_flags)
    check_validation_metrics(config.trainer, VALIDATION_METRICS, trainer_flags)
    pick_device(config.trainer.device, f"{trainer_flags}device")
    if config.mode not in FINETUNE_MODES:
        raise UserError(f"--mode: must be one of {list(FINETUNE_MODES)}, got {config.mode!r}")
    if config.subset not in SUBSETS:
        raise UserError(f"--subset: must be one of {list(SUBSETS)}, got {config.subset!r}")
    if config.recipe not in RECIPES:
        raise UserError(f"--recipe: must be one of {list(RECIPES)}, got {config.recipe!r}")
    if config.fusion not in FUSIONS:
        raise UserError(f"--fusion: must be one of {list(FUSIONS)}, got {config.fusion!r}")
    if not config.seeds:
        raise UserError("--seeds: give at least one split seed")
    if config.eval_batch_size < 1:
        raise UserError(f"--eval_batch_size: must be >= 1, got {config.eval_batch_size}")
    if config.min_steps < 0:
        raise UserError(f"--min_steps: must be >= 0, got {config.min_steps}")
    if len(config.seeds) > 1 and config.run and "{seed}" not in config.run:
        raise ValueError(
            "--run: several seeds need one CLIP run per split seed: put '{seed}' in --run "
            "(e.g. runs/astro/pretrain-demo-seed{seed})"
        )


def run_finetune(config: FinetuneConfig, trainer_flags: str = "--trainer.") -> FinetuneResult:
    """Fine-tune every seed of ``config`` and summarise the test accuracy over seeds.

    Args:
        config: The settings as given (the trainer's budget may be in epochs).
        trainer_flags: How the calling command spells the trainer's flags, for messages.
    """
    _check_config(config, trainer_flags)
    ingest_dir = resolve_ingest_dir(config.input, config.runs_root, config.demo_stars)
    require_splits(ingest_dir, [config.subset], config.seeds)
    needed = list(MODALITIES) if config.mode == "all" else [MODE_TO_MODALITY[config.mode]]
    require_modalities(ingest_dir, needed, f"--mode {config.mode}")
    config = dataclasses.replace(config, input=str(ingest_dir))
    folder = RunFolder.create("astro", config.run_name, config.runs_root)
    folder.clear_finished()
    folder.save_config(config)
    per_seed = {seed: finetune_one_seed(config, seed, folder.path, trainer_flags) for seed in config.seeds}
    summary = summarize_seeds(per_seed)
    summary.update(mode=config.mode, subset=config.subset, clip=bool(config.run))
    write_json_atomically(folder.path / "eval" / "summary.json", summary)
    per_seed_outputs = [
        f"seed-{seed}/{name}"
        for seed in config.seeds
        for name in ("config.yaml", "classifier.json", "metrics.csv", "model.safetensors", *EVALUATION_OUTPUTS)
    ]
    folder.mark_finished(
        command=FINETUNE_COMMAND,
        outputs=["config.yaml", "eval/summary.json", *per_seed_outputs],
        summary={"test_accuracy_mean": summary["accuracy"]["mean"], "seeds": len(config.seeds)},
    )
    return FinetuneResult(folder.path, per_seed, summary)
