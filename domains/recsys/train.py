"""Train a recommender: ``python -m domains.recsys.train``.

With no arguments this runs the MovieLens-100K demo end to end on CPU: a plain LightGCN base model, its
top-10 candidates per user, augmentation by the offline knowledge-graph backend (KG-overlap ``pos::neg``
edges and director/country/language attributes), then the LLMRec-style model with side features and the
augmented edges. Both are selected on validation and evaluated once on test.

Other uses: ``--augmentation none`` (no augmentation), ``--augmentation <folder>`` (edges/attributes/profiles
written by ``domains.recsys.augment``), ``--dataset.source <folder>`` (RecBole atomic files or LLMRec layout).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from domains.recsys.model import RecommenderConfig
from domains.recsys.recommender import (
    Augmentation,
    DatasetConfig,
    FitConfig,
    LoadedRun,
    default_trainer_config,
    evaluate_split,
    load_dataset,
    train_recommender,
    write_json_atomically,
    write_run_manifest,
)
from shared.cli import parse_config, run_dir_for, save_config
from shared.trainer import TrainerConfig


def base_model_config(model: RecommenderConfig) -> RecommenderConfig:
    """Plain LightGCN (no side features, pruning or MAE) with the same width and depth."""
    return replace(
        model,
        use_text_features=False,
        use_item_attributes=False,
        use_user_profiles=False,
        prune_drop_fraction=0.0,
        mae_mask_rate=0.0,
        mae_loss_weight=0.0,
    )


@dataclass
class TrainConfig:
    """Train an LLMRec-style recommender (no arguments: the MovieLens-100K demo with KG augmentation)."""

    run_name: str = "demo"
    """Run folder name: runs/recsys/<run_name>/."""
    runs_root: str = "runs"
    """Root folder of run folders."""
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    """Data source and split."""
    model: RecommenderConfig = field(default_factory=lambda: RecommenderConfig(prune_drop_fraction=0.71))
    """Architecture and losses of the trained model (default: side features and LLMRec's pruning, ω4 = 0.71)."""
    fit: FitConfig = field(default_factory=FitConfig)
    """Epochs, batch size, augmented share, validation cadence, seed."""
    trainer: TrainerConfig = field(default_factory=default_trainer_config)
    """Shared trainer settings (max_steps, validate_every, select_metric and seed are set from fit)."""
    augmentation: str = "kg"
    """'kg' (train a base LightGCN, take its candidates, augment with the offline knowledge-graph backend),
    'none', 'layout' (the augmentation pickles shipped in an LLMRec-layout dataset folder), or a folder
    written by domains.recsys.augment."""
    base_epochs: int = 20
    """Epochs of the base LightGCN that proposes candidates (augmentation 'kg')."""
    candidates_k: int = 10
    """Candidates per user for augmentation (LLMRec |C| = 10)."""
    ndcg_variant: str = "standard"
    """NDCG in eval/metrics.json: 'standard' or 'llmrec' (LLMRec's inflated variant; both are always written
    under their own keys, this picks the headline)."""


def _test_metrics(model, data, fit: FitConfig, ndcg_variant: str) -> dict[str, float]:
    metrics = evaluate_split(model, data, "test", batch_users=fit.eval_batch_users, ndcg_variant=ndcg_variant)
    other = "llmrec" if ndcg_variant == "standard" else "standard"
    alternative = evaluate_split(model, data, "test", batch_users=fit.eval_batch_users, ndcg_variant=other)
    metrics.update({f"{name}_{other}": value for name, value in alternative.items() if name.startswith("ndcg")})
    return metrics


def run_training(config: TrainConfig) -> Path:
    """Runs the configured training (and the KG augmentation pipeline when asked); returns the run folder."""
    started = time.perf_counter()
    run_dir = run_dir_for("recsys", config.run_name, config.runs_root)
    save_config(config, run_dir)
    data, tables = load_dataset(config.dataset)
    print(
        f"{data.name}: {data.n_users} users, {data.n_items} items, train/val/test "
        f"{len(data.train)}/{len(data.val)}/{len(data.test)} interactions"
    )
    augmentation: Augmentation | None = None
    augmentation_dir: str | None = None
    report: dict[str, object] = {"dataset": data.name}
    if config.augmentation == "kg":
        from domains.recsys.augment import AugmentConfig, augment_from_run, read_augmentation

        base_dir = run_dir / "base"
        base_config = base_model_config(config.model)
        base_fit = replace(config.fit, epochs=config.base_epochs)
        print(f"[1/3] base LightGCN ({config.base_epochs} epochs) → {base_dir}")
        base_model, _ = train_recommender(data, base_config, base_fit, replace(config.trainer), base_dir)
        write_run_manifest(base_dir, config.dataset, base_config, None)
        report["base_test"] = _test_metrics(base_model, data, config.fit, config.ndcg_variant)
        print("[2/3] knowledge-graph augmentation of the base model's candidates")
        augment_config = AugmentConfig(
            base_run=str(base_dir),
            run_name=config.run_name,
            runs_root=config.runs_root,
            backend="kg",
            candidates_k=config.candidates_k,
            cache_dir=str(Path(config.dataset.cache_dir) / "kg_answers"),
        )
        loaded = LoadedRun(model=base_model, data=data, tables=tables, config={}, run_dir=base_dir)
        out, result = augment_from_run(augment_config, loaded=loaded)
        report["augmentation"] = {task: vars(counts) for task, counts in result.summary.items()}
        augmentation_dir = str(out)
        augmentation = read_augmentation(out, data)
        print(f"      {len(augmentation.edges)} edges, {len(augmentation.item_attributes)} items with attributes")
        print(f"[3/3] augmented model ({config.fit.epochs} epochs) → {run_dir}")
    elif config.augmentation == "layout":
        from domains.recsys.recommender import llmrec_layout_augmentation

        augmentation_dir = "layout"
        augmentation = llmrec_layout_augmentation(config.dataset.source)
    elif config.augmentation != "none":
        from domains.recsys.augment import read_augmentation

        augmentation_dir = config.augmentation
        augmentation = read_augmentation(config.augmentation, data)
    model, result = train_recommender(data, config.model, config.fit, config.trainer, run_dir, augmentation)
    write_run_manifest(run_dir, config.dataset, config.model, augmentation_dir)
    report["test"] = _test_metrics(model, data, config.fit, config.ndcg_variant)
    report["validation_best"] = result.best_metric
    report["stop_reason"] = result.stop_reason
    report["steps"] = result.step
    report["seconds"] = round(time.perf_counter() - started, 1)
    write_json_atomically(run_dir / "eval" / "metrics.json", report)
    test = report["test"]
    line = f"test recall@20 {test['recall@20']:.4f} ndcg@20 {test['ndcg@20']:.4f}"
    if "base_test" in report:
        base = report["base_test"]
        line += f" (base LightGCN: recall@20 {base['recall@20']:.4f} ndcg@20 {base['ndcg@20']:.4f})"
    print(line)
    print(f"Wrote {run_dir} (model.safetensors, metrics.csv, eval/metrics.json) in {report['seconds']} s")
    print(f"Next: python -m domains.recsys.recommend --run {run_dir} --users '[1, 2, 3]'")
    return run_dir


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    config = parse_config(TrainConfig, argv, prog="python -m domains.recsys.train")
    run_training(config)


if __name__ == "__main__":
    main()
