"""The LLMRec ablation on MovieLens-100K (``domains.recsys.ablate``): one piece added per variant, several seeds.

Variants, each adding one piece to the previous:

1. ``lightgcn`` — torch-geometric LightGCN with BPR;
2. ``+side`` — MiniLM item text features and KG item attributes, projected and propagated over the
   graph with LLMRec's fusion weights and auxiliary losses;
3. ``+edges`` — the offline backend's augmentation: ``pos::neg`` triplets (KG overlap over the seed's
   LightGCN top-10 candidates) at ``augmented_share`` of each batch, plus item-file attributes (genre,
   decade, title words) and profiles summarised from the training history;
4. ``+prune`` — noisy-feedback pruning (keep the hardest 29% of triplets, ω4 = 0.71);
5. ``+mae`` — MAE feature enhancement (mask rate, (1−cos)^γ reconstruction).

Every model is selected on validation and scored once on test (Recall/NDCG@20, standard NDCG). Each seed
changes the split, the initialisation and the batch order. Results over seeds are summarised with
:mod:`shared.seed_statistics`: mean ± sample std with the 95% interval, and each variant's paired
difference from the first variant (the baseline) over the same seeds.

The ablation is cumulative and its triplets come from a heuristic, not an LLM; whether augmentation and
pruning help is tested by the controlled experiment of :mod:`domains.recsys.llmrec.noisy_augmentation`
(oracle triplets, injected noise, a pruning-alone control).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from domains.recsys.llmrec.augmentation import AUGMENTATION_DIR, AugmentConfig, augment_with_model
from domains.recsys.llmrec.augmentation_files import Augmentation, read_augmentation
from domains.recsys.llmrec.datasets import MOVIELENS_100K, DatasetConfig, load_dataset
from domains.recsys.llmrec.interactions import InteractionData
from domains.recsys.llmrec.model import LLMRecModel, RecommenderConfig, base_model_config
from domains.recsys.llmrec.training import (
    FitConfig,
    default_trainer_config,
    evaluate_split,
    resolve_trainer,
    train_recommender,
)
from shared.atomic_files import write_json_atomically, write_text_atomically
from shared.run_folder import CONFIG_FILE, RunFolder
from shared.seed_statistics import SeedSummary, markdown_table, paired_difference, summarize, verdict
from shared.trainer import TrainerConfig, TrainResult
from shared.user_errors import UserError

COMMAND = "domains.recsys.ablate"
VARIANTS = ("lightgcn", "+side", "+edges", "+prune", "+mae")
METRICS = ("recall@20", "ndcg@20")
RESULTS_FILE, TABLE_FILE, SUMMARY_FILE = "ablation.json", "ablation.md", "ablation_summary.json"


def default_ablation_trainer() -> TrainerConfig:
    """The recsys trainer defaults without step checkpoints (each variant is trained once, start to end)."""
    return replace(default_trainer_config(), checkpoint_every=10**9)


@dataclass
class AblateConfig:
    """LightGCN → +side features → +augmented edges → +pruning → +MAE on MovieLens-100K, several seeds."""

    run_name: str = "ablation"
    """Output folder runs/recsys/<run_name>/ (one sub-folder per seed and variant)."""
    runs_root: str = "runs"
    """Root folder of run folders."""
    seeds: list[int] = field(default_factory=lambda: [2022, 2023, 2024])
    """Seeds: each sets the split (dataset.split_seed) and the initialisation and batch order (trainer.seed)."""
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    """Variants to run (in order; each adds to the previous; the first is the baseline of the differences)."""
    input: str = MOVIELENS_100K
    """'movielens-100k' (built in) or a folder of RecBole atomic files with a knowledge graph (.kg, .link)."""
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    """How the input is read and split (split_seed is set by each of --seeds)."""
    model: RecommenderConfig = field(
        default_factory=lambda: RecommenderConfig(
            prune_drop_fraction=0.71, mae_mask_rate=0.3, mae_gamma=2.0, mae_loss_weight=0.1
        )
    )
    """Full model settings; earlier variants switch parts off."""
    fit: FitConfig = field(default_factory=FitConfig)
    """Batch size, augmented share, evaluation batch and CPU threads of every variant."""
    trainer: TrainerConfig = field(default_factory=default_ablation_trainer)
    """Trainer settings of every variant (budget, validation, selection; seed is set by each of --seeds)."""
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


def check_ablate_config(config: AblateConfig) -> None:
    """Refuses settings that cannot work or that --seeds would silently override, naming the flags.

    Raises:
        UserError: no seed, a repeated seed, an unknown or repeated variant, or a trainer/split seed given
            besides --seeds.
    """
    if not config.seeds or len(set(config.seeds)) != len(config.seeds):
        raise UserError(f"--seeds: give one or more distinct seeds, got {list(config.seeds)}")
    unknown = [name for name in config.variants if name not in VARIANTS]
    if unknown or not config.variants or len(set(config.variants)) != len(config.variants):
        raise UserError(f"--variants: give distinct names among {list(VARIANTS)}, got {list(config.variants)}")
    if config.trainer.seed != default_ablation_trainer().seed:
        raise UserError(f"--trainer.seed {config.trainer.seed} and --seeds both set the seed: use --seeds only")
    if config.dataset.split_seed != DatasetConfig().split_seed:
        raise UserError(
            f"--dataset.split_seed {config.dataset.split_seed} and --seeds both set the split: use --seeds only"
        )
    if config.candidates_k < 2:
        raise UserError(f"--candidates_k: must be >= 2 (a liked and a disliked candidate), got {config.candidates_k}")


def _cell(summary: SeedSummary) -> str:
    if summary.n < 2:
        return summary.format(4)
    text = f"{summary.mean:.4f} ± {summary.std:.4f} [{summary.low:.4f}, {summary.high:.4f}]"
    return text + (f" ({summary.undefined} undefined)" if summary.undefined else "")


def summarize_ablation(
    results: dict[str, list[dict[str, float]]], metrics: tuple[str, ...] = METRICS
) -> tuple[str, dict[str, Any]]:
    """The markdown table and the JSON summary of per-seed results.

    Each metric cell is mean ± sample std [95% interval] over seeds; each difference cell is the paired
    difference from the first variant over the seeds both ran, with its interval and verdict.

    Args:
        results: Variant → one metrics dict per seed (each with a ``seed`` key).
        metrics: Metrics to tabulate (higher is better).
    """
    names = list(results)
    baseline = names[0]

    def by_seed(name: str, metric: str) -> dict[int, float | None]:
        return {int(run["seed"]): run.get(metric) for run in results[name]}

    header = ["variant", *metrics, *(f"Δ {metric} vs {baseline}" for metric in metrics), "seeds"]
    rows, summary = [], {}
    for name in names:
        summaries = {metric: summarize(run.get(metric) for run in results[name]) for metric in metrics}
        entry: dict[str, Any] = {metric: value.as_dict() for metric, value in summaries.items()}
        differences = []
        for metric in metrics:
            if name == baseline:
                differences.append("—")
                continue
            difference = paired_difference(by_seed(name, metric), by_seed(baseline, metric))
            decision = verdict(difference, higher_is_better=True)
            entry.setdefault(f"paired_difference_vs_{baseline}", {})[metric] = {
                **difference.as_dict(),
                "verdict": decision,
            }
            differences.append(f"{difference.format(4)} ({decision})")
        rows.append([name, *(_cell(summaries[metric]) for metric in metrics), *differences, len(results[name])])
        summary[name] = entry
    return markdown_table(header, rows), summary


def _train_variant(
    seed_dir: Path,
    name: str,
    config: AblateConfig,
    data: InteractionData,
    dataset: DatasetConfig,
    trainer: TrainerConfig,
    model_config: RecommenderConfig,
    augmentation: Augmentation | None,
) -> tuple[LLMRecModel, TrainResult]:
    """Trains one variant into ``seed_dir/<variant>``, saving the settings that run there first."""
    sub_run = RunFolder(seed_dir / name.lstrip("+"))
    sub_run.save_config(
        {
            "variant": name,
            "input": config.input,
            "dataset": dataset,
            "model": model_config,
            "fit": config.fit,
            "trainer": trainer,
            "augmentation": augmentation.folder if augmentation is not None else None,
        }
    )
    return train_recommender(data, model_config, config.fit, trainer, sub_run.path, augmentation)


def _run_seed(config: AblateConfig, seed: int, seed_dir: Path) -> dict[str, dict[str, float]]:
    """Every variant on one seed's split; returns the test metrics per variant."""
    dataset = replace(config.dataset, split_seed=seed)
    data, tables = load_dataset(config.input, dataset)
    trainer = resolve_trainer(replace(config.trainer, seed=seed), data, config.fit)
    results: dict[str, dict[str, float]] = {}
    augmentation: Augmentation | None = None
    base_model: LLMRecModel | None = None
    for name in config.variants:
        model_config, uses_edges = variant_settings(name, config.model)
        if uses_edges and augmentation is None:
            if base_model is None:
                base_model, _ = _train_variant(
                    seed_dir, "lightgcn", config, data, dataset, trainer, base_model_config(config.model), None
                )
            augment_config = AugmentConfig(
                run=str(seed_dir / "lightgcn"),
                backend="kg",
                candidates_k=config.candidates_k,
                cache_dir=f"{config.dataset.cache_dir}/kg_answers",
            )
            folder, _ = augment_with_model(base_model, data, tables, augment_config, seed_dir / AUGMENTATION_DIR)
            augmentation = read_augmentation(folder, data)
        started = time.perf_counter()
        model, result = _train_variant(
            seed_dir, name, config, data, dataset, trainer, model_config, augmentation if uses_edges else None
        )
        if name == "lightgcn":
            base_model = model
        metrics = evaluate_split(
            model, data, "test", batch_users=config.fit.eval_batch_users, test_excludes=config.fit.test_excludes
        )
        metrics["seconds"] = time.perf_counter() - started
        metrics["steps"] = float(result.step)
        metrics["seed"] = seed
        results[name] = metrics
        print(
            f"seed {seed} {name:9s} recall@20 {metrics['recall@20']:.4f} ndcg@20 {metrics['ndcg@20']:.4f} "
            f"({result.step} steps, {metrics['seconds']:.0f} s)",
            flush=True,
        )
    return results


@dataclass(frozen=True)
class AblationRun:
    """What :func:`run_ablation` wrote.

    Attributes:
        folder: the finished run folder.
        results: test metrics per variant, one entry per seed (``ablation.json``).
        table: the Markdown table of ``ablation.md``.
    """

    folder: RunFolder
    results: dict[str, list[dict[str, float]]]
    table: str


def run_ablation(config: AblateConfig) -> AblationRun:
    """Trains every variant for every seed; returns the run folder, the test metrics and the table.

    Writes ``ablation.json`` (after each seed), ``ablation.md``, ``ablation_summary.json`` and, per seed and
    variant, a folder ``seed<s>/<variant>`` whose ``config.yaml`` holds the resolved settings that ran there.
    """
    check_ablate_config(config)
    out = RunFolder.create("recsys", config.run_name, config.runs_root)
    out.clear_finished()
    out.save_config(config)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in config.variants}
    for seed in config.seeds:
        for name, metrics in _run_seed(config, seed, out.path / f"seed{seed}").items():
            results[name].append(metrics)
        write_json_atomically(out.path / RESULTS_FILE, results)
    table, summary = summarize_ablation(results)
    write_text_atomically(out.path / TABLE_FILE, table)
    write_json_atomically(out.path / SUMMARY_FILE, summary)
    out.mark_finished(
        COMMAND,
        outputs=[CONFIG_FILE, RESULTS_FILE, TABLE_FILE, SUMMARY_FILE],
        summary={f"{name} recall@20": summary[name]["recall@20"]["mean"] for name in results},
    )
    return AblationRun(folder=out, results=results, table=table)
