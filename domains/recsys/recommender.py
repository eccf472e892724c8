"""Building, training, evaluating and reloading recommenders (the library behind the recsys commands).

A trained run folder (``runs/recsys/<run-name>/``) holds ``config.yaml`` (dataset, model and fit settings),
``model.safetensors`` (weights selected on validation), ``metrics.csv``, ``checkpoints/`` and, when the
model used augmentation, the ``augmentation`` folder it read. :func:`load_run` rebuilds the exact model and
data split from those files.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from domains.recsys.bpr_sampling import BprBatches
from domains.recsys.data import (
    InteractionData,
    RecboleTables,
    cached_text_features,
    interactions_from_llmrec,
    items_by_user,
    read_llmrec_dataset,
    read_recbole_interactions,
)
from domains.recsys.model import LLMRecModel, RecommenderConfig, attribute_vocabulary
from domains.recsys.ranking_metrics import full_ranking_metrics
from shared.checkpoints import load_weights
from shared.cli import write_text_atomically
from shared.trainer import Trainer, TrainerConfig

logger = logging.getLogger(__name__)

MOVIELENS_100K = "movielens-100k"


@dataclass
class DatasetConfig:
    """Which interactions to use and how to split them."""

    source: str = MOVIELENS_100K
    """'movielens-100k' (built in, from the recbole package), a folder of RecBole atomic files, or a folder in
    LLMRec's layout (it has train.json; its own split is used)."""
    name: str | None = None
    """Dataset name (stem of the atomic files) when the folder holds several."""
    split_strategy: str = "random"
    """'random' (each user's interactions shuffled with split_seed) or 'temporal' (each user's latest last)."""
    split_seed: int = 2022
    """Seed of the per-user random split."""
    split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    """Train/validation/test fractions of each user's interactions."""
    min_rating: float | None = None
    """Positives are ratings >= this value; null keeps every interaction (implicit feedback)."""
    text_features: bool = True
    """Compute MiniLM item text features (title, year, genres) for the side-feature branch."""
    cache_dir: str = "runs/recsys/cache"
    """Cache of computed text features."""


@dataclass
class FitConfig:
    """Training schedule of a recommender (on top of the shared trainer's settings)."""

    epochs: int = 20
    """Passes over the training pairs; sets trainer.max_steps = epochs × batches per epoch."""
    batch_size: int = 4096
    """Observed (user, positive) pairs per batch, each with one uniform negative (LLMRec: 1024; a larger
    batch with a larger learning rate trains ML-100K in far fewer full-graph propagations on CPU)."""
    augmented_share: float = 0.1
    """Augmented triplets appended to each batch, as a fraction of batch_size (LLMRec ω3 = 0.1)."""
    validate_every_epochs: int = 2
    """Validate (Recall/NDCG on the validation split) every N epochs; selection and early stopping use it."""
    select_metric: str = "recall@20"
    """Validation metric for model selection and early stopping."""
    early_stopping_patience: int = 3
    """Validations without improvement before stopping (0: never)."""
    eval_batch_users: int = 1024
    """Users scored at once in full-ranking evaluation."""
    seed: int = 2022
    """Seed of weight initialisation and batch order."""
    cpu_threads: int | None = 1
    """torch CPU threads when training on CPU (1 avoids thread contention that makes the sparse backward
    several times slower on small or shared machines); null keeps torch's default."""


def default_trainer_config() -> TrainerConfig:
    """Trainer settings suited to BPR on ID embeddings: lr 5e-3 (for batch 4096), no decoupled weight decay."""
    return TrainerConfig(
        lr=5e-3,
        weight_decay=0.0,
        betas=(0.9, 0.999),
        eps=1e-8,
        schedule="constant",
        checkpoint_every=500,
        keep_last=2,
        log_every=20,
        progress_bar=False,
    )


@dataclass
class Augmentation:
    """Augmentation loaded for training: index triplets and per-item attributes/user profiles.

    Attributes:
        edges: (A, 3) ``(user, pos, neg)`` index triplets.
        item_attributes: Per item, attribute name → values (merged into the data's attributes).
        user_profiles: User index → profile text.
        folder: Where it was read from.
    """

    edges: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.int64))
    item_attributes: dict[int, dict[str, list[str]]] = field(default_factory=dict)
    user_profiles: dict[int, str] = field(default_factory=dict)
    folder: str | None = None


def load_dataset(config: DatasetConfig) -> tuple[InteractionData, RecboleTables | None]:
    """Loads and splits the configured dataset (with text features when asked).

    Returns:
        The data and, for RecBole sources, the raw tables (the KG backend needs them).
    """
    if config.source == MOVIELENS_100K:
        from domains.recsys.demo import build_movielens_100k

        return build_movielens_100k(
            split_strategy=config.split_strategy,
            seed=config.split_seed,
            ratios=tuple(config.split_ratios),
            min_rating=config.min_rating,
            text_features=config.text_features,
            cache_dir=config.cache_dir,
        )
    folder = Path(config.source)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: dataset source is neither 'movielens-100k' nor a folder")
    if (folder / "train.json").exists():
        data = interactions_from_llmrec(read_llmrec_dataset(folder), name=folder.name)
        if not config.text_features:
            data.item_text_features = None
        return data, None
    data, tables = read_recbole_interactions(
        folder,
        config.name,
        strategy=config.split_strategy,
        ratios=tuple(config.split_ratios),
        seed=config.split_seed,
        min_rating=config.min_rating,
    )
    if config.text_features:
        data.item_text_features = cached_text_features(data.item_texts, config.cache_dir)
    return data, tables


def llmrec_layout_augmentation(folder: str | Path) -> Augmentation:
    """The augmentation shipped in an LLMRec-layout folder (sampled pairs, item attributes, user profiles).

    Item attributes ``{0: director, 1: country, 2: language}`` keep those names; ids are the layout's
    integer indices, as in :func:`~domains.recsys.data.interactions_from_llmrec`.
    """
    layout = read_llmrec_dataset(folder)
    names = ("director", "country", "language")
    return Augmentation(
        edges=np.asarray(layout.augmented_edges, dtype=np.int64).reshape(-1, 3),
        item_attributes={
            item: {
                names[position] if position < 3 else f"attribute_{position}": [value]
                for position, value in enumerate(values)
            }
            for item, values in layout.augmented_item_attributes.items()
        },
        user_profiles=dict(layout.user_profiles),
        folder=str(folder),
    )


def build_model(
    data: InteractionData, config: RecommenderConfig, augmentation: Augmentation | None = None
) -> LLMRecModel:
    """The recommender for ``data``: graph from the training split, side features, merged attributes."""
    attributes = [dict(item) for item in data.item_attributes] or [{} for _ in range(data.n_items)]
    profile_features = data.user_profile_features
    if augmentation is not None:
        for item, extra in augmentation.item_attributes.items():
            for name, values in extra.items():
                merged = attributes[item].setdefault(name, [])
                merged.extend(value for value in values if value not in merged)
        if augmentation.user_profiles and config.use_user_profiles:
            from domains.recsys.data import encode_texts_minilm

            texts = [augmentation.user_profiles.get(user, "") for user in range(data.n_users)]
            profile_features = encode_texts_minilm(texts, max_length=128)
            profile_features[[not text for text in texts]] = 0.0
    attribute_ids, vocabulary = attribute_vocabulary(attributes)
    return LLMRecModel(
        data.n_users,
        data.n_items,
        data.train,
        config,
        item_text_features=data.item_text_features,
        item_attribute_ids=attribute_ids,
        n_attribute_values=len(vocabulary),
        user_profile_features=profile_features,
    )


def evaluate_split(
    model: LLMRecModel,
    data: InteractionData,
    split: str = "test",
    ks: tuple[int, ...] = (10, 20, 50),
    batch_users: int = 1024,
    ndcg_variant: str = "standard",
) -> dict[str, float]:
    """Full-ranking metrics on ``split`` ('val' or 'test').

    Validation excludes training items; test excludes training and validation items (both are known
    interactions by then).
    """
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    known = data.train if split == "val" else np.concatenate([data.train, data.val])
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


def train_recommender(
    data: InteractionData,
    model_config: RecommenderConfig,
    fit: FitConfig,
    trainer_config: TrainerConfig,
    run_dir: str | Path,
    augmentation: Augmentation | None = None,
) -> tuple[LLMRecModel, Any]:
    """Trains a recommender through the shared trainer, selecting on the validation split.

    Args:
        data: Split interactions.
        model_config: Architecture and loss settings.
        fit: Schedule (epochs, batch size, augmented share, validation cadence).
        trainer_config: Shared trainer settings; ``max_steps``, ``validate_every``, ``select_metric``,
            ``early_stopping_patience`` and ``seed`` are set from ``fit``.
        run_dir: Run folder (metrics.csv, checkpoints/, model.safetensors).
        augmentation: Augmented triplets/attributes/profiles, or ``None``.

    Returns:
        The trained model (best validation weights) and the trainer's result.
    """
    from shared.device import pick_device

    if fit.cpu_threads and pick_device(trainer_config.device).type == "cpu":
        torch.set_num_threads(fit.cpu_threads)
    torch.manual_seed(fit.seed)
    model = build_model(data, model_config, augmentation)
    edges = augmentation.edges if augmentation is not None and len(augmentation.edges) else None
    batches = BprBatches(
        data.train, data.n_items, fit.batch_size, edges, fit.augmented_share if edges is not None else 0.0, fit.seed
    )
    trainer_config.max_steps = max(1, fit.epochs * len(batches))
    trainer_config.validate_every = max(1, fit.validate_every_epochs * len(batches))
    trainer_config.select_metric = fit.select_metric
    trainer_config.select_mode = "max"
    trainer_config.early_stopping_patience = fit.early_stopping_patience
    trainer_config.seed = fit.seed

    def validate(trained: torch.nn.Module) -> dict[str, float]:
        metrics = evaluate_split(trained, data, "val", ks=(20,), batch_users=fit.eval_batch_users)
        return {name: value for name, value in metrics.items() if name != "users"}

    trainer = Trainer(model, trainer_config, run_dir)
    result = trainer.fit(batches, validate=validate)
    return model, result


@dataclass
class LoadedRun:
    """A trained run rebuilt from its folder."""

    model: LLMRecModel
    data: InteractionData
    tables: RecboleTables | None
    config: dict[str, Any]
    run_dir: Path


def write_run_manifest(
    run_dir: Path, dataset: DatasetConfig, model: RecommenderConfig, augmentation_dir: str | None
) -> Path:
    """Writes ``recommender.json``: what :func:`load_run` needs to rebuild the model (atomically)."""
    from shared.cli import config_to_dict

    manifest = {
        "dataset": config_to_dict(dataset),
        "model": config_to_dict(model),
        "augmentation_dir": augmentation_dir,
    }
    path = run_dir / "recommender.json"
    write_text_atomically(path, json.dumps(manifest, indent=2))
    return path


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """Rebuilds a trained recommender and its data split from ``run_dir``.

    Raises:
        FileNotFoundError: ``recommender.json`` or ``model.safetensors`` is missing (not a trained run).
    """
    from domains.recsys.augment import read_augmentation

    run_dir = Path(run_dir)
    manifest_path = run_dir / "recommender.json"
    weights = run_dir / "model.safetensors"
    for path in (manifest_path, weights):
        if not path.exists():
            raise FileNotFoundError(f"{path}: missing; is {run_dir} a finished `domains.recsys.train` run?")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    dataset = DatasetConfig(**{**manifest["dataset"], "split_ratios": tuple(manifest["dataset"]["split_ratios"])})
    model_config = RecommenderConfig(**manifest["model"])
    data, tables = load_dataset(dataset)
    augmentation = None
    if manifest.get("augmentation_dir") == "layout":
        augmentation = llmrec_layout_augmentation(dataset.source)
    elif manifest.get("augmentation_dir"):
        augmentation = read_augmentation(manifest["augmentation_dir"], data)
    model = build_model(data, model_config, augmentation)
    load_weights(model, weights)
    model.to(device).eval()
    return LoadedRun(model=model, data=data, tables=tables, config=manifest, run_dir=run_dir)


def write_json_atomically(path: str | Path, payload: Any) -> Path:
    """Writes ``payload`` as indented JSON atomically."""
    path = Path(path)
    write_text_atomically(path, json.dumps(payload, indent=2, sort_keys=True))
    return path
