"""``python -m domains.news.train``: train FND-CLIP with validation-only model selection, then test once.

With no arguments it builds the built-in out-of-context set (if needed), ingests it, caches the frozen
features and trains the demo configuration on CPU in a few minutes.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from domains.news.data import LABEL_NAMES, REAL
from domains.news.detector import (
    FEATURE_KEYS,
    EncoderConfig,
    HeadConfig,
    NewsEncoders,
    PostTable,
    build_model,
    load_post_table,
    save_detector,
)
from domains.news.ingest import DEFAULT_SHARDS
from domains.news.model import FNDCLIPModel
from shared.trainer import TrainerConfig

DEFAULT_CACHE_DIR = ".tmp/news/features"


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

    data: str = DEFAULT_SHARDS
    """Shard folder from ``domains.news.ingest`` (the default is built from the built-in set when missing)."""
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


def pair_groups(table: PostTable) -> list[str]:
    """Group of each post: its ``pair_id`` (real and fake posts of one caption), else its own key."""
    return [str(m.get("extra", {}).get("pair_id") or key) for m, key in zip(table.meta, table.keys)]


def split_rows(table: PostTable, val_fraction: float, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Train/val/test rows: the data's own splits where present, else seeded random ones.

    Posts sharing a ``pair_id`` (built-in set, NewsCLIPpings-style pairs) always land in the same split.
    """
    splits = list(table.splits)
    groups = pair_groups(table)
    rng = np.random.default_rng(seed)

    def carve(candidates: list[int], fraction: float, name: str) -> None:
        unique = sorted({groups[i] for i in candidates})
        chosen = set(rng.permutation(unique)[: max(1, round(fraction * len(unique)))].tolist()) if unique else set()
        for i in candidates:
            if groups[i] in chosen:
                splits[i] = name

    if all(s is None for s in splits):
        carve(list(range(len(splits))), test_fraction, "test")
    splits = [s if s in ("val", "test") else ("train" if s in (None, "train") else s) for s in splits]
    if "val" not in splits:
        carve([i for i, s in enumerate(splits) if s == "train"], val_fraction, "val")
    rows = {
        name: np.array([i for i, s in enumerate(splits) if s == name], dtype=np.int64)
        for name in ("train", "val", "test")
    }
    empty = [name for name, r in rows.items() if len(r) == 0]
    if empty:
        raise ValueError(f"split(s) {empty} are empty: the data has too few posts ({len(splits)})")
    return rows


def prepare_data(config: TrainConfig, run_dir: Path) -> PreparedData:
    """Build/ingest the data if needed, compute or load cached features, fit the stand-in CLIP on train."""
    from shared.device import pick_device

    data = Path(config.data)
    if not (data / "manifest.json").is_file():
        if config.data != DEFAULT_SHARDS:
            raise FileNotFoundError(f"{data}: no manifest.json; run python -m domains.news.ingest first")
        from domains.news.ingest import main as ingest_main

        ingest_main(["--out_dir", str(data)])
    encoders = NewsEncoders(config.encoders, device=pick_device(config.device))
    table = load_post_table(data, encoders, config.cache_dir)
    rows = split_rows(table, config.val_fraction, config.test_fraction, config.trainer.seed)
    genuine = table.labels == REAL
    out_of_fold = encoders.fit_alignment(
        table.base, rows["train"], genuine, pair_groups(table), run_dir, seed=config.trainer.seed
    )
    features = encoders.finish(table.base)
    if out_of_fold is not None:
        features["clip_text"][out_of_fold["rows"]] = out_of_fold["clip_text"]
        features["clip_image"][out_of_fold["rows"]] = out_of_fold["clip_image"]
    return PreparedData(encoders, table, features, rows)


def _rows_dataset(features: dict[str, torch.Tensor], labels: np.ndarray, rows: np.ndarray) -> Any:
    from shared.data_iteration import TensorDictDataset

    index = torch.as_tensor(rows)
    columns = {k: features[k][index] for k in FEATURE_KEYS if k in features}
    columns["label"] = torch.as_tensor(labels[rows])
    return TensorDictDataset(columns)


@torch.no_grad()
def predict_rows(
    model: FNDCLIPModel, features: dict[str, torch.Tensor], rows: np.ndarray, device: torch.device
) -> dict:
    """Model outputs (numpy) for the given rows, in eval mode, in chunks."""
    model.eval()
    outputs: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(rows), 512):
        index = torch.as_tensor(rows[start : start + 512])
        batch = {k: features[k][index].to(device) for k in FEATURE_KEYS if k in features}
        output = model(batch)
        for name in ("probs", "attention", "similarity", "fused"):
            outputs.setdefault(name, []).append(output[name].float().cpu().numpy())
    return {name: np.concatenate(parts) for name, parts in outputs.items()}


def metrics_for_rows(
    model: FNDCLIPModel, features: dict[str, torch.Tensor], labels: np.ndarray, rows: np.ndarray, device: torch.device
) -> dict[str, Any]:
    """Core classification metrics (accuracy, per-class P/R/F1, ROC-AUC, ECE) plus mean attention per branch."""
    from shared.evaluation import classification_metrics

    predicted = predict_rows(model, features, rows, device)
    metrics = classification_metrics(labels[rows], predicted["probs"], labels=[0, 1])
    metrics["per_class"] = {LABEL_NAMES[int(k)]: v for k, v in metrics["per_class"].items()}
    metrics["labels"] = list(LABEL_NAMES)
    metrics["mean_attention"] = dict(zip(model.branches, predicted["attention"].mean(axis=0).tolist()))
    metrics["num_posts"] = len(rows)
    return metrics


def train_head(
    prepared: PreparedData, head: HeadConfig, trainer_config: TrainerConfig, batch_size: int, run_dir: Path
) -> tuple[FNDCLIPModel, dict[str, Any]]:
    """Train one FND-CLIP model with the core Trainer; select the best validation checkpoint; test it once.

    Returns:
        The selected model and its test-split metrics.
    """
    from shared.checkpoints import load_weights
    from shared.data_iteration import batches_from_dataset
    from shared.trainer import Trainer

    device = prepared.encoders.device
    labels = prepared.table.labels
    tower = prepared.encoders.trainable_image_tower
    # Each run fine-tunes its own copy, so ablation variants all start from the pretrained tower.
    model = build_model(prepared.encoders.dims, head, image_tower=copy.deepcopy(tower) if tower is not None else None)
    dataset = _rows_dataset(prepared.features, labels, prepared.rows["train"])
    make_batches = batches_from_dataset(dataset, min(batch_size, len(dataset)), seed=trainer_config.seed)

    def validate(current: FNDCLIPModel) -> dict[str, float]:
        metrics = metrics_for_rows(current, prepared.features, labels, prepared.rows["val"], device)
        return {"accuracy": metrics["accuracy"], "roc_auc": metrics["roc_auc"] or 0.0, "macro_f1": metrics["macro_f1"]}

    trainer = Trainer(model, trainer_config, run_dir)
    result = trainer.fit(make_batches, validate=validate)
    best = run_dir / "checkpoints" / "best.safetensors"
    if best.is_file():
        load_weights(model, best)
    model.to(device)
    test = metrics_for_rows(model, prepared.features, labels, prepared.rows["test"], device)
    test["selected_on"] = f"val {trainer_config.select_metric} = {result.best_metric}"
    test["steps"] = result.step
    test["stop_reason"] = result.stop_reason
    return model, test


def write_eval(run_dir: Path, metrics: dict[str, Any], probs_fake: np.ndarray, labels: np.ndarray) -> Path:
    """``eval/metrics.json`` plus confusion-matrix and ROC pictures."""
    from shared.cli import write_text_atomically
    from shared.evaluation import save_confusion_matrix_png, save_roc_png

    eval_dir = run_dir / "eval"
    eval_dir.mkdir(parents=True, exist_ok=True)
    save_confusion_matrix_png(metrics["confusion_matrix"], list(LABEL_NAMES), eval_dir / "confusion_matrix.png")
    probs = np.stack([1 - probs_fake, probs_fake], axis=1)
    save_roc_png(labels, probs, labels=[0, 1], path=eval_dir / "roc.png", title="ROC (positive = fake)")
    path = eval_dir / "metrics.json"
    write_text_atomically(path, json.dumps(metrics, indent=2))
    return path


def run(config: TrainConfig) -> dict[str, Any]:
    """Train, select on validation, evaluate on test, save the detector; returns the test metrics."""
    from shared.cli import run_dir_for, save_config

    run_dir = run_dir_for("news", config.run_name, config.runs_root)
    save_config(config, run_dir)
    prepared = prepare_data(config, run_dir)
    model, test = train_head(prepared, config.head, config.trainer, config.batch_size, run_dir)
    save_detector(run_dir, prepared.encoders, config.head)
    rows = prepared.rows["test"]
    predicted = predict_rows(model, prepared.features, rows, prepared.encoders.device)
    test["split_sizes"] = {k: len(v) for k, v in prepared.rows.items()}
    test["data"] = config.data
    write_eval(run_dir, test, predicted["probs"][:, 1], prepared.table.labels[rows])
    return test


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command entry point."""
    from shared.cli import parse_config

    config = parse_config(TrainConfig, argv, prog="python -m domains.news.train")
    test = run(config)
    run_dir = Path(config.runs_root) / "news" / config.run_name
    print(
        f"test accuracy {test['accuracy']:.3f}, ROC-AUC {test['roc_auc']:.3f}, ECE {test['ece']:.3f} "
        f"({test['num_posts']} posts; model selected on validation: {test['selected_on']})"
    )
    print(f"wrote {run_dir}/ (config.yaml, metrics.csv, checkpoints/, detector.json, eval/metrics.json, eval/*.png)")
    print(f"next: python -m domains.news.detect --run {run_dir} --text 'a caption' --image picture.png")
    print(f"      python -m domains.news.ablate    python -m domains.news.embed --run {run_dir}")
    return dataclasses.asdict(config) | {"test": test}


if __name__ == "__main__":
    main()
