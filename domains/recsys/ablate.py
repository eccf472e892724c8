"""Ablation on MovieLens-100K: ``python -m domains.recsys.ablate`` (3 seeds by default).

Variants, each adding one piece to the previous:

1. ``lightgcn`` — torch-geometric LightGCN with BPR;
2. ``+side`` — MiniLM item text features and KG item attributes, projected and added (LLMRec fusion);
3. ``+edges`` — augmented ``pos::neg`` triplets (knowledge-graph backend over the seed's LightGCN top-10
   candidates) at ``augmented_share`` of each batch;
4. ``+prune`` — noisy-feedback pruning (keep the hardest 29% of triplets, ω4 = 0.71);
5. ``+mae`` — MAE feature enhancement (mask rate, (1−cos)^γ reconstruction).

Every model is selected on validation and scored once on test (Recall/NDCG@20, standard NDCG). Each seed
changes the split, the initialisation and the batch order. Writes ``runs/recsys/<run_name>/ablation.json``
and ``ablation.md`` (mean ± sample std over seeds).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from domains.recsys.model import RecommenderConfig
from domains.recsys.recommender import (
    DatasetConfig,
    FitConfig,
    LoadedRun,
    default_trainer_config,
    evaluate_split,
    load_dataset,
    train_recommender,
    write_json_atomically,
)
from domains.recsys.train import base_model_config
from shared.cli import parse_config, run_dir_for, save_config, write_text_atomically

VARIANTS = ("lightgcn", "+side", "+edges", "+prune", "+mae")


@dataclass
class AblateConfig:
    """LightGCN → +side features → +augmented edges → +pruning → +MAE on MovieLens-100K, several seeds."""

    run_name: str = "ablation"
    """Output folder runs/recsys/<run_name>/."""
    runs_root: str = "runs"
    """Root folder of run folders."""
    seeds: list[int] = field(default_factory=lambda: [2022, 2023, 2024])
    """Seeds (split, initialisation, batch order)."""
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    """Variants to run (in order; each adds to the previous)."""
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    """Dataset (default MovieLens-100K); split_seed is replaced by each seed."""
    model: RecommenderConfig = field(
        default_factory=lambda: RecommenderConfig(
            prune_drop_fraction=0.71, mae_mask_rate=0.3, mae_gamma=2.0, mae_loss_weight=0.1
        )
    )
    """Full model settings; earlier variants switch parts off."""
    fit: FitConfig = field(
        default_factory=lambda: FitConfig(
            epochs=20, batch_size=4096, validate_every_epochs=2, early_stopping_patience=3
        )
    )
    """Schedule of every variant (seed is replaced by each seed)."""
    lr: float = 5e-3
    """Learning rate of every variant."""
    candidates_k: int = 10
    """Candidates per user for the knowledge-graph edges."""


def variant_settings(name: str, full: RecommenderConfig) -> tuple[RecommenderConfig, bool]:
    """The model config of a variant and whether it trains on augmented edges."""
    base = base_model_config(full)
    side = replace(base, use_text_features=True, use_item_attributes=True, use_user_profiles=full.use_user_profiles)
    if name == "lightgcn":
        return base, False
    if name == "+side":
        return side, False
    if name == "+edges":
        return side, True
    if name == "+prune":
        return replace(side, prune_drop_fraction=full.prune_drop_fraction), True
    if name == "+mae":
        return (
            replace(
                side,
                prune_drop_fraction=full.prune_drop_fraction,
                mae_mask_rate=full.mae_mask_rate,
                mae_gamma=full.mae_gamma,
                mae_loss_weight=full.mae_loss_weight,
            ),
            True,
        )
    raise ValueError(f"unknown variant {name!r}; available: {VARIANTS}")


def summarize(results: dict[str, list[dict[str, float]]], metrics: tuple[str, ...] = ("recall@20", "ndcg@20")) -> str:
    """Markdown table of mean ± sample standard deviation per variant."""
    lines = ["| variant | " + " | ".join(metrics) + " | seeds |", "|---|" + "---|" * len(metrics) + "---|"]
    for name, runs in results.items():
        cells = []
        for metric in metrics:
            values = np.asarray([run[metric] for run in runs])
            spread = values.std(ddof=1) if len(values) > 1 else 0.0
            cells.append(f"{values.mean():.4f} ± {spread:.4f}")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {len(runs)} |")
    return "\n".join(lines)


def run_ablation(config: AblateConfig) -> dict[str, list[dict[str, float]]]:
    """Trains every variant for every seed; returns test metrics per variant (one dict per seed)."""
    from domains.recsys.augment import AugmentConfig, augment_from_run, read_augmentation

    out_dir = run_dir_for("recsys", config.run_name, config.runs_root)
    save_config(config, out_dir)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in config.variants}
    for seed in config.seeds:
        data, tables = load_dataset(replace(config.dataset, split_seed=seed))
        fit = replace(config.fit, seed=seed)
        augmentation = None
        base_model = None
        for name in config.variants:
            model_config, uses_edges = variant_settings(name, config.model)
            if uses_edges and augmentation is None:
                if base_model is None:
                    base_model, _ = train_recommender(
                        data,
                        base_model_config(config.model),
                        fit,
                        _trainer(config),
                        out_dir / f"seed{seed}" / "lightgcn",
                    )
                loaded = LoadedRun(model=base_model, data=data, tables=tables, config={}, run_dir=out_dir)
                folder, _ = augment_from_run(
                    AugmentConfig(
                        run_name=f"{config.run_name}-seed{seed}",
                        runs_root=config.runs_root,
                        backend="kg",
                        candidates_k=config.candidates_k,
                        cache_dir=f"{config.dataset.cache_dir}/kg_answers",
                    ),
                    loaded=loaded,
                )
                augmentation = read_augmentation(folder, data)
            started = time.perf_counter()
            model, result = train_recommender(
                data,
                model_config,
                fit,
                _trainer(config),
                out_dir / f"seed{seed}" / name.lstrip("+"),
                augmentation if uses_edges else None,
            )
            if name == "lightgcn":
                base_model = model
            metrics = evaluate_split(model, data, "test", batch_users=fit.eval_batch_users)
            metrics["seconds"] = time.perf_counter() - started
            metrics["steps"] = float(result.step)
            results[name].append(metrics)
            print(
                f"seed {seed} {name:9s} recall@20 {metrics['recall@20']:.4f} ndcg@20 {metrics['ndcg@20']:.4f} "
                f"({result.step} steps, {metrics['seconds']:.0f} s)",
                flush=True,
            )
        write_json_atomically(out_dir / "ablation.json", results)
    table = summarize(results)
    write_text_atomically(out_dir / "ablation.md", table + "\n")
    return results


def _trainer(config: AblateConfig):
    trainer = default_trainer_config()
    trainer.lr = config.lr
    trainer.checkpoint_every = 10**9
    return trainer


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    config = parse_config(AblateConfig, argv, prog="python -m domains.recsys.ablate")
    results = run_ablation(config)
    out_dir = run_dir_for("recsys", config.run_name, config.runs_root)
    print(summarize(results))
    print(f"Wrote {out_dir}/ablation.json and ablation.md")
    print("Next: python -m domains.recsys.train   # the full demo pipeline on one seed")


if __name__ == "__main__":
    main()
