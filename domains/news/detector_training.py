"""Training of the FND-CLIP detector: validation-only model selection, then one look at the test split.

:func:`train_detector` is what ``python -m domains.news.train`` runs: it loads (or builds, for the built-in
default) the shards, computes or reads the cached frozen features, splits the posts, resolves the trainer's
budget, saves the run's ``config.yaml``, fits the stand-in CLIP on the training split, trains the head with
the core :class:`~shared.trainer.Trainer`, tests the validation-selected weights once and marks the run
folder finished. :func:`prepare_data` and :func:`train_head` are the pieces the ablations reuse.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from domains.news.data import REAL
from domains.news.detector_metrics import EVAL_PICTURES, metrics_for_rows, predict_rows, write_eval_pictures
from domains.news.feature_cache import DEFAULT_CACHE_DIR, PostTable, load_post_table, set_cpu_threads
from domains.news.frozen_encoders import ALIGNMENT_FILE, EncoderConfig, NewsEncoders
from domains.news.ingestion import DEFAULT_SHARDS, ensure_builtin_shards
from domains.news.model import FEATURE_KEYS, FNDCLIPModel, HeadConfig, build_model
from domains.news.similarity_gauge import post_strategies, roc_auc_by_kind, similarity_gauge_auc
from domains.news.splits import check_fractions, pair_groups, split_rows
from domains.news.trained_detector import DETECTOR_FILE, save_detector
from shared.checkpoints import check_resume
from shared.distributed import launched_world_size, main_process_first, on_main_process, per_rank_batch_size
from shared.run_folder import RunFolder
from shared.trainer import TrainerConfig, check_trainer_config, resolve_budget, with_step_defaults
from shared.user_errors import UserError

TRAIN_COMMAND = "domains.news.train"
VALIDATION_METRICS = ("accuracy", "roc_auc", "macro_f1")
"""What the validation pass reports: the choices for ``--trainer.select_metric`` and ``--trainer.stop_metric``."""
_EPOCH_FIELDS = ("max_epochs", "warmup_epochs", "validate_every_epochs", "checkpoint_every_epochs")


def demo_trainer_config() -> TrainerConfig:
    """The official recipe's optimiser (Adam, lr 1e-3, no weight decay) with validation-based selection."""
    return TrainerConfig(
        max_steps=600,
        lr=1e-3,
        weight_decay=0.0,
        betas=(0.9, 0.999),
        eps=1e-8,
        schedule="constant",
        checkpoint_every=200,
        keep_last=1,
        log_every=50,
        validate_every=20,
        select_metric="roc_auc",
        select_mode="max",
        early_stopping_patience=10,
        seed=64,
        progress_bar=False,
    )


@dataclass
class TrainConfig:
    """Train the FND-CLIP fake-news detector on ingested shards."""

    input: str = DEFAULT_SHARDS
    """Shard folder from domains.news.ingest (the default is built from the built-in set when missing)."""
    run_name: str = "demo"
    """Run folder name under runs/news/."""
    runs_root: str = "runs"
    """Root of all run folders."""
    batch_size: int = 64
    """Posts per optimizer step (official: 64)."""
    val_fraction: float = 0.15
    """Share of the training posts held out for validation when the data has no val split."""
    test_fraction: float = 0.15
    """Share of all posts held out for testing when the data has no splits at all."""
    cache_dir: str | None = DEFAULT_CACHE_DIR
    """Where frozen features are cached (None: recompute every time)."""
    device: str = "auto"
    """auto (CUDA when available), cpu or cuda."""
    cpu_threads: int = 1
    """torch CPU threads for features and training (a CPU run is bit-for-bit repeatable for a given value; 0 = torch's default)."""
    encoders: EncoderConfig = field(default_factory=EncoderConfig)
    """Frozen encoders."""
    head: HeadConfig = field(default_factory=HeadConfig)
    """FND-CLIP head."""
    trainer: TrainerConfig = field(default_factory=demo_trainer_config)
    """Optimisation, selection on validation (select_metric), early stopping, checkpoints."""


@dataclass
class PreparedData:
    """Everything the heads train on: encoders, posts, model inputs and split rows."""

    encoders: NewsEncoders
    table: PostTable
    features: dict[str, torch.Tensor]
    rows: dict[str, np.ndarray]


@dataclass
class TrainOutcome:
    """A finished training run: the config exactly as it ran, its folder and the test metrics."""

    config: TrainConfig
    folder: RunFolder
    test: dict[str, Any]


def check_trainer_settings(trainer: TrainerConfig, flag_prefix: str = "--trainer.") -> None:
    """Refuse trainer settings that cannot run, before any data is read.

    A budget given in steps only is checked here; epoch budgets are resolved once the data is split.

    Raises:
        UserError: a setting the core trainer refuses, no or a non-positive step budget, or a
            selection/stopping metric that validation does not report.
    """
    check_trainer_config(trainer, flag_prefix)
    if all(getattr(trainer, name) is None for name in _EPOCH_FIELDS):
        with_step_defaults(trainer, flag_prefix)
    for name in ("select_metric", "stop_metric"):
        value = getattr(trainer, name)
        if value is not None and value not in VALIDATION_METRICS:
            raise UserError(f"{flag_prefix}{name}: must be one of {', '.join(VALIDATION_METRICS)}, got {value!r}")


def check_train_config(config: TrainConfig) -> None:
    """Every check of a training config that needs no data (see the ``check_*`` functions)."""
    if config.batch_size < 1:
        raise UserError(f"--batch_size: must be >= 1, got {config.batch_size}")
    if config.cpu_threads < 0:
        raise UserError(f"--cpu_threads: must be >= 0, got {config.cpu_threads}")
    check_fractions(config.val_fraction, config.test_fraction)
    config.encoders.check()
    config.head.check()
    check_trainer_settings(config.trainer)


def steps_per_epoch(train_posts: int, batch_size: int) -> int:
    """Optimizer steps in one pass over ``train_posts`` (incomplete batches are dropped, as in training).

    ``batch_size`` is per process: under torchrun one step takes ``batch_size`` x world size posts.
    """
    global_batch = batch_size * launched_world_size()
    return max(1, train_posts // max(1, min(global_batch, train_posts)))


def load_training_posts(
    shards: Path,
    encoders_config: EncoderConfig,
    device: str,
    cache_dir: str | None,
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> tuple[NewsEncoders, PostTable, dict[str, np.ndarray]]:
    """The frozen encoders, the posts with their (cached) base features, and the train/val/test rows."""
    from shared.device import pick_device
    from shared.trainer import seed_everything

    seed_everything(seed)  # the stand-in CLIP's initial projections come from the run's seed
    encoders = NewsEncoders(encoders_config, device=pick_device(device))
    table = load_post_table(shards, encoders, cache_dir)
    return encoders, table, split_rows(table, val_fraction, test_fraction, seed)


def load_posts_for_training(config: TrainConfig, shards: Path) -> tuple[NewsEncoders, PostTable, dict[str, np.ndarray]]:
    """:func:`load_training_posts` with a training config's encoders, device, cache, split fractions and seed."""
    return load_training_posts(
        shards,
        config.encoders,
        config.device,
        config.cache_dir,
        config.val_fraction,
        config.test_fraction,
        config.trainer.seed,
    )


def fit_clip_features(
    encoders: NewsEncoders, table: PostTable, rows: dict[str, np.ndarray], run_dir: Path, seed: int
) -> PreparedData:
    """Fit the stand-in CLIP on the training split (if used) and finish the model inputs of every post."""
    genuine = table.labels == REAL
    out_of_fold = encoders.fit_alignment(table.base, rows["train"], genuine, pair_groups(table), run_dir, seed=seed)
    features = encoders.finish(table.base)
    if out_of_fold is not None:
        features["clip_text"][out_of_fold["rows"]] = out_of_fold["clip_text"]
        features["clip_image"][out_of_fold["rows"]] = out_of_fold["clip_image"]
    return PreparedData(encoders, table, features, rows)


def prepare_data(config: TrainConfig, run_dir: Path) -> PreparedData:
    """Load the shards' posts and features, split them, fit the stand-in CLIP on the training split.

    The built-in default shard folder is built first when missing (one line says so).
    """
    with main_process_first("building the built-in shards and the feature cache"):
        shards = ensure_builtin_shards(config.input)
        encoders, table, rows = load_posts_for_training(config, shards)
    return fit_clip_features(encoders, table, rows, run_dir, config.trainer.seed)


def _rows_dataset(features: dict[str, torch.Tensor], labels: np.ndarray, rows: np.ndarray) -> Any:
    from shared.data_iteration import TensorDictDataset

    index = torch.as_tensor(rows)
    columns = {k: features[k][index] for k in FEATURE_KEYS if k in features}
    columns["label"] = torch.as_tensor(labels[rows])
    return TensorDictDataset(columns)


def train_head(
    prepared: PreparedData, head: HeadConfig, trainer_config: TrainerConfig, batch_size: int, run_dir: Path
) -> tuple[FNDCLIPModel, dict[str, Any]]:
    """Train one FND-CLIP model with the core Trainer; select the best validation checkpoint; test it once.

    Returns:
        The selected model and its test-split metrics.
    """
    from shared.checkpoints import load_weights
    from shared.data_iteration import batches_from_dataset
    from shared.trainer import Trainer, seed_everything

    seed_everything(trainer_config.seed)  # the initial weights too, not only what the trainer draws
    device = prepared.encoders.device
    labels = prepared.table.labels
    tower = prepared.encoders.trainable_image_tower
    # Each run fine-tunes its own copy, so ablation variants all start from the pretrained tower.
    model = build_model(prepared.encoders.dims, head, image_tower=copy.deepcopy(tower) if tower is not None else None)
    dataset = _rows_dataset(prepared.features, labels, prepared.rows["train"])
    # batch_size is per process; a data set smaller than the global batch is one global batch.
    make_batches = batches_from_dataset(
        dataset, min(batch_size, per_rank_batch_size(len(dataset))), seed=trainer_config.seed
    )

    def validate(current: FNDCLIPModel) -> dict[str, float]:
        metrics = metrics_for_rows(current, prepared.features, labels, prepared.rows["val"], device)
        # Selection needs a number: a one-class validation split (ROC-AUC undefined) never counts as better.
        return {"accuracy": metrics["accuracy"], "roc_auc": metrics["roc_auc"] or 0.0, "macro_f1": metrics["macro_f1"]}

    trainer = Trainer(model, trainer_config, run_dir)
    result = trainer.fit(make_batches, validate=validate)
    best = run_dir / "checkpoints" / "best.safetensors"
    if best.is_file():
        load_weights(model, best)
    model.to(device)
    test_rows = prepared.rows["test"]

    def test_metrics() -> dict[str, Any]:
        metrics = metrics_for_rows(model, prepared.features, labels, test_rows, device)
        probs = predict_rows(model, prepared.features, test_rows, device)["probs"][:, 1]
        strategies = post_strategies(prepared.table.meta)
        metrics["roc_auc_by_kind"] = roc_auc_by_kind(labels[test_rows], probs, [strategies[i] for i in test_rows])
        return metrics

    test = on_main_process(test_metrics, "the test evaluation")  # once, on rank 0 (torchrun); sent to all
    test["selected_on"] = f"val {trainer_config.select_metric} = {result.best_metric}"
    test["steps"] = result.step
    test["stop_reason"] = result.stop_reason
    return model, test


def train_detector(config: TrainConfig, command: str = TRAIN_COMMAND) -> TrainOutcome:
    """Train, select on validation, evaluate on test, save the detector and mark the run folder finished.

    The trainer's epoch settings are resolved into steps before ``config.yaml`` is saved; nothing in the
    saved config is changed afterwards.

    Raises:
        UserError: a bad setting or input, named (see :func:`check_train_config`, :func:`shared.checkpoints.check_resume`).
    """
    check_train_config(config)
    with main_process_first("building the built-in shards"):  # under torchrun: rank 0 builds, the others wait
        shards = ensure_builtin_shards(config.input)
    folder = RunFolder.create("news", config.run_name, config.runs_root)
    check_resume(config.trainer.resume, folder.checkpoints_dir)
    folder.clear_finished()
    set_cpu_threads(config.cpu_threads)
    with main_process_first("building the feature cache"):  # rank 0 writes the cache, the others then read it
        encoders, table, rows = load_posts_for_training(config, shards)
    trainer = resolve_budget(config.trainer, steps_per_epoch(len(rows["train"]), config.batch_size))
    config = dataclasses.replace(config, trainer=trainer)
    folder.save_config(config)
    prepared = fit_clip_features(encoders, table, rows, folder.path, config.trainer.seed)
    model, test = train_head(prepared, config.head, config.trainer, config.batch_size, folder.path)
    save_detector(folder.path, prepared.encoders, config.head)
    test_rows = prepared.rows["test"]
    predicted = on_main_process(
        lambda: predict_rows(model, prepared.features, test_rows, prepared.encoders.device), "the test predictions"
    )
    test["split_sizes"] = {k: len(v) for k, v in prepared.rows.items()}
    test["similarity_gauge_roc_auc"] = similarity_gauge_auc(
        prepared.features, prepared.table.labels, test_rows, post_strategies(prepared.table.meta)
    )
    test["data"] = config.input
    write_eval_pictures(folder.eval_dir(), test, predicted["probs"][:, 1], prepared.table.labels[test_rows])
    metrics_path = folder.write_eval_metrics(test)
    outputs = ["config.yaml", "metrics.csv", DETECTOR_FILE, "model.safetensors", "checkpoints/best.safetensors"]
    outputs += [ALIGNMENT_FILE] if prepared.encoders.aligned else []
    outputs += [str(metrics_path.relative_to(folder.path)), *EVAL_PICTURES]
    # No validation-selected weights when nothing selects them (--trainer.select_metric null).
    outputs = [name for name in outputs if name != "checkpoints/best.safetensors" or (folder.path / name).is_file()]
    folder.mark_finished(
        command, outputs, summary={"roc_auc": test["roc_auc"], "accuracy": test["accuracy"], "ece": test["ece"]}
    )
    return TrainOutcome(config, folder, test)
