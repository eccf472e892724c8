"""Fitting, evaluating and reloading one LLMRec recommender (the library behind ``train``, ``evaluate`` …).

A trained run folder (``runs/recsys/<run-name>/``, see :mod:`shared.run_folder`) holds ``config.yaml``
(exactly what ran), ``recommender.json`` (what :func:`load_run` needs to rebuild the model and its data
split: input, dataset, model settings and the augmentation folder it read), ``model.safetensors`` (weights
selected on validation), ``metrics.csv``, ``checkpoints/``, ``eval/metrics.json`` and the ``run.json``
marker.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from domains.recsys.llmrec import text_features
from domains.recsys.llmrec.augmentation_files import Augmentation, read_augmentation
from domains.recsys.llmrec.bpr_sampling import BprBatches
from domains.recsys.llmrec.datasets import DatasetConfig, load_dataset
from domains.recsys.llmrec.graphs import items_by_user
from domains.recsys.llmrec.interactions import InteractionData
from domains.recsys.llmrec.model import LLMRecModel, RecommenderConfig, attribute_feature_matrices
from domains.recsys.llmrec.ranking_metrics import full_ranking_metrics
from domains.recsys.llmrec.released_layout import llmrec_layout_augmentation
from domains.recsys.recbole_io import RecboleTables
from shared.atomic_files import write_json_atomically
from shared.checkpoints import load_weights
from shared.cli import config_to_dict
from shared.device import pick_device
from shared.run_folder import FINISHED_MARKER, RunFolder
from shared.trainer import Trainer, TrainerConfig, TrainResult, resolve_budget
from shared.user_errors import UserError

MANIFEST_FILE = "recommender.json"
"""What :func:`load_run` reads to rebuild a trained recommender (beside ``model.safetensors``)."""
WEIGHTS_FILE = "model.safetensors"
NDCG_VARIANTS = ("standard", "llmrec")
TEST_EXCLUSIONS = ("train+val", "train")
"""What test ranking excludes: known training and validation items (ours), or training items only (the
official LLMRec ``test_one_user``; use it to set numbers beside the paper's)."""


@dataclass
class FitConfig:
    """How batches are made and evaluated (the budget, validation cadence, selection and seed are trainer.*)."""

    batch_size: int = 4096
    """Observed (user, positive) pairs per batch, each with one uniform negative (LLMRec: 1024; a larger
    batch with a larger learning rate trains ML-100K in far fewer full-graph propagations on CPU)."""
    augmented_share: float = 0.1
    """Augmented triplets appended to each batch, as a fraction of batch_size (LLMRec ω3 = 0.1)."""
    eval_batch_users: int = 1024
    """Users scored at once in full-ranking evaluation."""
    test_excludes: str = "train+val"
    """Items left out of each user's test ranking: 'train+val' (every known interaction) or 'train' (training
    items only, as LLMRec's code does, to set numbers beside the paper's). Validation always excludes train."""
    cpu_threads: int | None = 1
    """torch CPU threads when training on CPU (1 avoids thread contention that makes the sparse backward
    several times slower on small or shared machines); null keeps torch's default."""


def default_trainer_config() -> TrainerConfig:
    """Trainer settings for BPR on ID embeddings: 20 epochs, validation every 2 selecting on recall@20.

    lr 5e-3 (for batch 4096), no decoupled weight decay, early stopping after 3 validations without
    improvement, seed 2022 (initialisation and batch order). The budget is in epochs (``max_steps`` null),
    resolved to steps from the training split before the config is saved.
    """
    return TrainerConfig(
        max_steps=None,
        max_epochs=20,
        lr=5e-3,
        weight_decay=0.0,
        betas=(0.9, 0.999),
        eps=1e-8,
        schedule="constant",
        checkpoint_every=500,
        keep_last=2,
        log_every=20,
        validate_every=None,
        validate_every_epochs=2,
        select_metric="recall@20",
        select_mode="max",
        early_stopping_patience=3,
        seed=2022,
        progress_bar=False,
    )


def check_fit_config(fit: FitConfig, prefix: str = "--fit.") -> None:
    """Refuses batch settings that cannot work, naming the flag.

    Raises:
        UserError: a batch size, evaluation batch or thread count below 1, or a negative augmented share.
    """
    for name in ("batch_size", "eval_batch_users"):
        if getattr(fit, name) < 1:
            raise UserError(f"{prefix}{name}: must be >= 1, got {getattr(fit, name)}")
    if fit.cpu_threads is not None and fit.cpu_threads < 1:
        raise UserError(f"{prefix}cpu_threads: must be >= 1 or null, got {fit.cpu_threads}")
    if fit.test_excludes not in TEST_EXCLUSIONS:
        raise UserError(f"{prefix}test_excludes: must be one of {TEST_EXCLUSIONS}, got {fit.test_excludes!r}")
    if not 0.0 <= fit.augmented_share <= 1.0:
        raise UserError(f"{prefix}augmented_share: must be in [0, 1], got {fit.augmented_share}")


def steps_per_epoch(data: InteractionData, fit: FitConfig) -> int:
    """Optimizer steps in one pass over the training pairs (one batch per step)."""
    return math.ceil(len(data.train) / fit.batch_size)


def resolve_trainer(trainer: TrainerConfig, data: InteractionData, fit: FitConfig) -> TrainerConfig:
    """The trainer settings with every epoch budget turned into steps for ``data`` (call before saving).

    Raises:
        UserError: an epoch setting and its step setting are both given and disagree (both flags named).
    """
    check_fit_config(fit)
    return resolve_budget(trainer, steps_per_epoch(data, fit))


def build_model(
    data: InteractionData, config: RecommenderConfig, augmentation: Augmentation | None = None
) -> LLMRecModel:
    """The recommender for ``data``: graphs from the training split, side features, merged attributes.

    Attributes (the data's own, e.g. KG director/country/language, plus any augmented ones) become one
    multi-hot feature matrix per attribute name (:func:`attribute_feature_matrices`); augmented profile texts
    are embedded with MiniLM (users without a profile get a zero row).
    """
    attributes = [dict(item) for item in data.item_attributes] or [{} for _ in range(data.n_items)]
    profile_features = data.user_profile_features
    if augmentation is not None:
        for item, extra in augmentation.item_attributes.items():
            for name, values in extra.items():
                merged = attributes[item].setdefault(name, [])
                merged.extend(value for value in values if value not in merged)
        if augmentation.user_profiles and config.use_user_profiles:
            texts = [augmentation.user_profiles.get(user, "") for user in range(data.n_users)]
            profile_features = text_features.encode_texts_minilm(texts, max_length=128)
            profile_features[[not text for text in texts]] = 0.0
    return LLMRecModel(
        data.n_users,
        data.n_items,
        data.train,
        config,
        item_text_features=data.item_text_features,
        item_attribute_features=attribute_feature_matrices(attributes) if config.use_item_attributes else None,
        user_profile_features=profile_features,
        item_image_features=data.item_image_features,
    )


def evaluate_split(
    model: LLMRecModel,
    data: InteractionData,
    split: str = "test",
    ks: tuple[int, ...] = (10, 20, 50),
    batch_users: int = 1024,
    ndcg_variant: str = "standard",
    test_excludes: str = "train+val",
) -> dict[str, float]:
    """Full-ranking metrics on ``split`` ('val' or 'test').

    Validation excludes training items; test excludes training and validation items (both are known
    interactions by then), or training items only with ``test_excludes='train'`` (LLMRec's protocol).
    Pairs in ``data.held_out_known`` (known, in no split) are excluded from every ranking.
    """
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    if test_excludes not in TEST_EXCLUSIONS:
        raise ValueError(f"test_excludes must be one of {TEST_EXCLUSIONS}, got {test_excludes!r}")
    only_train = split == "val" or test_excludes == "train"
    known = data.train if only_train else np.concatenate([data.train, data.val])
    if data.held_out_known is not None and len(data.held_out_known):
        known = np.concatenate([known, data.held_out_known])
    truth = data.val if split == "val" else data.test
    users, items = model.user_item_embeddings()
    return full_ranking_metrics(
        users,
        items,
        items_by_user(truth, data.n_users, data.n_items),
        exclude=items_by_user(known, data.n_users, data.n_items),
        ks=ks,
        batch_users=batch_users,
        ndcg_variant=ndcg_variant,
    )


def headline_test_metrics(
    model: LLMRecModel, data: InteractionData, fit: FitConfig, ndcg_variant: str
) -> dict[str, float]:
    """Test metrics with ``ndcg_variant`` as the headline NDCG and the other variant as ``ndcg@K_<variant>``."""
    settings = {"batch_users": fit.eval_batch_users, "test_excludes": fit.test_excludes}
    metrics = evaluate_split(model, data, "test", ndcg_variant=ndcg_variant, **settings)
    other = "llmrec" if ndcg_variant == "standard" else "standard"
    alternative = evaluate_split(model, data, "test", ndcg_variant=other, **settings)
    metrics.update({f"{name}_{other}": value for name, value in alternative.items() if name.startswith("ndcg")})
    return metrics


def train_recommender(
    data: InteractionData,
    model_config: RecommenderConfig,
    fit: FitConfig,
    trainer_config: TrainerConfig,
    run_dir: str | Path,
    augmentation: Augmentation | None = None,
) -> tuple[LLMRecModel, TrainResult]:
    """Trains a recommender through the shared trainer, selecting on the validation split.

    Args:
        data: Split interactions.
        model_config: Architecture and loss settings.
        fit: Batches (size, augmented share) and evaluation batch.
        trainer_config: Shared trainer settings, resolved to steps (:func:`resolve_trainer`); used as given:
            its ``seed`` seeds the initialisation, the batch order and the trainer.
        run_dir: Run folder (metrics.csv, checkpoints/, model.safetensors).
        augmentation: Augmented triplets/attributes/profiles, or ``None``.

    Returns:
        The trained model (best validation weights) and the trainer's result.
    """
    if trainer_config.max_steps is None:
        raise ValueError("trainer_config has an unresolved epoch budget: call resolve_trainer first")
    if fit.cpu_threads and pick_device(trainer_config.device).type == "cpu":
        torch.set_num_threads(fit.cpu_threads)
    torch.manual_seed(trainer_config.seed)
    model = build_model(data, model_config, augmentation)
    edges = augmentation.edges if augmentation is not None and len(augmentation.edges) else None
    batches = BprBatches(
        data.train,
        data.n_items,
        fit.batch_size,
        edges,
        fit.augmented_share if edges is not None else 0.0,
        trainer_config.seed,
        augmented_is_noise=augmentation.edge_is_noise if edges is not None else None,
    )

    def validate(trained: torch.nn.Module) -> dict[str, float]:
        metrics = evaluate_split(trained, data, "val", ks=(20,), batch_users=fit.eval_batch_users)
        return {name: value for name, value in metrics.items() if name != "users"}

    trainer = Trainer(model, trainer_config, run_dir)
    result = trainer.fit(batches, validate=validate)
    return model, result


@dataclass
class LoadedRun:
    """A trained run rebuilt from its folder.

    Attributes:
        model: The recommender with the run's selected weights, in eval mode.
        data: The data split it was trained and evaluated on.
        tables: The raw RecBole tables (``None`` for other sources).
        config: The run's ``config.yaml`` (exactly what ran).
        run_dir: The run folder.
    """

    model: LLMRecModel
    data: InteractionData
    tables: RecboleTables | None
    config: dict[str, Any]
    run_dir: Path


def write_run_manifest(
    run_dir: Path, source: str, dataset: DatasetConfig, model: RecommenderConfig, augmentation_dir: str | None
) -> Path:
    """Writes ``recommender.json``: what :func:`load_run` needs to rebuild the model (atomically).

    An augmentation folder inside the run folder is recorded relative to it, so the run can be moved.
    """
    if augmentation_dir not in (None, "layout"):
        folder = Path(augmentation_dir)
        if folder.is_relative_to(run_dir):
            augmentation_dir = str(folder.relative_to(run_dir))
    manifest = {
        "input": source,
        "dataset": config_to_dict(dataset),
        "model": config_to_dict(model),
        "augmentation_dir": augmentation_dir,
    }
    return write_json_atomically(run_dir / MANIFEST_FILE, manifest)


def open_trained_run(run_dir: str | Path, flag: str = "--run") -> RunFolder:
    """The finished run folder of a trained recommender given by the user.

    Raises:
        UserError: the folder does not exist, did not finish, or is not a trained recommender.
    """
    run = RunFolder.open(run_dir, flag, require=FINISHED_MARKER)
    for name in (MANIFEST_FILE, WEIGHTS_FILE):
        if not (run.path / name).is_file():
            raise UserError(f"{flag} {run_dir}: {name} is missing; is it a finished `domains.recsys.train` run?")
    return run


def load_run(run_dir: str | Path, device: str | torch.device = "cpu", flag: str = "--run") -> LoadedRun:
    """Rebuilds a trained recommender and its data split from ``run_dir``.

    Raises:
        UserError: ``run_dir`` is not a finished ``domains.recsys.train`` run, or its manifest is unreadable.
    """
    run = open_trained_run(run_dir, flag)
    manifest_path = run.path / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        dataset = DatasetConfig(**{**manifest["dataset"], "split_ratios": tuple(manifest["dataset"]["split_ratios"])})
        model_config = RecommenderConfig(**manifest["model"])
        source = manifest["input"]
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f"{manifest_path}: not a recommender manifest of this version ({error}); retrain") from None
    data, tables = load_dataset(source, dataset, flag=f"{manifest_path} input")
    augmentation = None
    augmentation_dir = manifest.get("augmentation_dir")
    if augmentation_dir == "layout":
        augmentation = llmrec_layout_augmentation(source)
    elif augmentation_dir:
        inside = run.path / augmentation_dir
        augmentation = read_augmentation(inside if inside.is_dir() else augmentation_dir, data)
    model = build_model(data, model_config, augmentation)
    load_weights(model, run.path / WEIGHTS_FILE)
    model.to(device).eval()
    return LoadedRun(model=model, data=data, tables=tables, config=run.load_config(), run_dir=run.path)
