"""A controlled augmentation experiment on MovieLens-100K that can show whether LLMRec's denoising works.

Without an LLM, LLMRec's augmented ``(user, pos, neg)`` triplets cannot be reproduced, so this experiment
replaces the LLM by an oracle whose error rate we set:

1. **Augmentation pool.** Per user (seeded), a ``pool_share`` of *all* their ratings is held out before
   anything else. The remaining ratings ``>= positive_rating`` are the implicit positives, split per user
   into train/validation/test. The pool is therefore disjoint from train, validation and test, and the
   model never sees it except through the triplets. Pool ratings are known interactions, so validation
   and test rankings exclude them (as they exclude training items) for every variant.
2. **Oracle triplets.** For each pool rating ``>= positive_rating`` (liked) of a user who also has a pool
   rating ``<= negative_rating`` (disliked), one triplet ``(user, liked, disliked)`` with the disliked item
   drawn at random among the user's disliked pool items.
3. **Injected noise.** At noise level ``r`` a seeded ``r`` fraction of the triplets is corrupted
   (``flip``: liked and disliked swapped, the LLM picked the wrong way round; ``random``: both items drawn
   uniformly from items the user has no training interaction with). The corrupted sets are nested (25% ⊂
   50%), so noise levels differ only by the extra corrupted triplets. Which triplets are noise is known.
4. **Runs**, each selected on validation and scored once on the same test split:
   ``lightgcn``; ``+prune`` (pruning alone, the hard-example-mining control); ``+aug`` (triplets at
   ``fit.augmented_share`` of each batch); ``+aug+prune``; ``+aug+prune+mae`` (MAE on the item text
   features, which switches on the text side branch it reconstructs). Runs without triplets do not depend
   on the noise level, so they are trained once per seed and reused at every level (same split, seed and
   batches: the same run).
5. Per noise level and seed, the pruning counters of the model (:class:`PruningCounts`) say which share of
   the triplets pruning dropped were the injected noise.

Results over seeds go through :mod:`shared.seed_statistics` (mean, 95% interval, paired differences and
verdicts).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from domains.recsys.llmrec.augmentation_files import Augmentation
from domains.recsys.llmrec.interactions import InteractionData, interactions_from_frame
from domains.recsys.llmrec.model import RecommenderConfig, base_model_config, check_recommender_config
from domains.recsys.llmrec.movielens import movielens_100k_dir
from domains.recsys.llmrec.recbole_dataset import item_table_from_recbole
from domains.recsys.llmrec.text_features import cached_text_features
from domains.recsys.llmrec.training import (
    FitConfig,
    check_fit_config,
    default_trainer_config,
    evaluate_split,
    resolve_trainer,
    train_recommender,
)
from domains.recsys.recbole_io import read_recbole_dataset
from shared.atomic_files import write_json_atomically, write_text_atomically
from shared.run_folder import CONFIG_FILE, RunFolder
from shared.seed_statistics import SeedSummary, markdown_table, paired_difference, summarize, verdict
from shared.trainer import TrainerConfig, check_trainer_config
from shared.user_errors import NothingProduced, UserError

COMMAND = "domains.recsys.noisy_augmentation"
VARIANTS = ("lightgcn", "+prune", "+aug", "+aug+prune", "+aug+prune+mae", "+aug+small_loss")
DEFAULT_VARIANTS = VARIANTS[:5]
"""The issue's five runs; ``+aug+small_loss`` (the usual denoising direction) is asked for by name."""
NOISE_FREE_VARIANTS = ("lightgcn", "+prune")
"""Variants that train on no triplets: one run per seed serves every noise level."""
NOISE_KINDS = ("flip", "random")
METRICS = ("recall@20", "ndcg@20")
RESULTS_FILE, TABLE_FILE = "noisy_augmentation.json", "noisy_augmentation.md"
MOVIELENS_100K = "movielens-100k"


def default_experiment_trainer() -> TrainerConfig:
    """The recsys trainer defaults without step checkpoints (each run is trained once, start to end)."""
    return replace(default_trainer_config(), checkpoint_every=10**9)


def default_experiment_model() -> RecommenderConfig:
    """Pure ID LightGCN (symmetric) with LLMRec's pruning ω4 = 0.71 and MAE mask 0.3, γ 2, weight 0.1."""
    return RecommenderConfig(
        use_text_features=False,
        use_item_attributes=False,
        use_user_profiles=False,
        prune_drop_fraction=0.71,
        mae_mask_rate=0.3,
        mae_gamma=2.0,
        mae_loss_weight=0.1,
    )


@dataclass
class NoisyAugmentationConfig:
    """Controlled augmentation on MovieLens-100K: oracle triplets from a held-out pool, injected noise, pruning."""

    run_name: str = "noisy_augmentation"
    """Output folder runs/recsys/<run_name>/ (one sub-folder per seed, noise level and variant)."""
    runs_root: str = "runs"
    """Root folder of run folders."""
    input: str = MOVIELENS_100K
    """'movielens-100k' (built in) or a folder of RecBole atomic files whose .inter has a rating column."""
    seeds: list[int] = field(default_factory=lambda: [2022, 2023, 2024, 2025, 2026])
    """Seeds: each sets the pool, the split, the triplets, the noise, the initialisation and the batch order."""
    noise_levels: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5])
    """Fractions of the oracle triplets replaced by injected noise."""
    noise_kind: str = "flip"
    """'flip' (liked and disliked swapped) or 'random' (two items the user has not trained on)."""
    variants: list[str] = field(default_factory=lambda: list(DEFAULT_VARIANTS))
    """Runs at each noise level (the first is the baseline of the differences); '+aug+small_loss' adds the
    usual small-loss denoiser (drop the small_loss_drop_fraction largest-loss pairs) as a control."""
    small_loss_drop_fraction: float = 0.2
    """Fraction of the largest-loss pairs the '+aug+small_loss' control drops (LLMRec's pruning instead drops
    the model.prune_drop_fraction smallest-loss pairs)."""
    pool_share: float = 0.2
    """Share of each user's ratings held out as the augmentation pool (never in train, validation or test)."""
    positive_rating: float = 4.0
    """Ratings >= this are positives: implicit interactions in train/validation/test, liked in triplets."""
    negative_rating: float = 2.0
    """Pool ratings <= this are the disliked items of the oracle triplets."""
    split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    """Train/validation/test fractions of each user's positives outside the pool."""
    cache_dir: str = "runs/recsys/cache"
    """Cache of the MiniLM item text features (the MAE variant reconstructs them)."""
    model: RecommenderConfig = field(default_factory=default_experiment_model)
    """Model settings; the pruning and MAE values are what the +prune and +mae variants switch on."""
    fit: FitConfig = field(default_factory=FitConfig)
    """Batch size, augmented share (LLMRec ω3), evaluation batch and CPU threads of every run."""
    trainer: TrainerConfig = field(default_factory=default_experiment_trainer)
    """Trainer settings of every run (budget, validation, selection; seed is set by each of --seeds)."""


def check_experiment_config(config: NoisyAugmentationConfig) -> None:
    """Refuses settings that cannot work or that --seeds would silently override, naming the flag.

    Raises:
        UserError: no or repeated seeds, unknown or repeated variants, noise levels outside [0, 1], an unknown
            noise kind, a pool share outside (0, 1), thresholds that overlap, or a trainer seed besides --seeds.
    """
    if not config.seeds or len(set(config.seeds)) != len(config.seeds):
        raise UserError(f"--seeds: give one or more distinct seeds, got {list(config.seeds)}")
    unknown = [name for name in config.variants if name not in VARIANTS]
    if unknown or not config.variants or len(set(config.variants)) != len(config.variants):
        raise UserError(f"--variants: give distinct names among {list(VARIANTS)}, got {list(config.variants)}")
    levels = list(config.noise_levels)
    if not levels or len(set(levels)) != len(levels) or not all(0.0 <= level <= 1.0 for level in levels):
        raise UserError(f"--noise_levels: give distinct fractions in [0, 1], got {levels}")
    if config.noise_kind not in NOISE_KINDS:
        raise UserError(f"--noise_kind: must be one of {NOISE_KINDS}, got {config.noise_kind!r}")
    if not 0.0 < config.small_loss_drop_fraction < 1.0:
        raise UserError(f"--small_loss_drop_fraction: must be in (0, 1), got {config.small_loss_drop_fraction}")
    if not 0.0 < config.pool_share < 1.0:
        raise UserError(f"--pool_share: must be in (0, 1), got {config.pool_share}")
    if config.negative_rating >= config.positive_rating:
        raise UserError(
            f"--negative_rating {config.negative_rating} must be below --positive_rating {config.positive_rating}"
        )
    ratios = tuple(config.split_ratios)
    if len(ratios) != 3 or min(ratios) < 0 or abs(sum(ratios) - 1.0) > 1e-6 or ratios[2] == 0:
        raise UserError(f"--split_ratios: must be three fractions summing to 1 with a test share, got {list(ratios)}")
    if config.trainer.seed != default_experiment_trainer().seed:
        raise UserError(f"--trainer.seed {config.trainer.seed} and --seeds both set the seed: use --seeds only")
    check_recommender_config(config.model)
    check_fit_config(config.fit)
    check_trainer_config(config.trainer)


@dataclass
class PoolSplit:
    """One seed's data: the split positives and the held-out augmentation pool.

    Attributes:
        data: Train/validation/test positives (indices as in ``data``).
        pool: (P, 3) pool ratings ``(user, item, rating)`` in ``data``'s indices, disjoint from every split.
    """

    data: InteractionData
    pool: np.ndarray


def read_rated_interactions(source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rated interactions (``user_id``, ``item_id``, ``rating``) and the item table of ``source``.

    Raises:
        UserError: ``source`` is not the built-in name or a folder, or its interactions have no rating.
    """
    if source == MOVIELENS_100K:
        folder, name = movielens_100k_dir(), "ml-100k"
    else:
        folder, name = Path(source), None
        if not folder.is_dir():
            raise UserError(f"--input {source}: no such folder (give a RecBole folder or '{MOVIELENS_100K}')")
    tables = read_recbole_dataset(folder, name)
    if "rating" not in tables.inter.columns:
        raise UserError(f"--input {source}: {tables.name}.inter has no rating column (the oracle needs ratings)")
    frame = tables.inter[["user_id", "item_id", "rating"]].copy()
    frame["user_id"], frame["item_id"] = frame["user_id"].astype(str), frame["item_id"].astype(str)
    return frame.drop_duplicates(["user_id", "item_id"], keep="last"), item_table_from_recbole(tables)


def split_with_pool(
    ratings: pd.DataFrame,
    items: pd.DataFrame,
    seed: int,
    pool_share: float,
    positive_rating: float,
    split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    name: str = "ml-100k",
) -> PoolSplit:
    """Holds out each user's augmentation pool, then splits the remaining positives per user.

    Per user, ``round(pool_share · n)`` of their ``n`` ratings (seeded random choice, whatever the rating)
    form the pool; the user's other ratings ``>= positive_rating`` are split train/validation/test with
    ``split_ratios``. Pool ratings of users left without a positive outside the pool are dropped.
    """
    rng = np.random.default_rng([seed, 7])
    ratings = ratings.reset_index(drop=True)
    order = ratings.assign(key=rng.random(len(ratings)), row=np.arange(len(ratings)))
    order = order.sort_values(["user_id", "key", "row"], kind="stable")
    rank = order.groupby("user_id").cumcount().to_numpy()
    count = order.groupby("user_id")["row"].transform("size").to_numpy()
    in_pool = pd.Series(rank < np.round(count * pool_share), index=order.index).reindex(ratings.index)
    pool_frame = ratings[in_pool.to_numpy()]
    kept = ratings[~in_pool.to_numpy()]
    data = interactions_from_frame(kept, items, ratios=split_ratios, seed=seed, min_rating=positive_rating, name=name)
    users, item_lookup = data.user_index(), data.item_index()
    pool_frame = pool_frame[pool_frame["user_id"].isin(users)]
    pool = np.stack(
        [
            pool_frame["user_id"].map(users).to_numpy(dtype=np.int64),
            pool_frame["item_id"].map(item_lookup).to_numpy(dtype=np.int64),
            pool_frame["rating"].to_numpy(dtype=np.int64),
        ],
        axis=1,
    ).reshape(-1, 3)
    # The pool's ratings are known interactions: ranking them would spend top-K slots on items that can
    # never be hits (and penalise exactly the variants told about them), so every ranking excludes them.
    data.held_out_known = pool[:, :2].copy()
    return PoolSplit(data=data, pool=pool)


def oracle_triplets(pool: np.ndarray, seed: int, positive_rating: float, negative_rating: float) -> np.ndarray:
    """``(user, liked, disliked)`` triplets from the pool: one per liked pool rating of a user with a disliked one.

    The disliked item is drawn (seeded) among the user's pool ratings ``<= negative_rating``.
    """
    rng = np.random.default_rng([seed, 11])
    triplets = []
    for user in np.unique(pool[:, 0]):
        own = pool[pool[:, 0] == user]
        liked = own[own[:, 2] >= positive_rating, 1]
        disliked = own[own[:, 2] <= negative_rating, 1]
        if len(liked) and len(disliked):
            for item in liked:
                triplets.append((user, item, disliked[rng.integers(len(disliked))]))
    return np.asarray(triplets, dtype=np.int64).reshape(-1, 3)


def inject_noise(
    triplets: np.ndarray, level: float, kind: str, seed: int, data: InteractionData
) -> tuple[np.ndarray, np.ndarray]:
    """Replaces a ``level`` fraction of ``triplets`` by noise; returns the triplets and the noise flags.

    The corrupted triplets are the first ``round(level · A)`` of one seeded permutation, so a lower level's
    noise is a subset of a higher one's. ``flip`` swaps liked and disliked; ``random`` draws both items
    uniformly among the items the user has no training interaction with.
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; available: {NOISE_KINDS}")
    order = np.random.default_rng([seed, 13]).permutation(len(triplets))
    corrupted = order[: round(level * len(triplets))]
    noisy = np.zeros(len(triplets), dtype=bool)
    noisy[corrupted] = True
    result = triplets.copy()
    if kind == "flip":
        result[corrupted, 1], result[corrupted, 2] = triplets[corrupted, 2], triplets[corrupted, 1]
    else:
        rng = np.random.default_rng([seed, 17])
        known = {(int(user), int(item)) for user, item in data.train}
        for index in corrupted:
            user = int(result[index, 0])
            drawn = []
            while len(drawn) < 2:
                item = int(rng.integers(data.n_items))
                if (user, item) not in known and item not in drawn:
                    drawn.append(item)
            result[index, 1], result[index, 2] = drawn
    return result, noisy


def variant_settings(
    name: str, full: RecommenderConfig, small_loss_drop_fraction: float = 0.2
) -> tuple[RecommenderConfig, bool]:
    """The model config of a variant and whether it trains on the triplets."""
    base = base_model_config(full)
    pruned = replace(base, prune_drop_fraction=full.prune_drop_fraction)
    settings = {
        "lightgcn": (base, False),
        "+prune": (pruned, False),
        "+aug": (base, True),
        "+aug+prune": (pruned, True),
        "+aug+prune+mae": (
            replace(
                pruned,
                use_text_features=True,
                mae_mask_rate=full.mae_mask_rate,
                mae_gamma=full.mae_gamma,
                mae_loss_weight=full.mae_loss_weight,
            ),
            True,
        ),
    }
    settings["+aug+small_loss"] = (
        replace(base, prune_drop_fraction=small_loss_drop_fraction, prune_keep="easiest"),
        True,
    )
    if name not in settings:
        raise ValueError(f"unknown variant {name!r}; available: {VARIANTS}")
    return settings[name]


def _train_and_score(
    run_dir: Path,
    name: str,
    config: NoisyAugmentationConfig,
    data: InteractionData,
    trainer: TrainerConfig,
    augmentation: Augmentation | None,
) -> dict[str, Any]:
    model_config, _ = variant_settings(name, config.model, config.small_loss_drop_fraction)
    sub_run = RunFolder(run_dir)
    sub_run.save_config(
        {"variant": name, "model": model_config, "fit": config.fit, "trainer": trainer, "input": config.input}
    )
    started = time.perf_counter()
    model, result = train_recommender(data, model_config, config.fit, trainer, sub_run.path, augmentation)
    metrics: dict[str, Any] = evaluate_split(
        model, data, "test", batch_users=config.fit.eval_batch_users, test_excludes=config.fit.test_excludes
    )
    metrics.update(seconds=time.perf_counter() - started, steps=float(result.step))
    if augmentation is not None and model_config.prune_drop_fraction > 0:
        metrics["pruning"] = model.pruning_counts.as_dict()
    return metrics


def _run_seed(config: NoisyAugmentationConfig, seed: int, seed_dir: Path, ratings, items) -> dict[str, Any]:
    """Every variant at every noise level on one seed's split."""
    split = split_with_pool(ratings, items, seed, config.pool_share, config.positive_rating, tuple(config.split_ratios))
    data = split.data
    if any(variant_settings(name, config.model)[0].use_text_features for name in config.variants):
        data.item_text_features = cached_text_features(data.item_texts, config.cache_dir)
    triplets = oracle_triplets(split.pool, seed, config.positive_rating, config.negative_rating)
    if not len(triplets):
        raise NothingProduced(f"--input {config.input}: the pool of seed {seed} yields no oracle triplet")
    trainer = resolve_trainer(replace(config.trainer, seed=seed), data, config.fit)
    record: dict[str, Any] = {
        "seed": seed,
        "pool_ratings": int(len(split.pool)),
        "triplets": int(len(triplets)),
        "train_pairs": int(len(data.train)),
        "val_pairs": int(len(data.val)),
        "test_pairs": int(len(data.test)),
        "levels": {},
    }
    shared_runs: dict[str, dict[str, Any]] = {}
    for level in config.noise_levels:
        noisy_triplets, noisy = inject_noise(triplets, level, config.noise_kind, seed, data)
        augmentation = Augmentation(edges=noisy_triplets, edge_is_noise=noisy, folder=None)
        level_results = {}
        for name in config.variants:
            if name in NOISE_FREE_VARIANTS:
                if name not in shared_runs:
                    shared_runs[name] = _train_and_score(seed_dir / name.strip("+"), name, config, data, trainer, None)
                metrics = shared_runs[name]
            else:
                folder = seed_dir / f"noise{level:g}" / name.strip("+").replace("+", "_")
                metrics = _train_and_score(folder, name, config, data, trainer, augmentation)
            level_results[name] = metrics
            pruning = metrics.get("pruning") or {}
            share = pruning.get("noise_share_of_dropped_augmented")
            print(
                f"seed {seed} noise {level:g} {name:15s} recall@20 {metrics['recall@20']:.4f} "
                f"ndcg@20 {metrics['ndcg@20']:.4f} ({metrics['steps']:.0f} steps, {metrics['seconds']:.0f} s)"
                + (f" noise share of dropped triplets {share:.3f}" if share is not None else ""),
                flush=True,
            )
        record["levels"][f"{level:g}"] = level_results
    return record


def _cell(summary: SeedSummary) -> str:
    if summary.n < 2:
        return summary.format(4)
    return f"{summary.mean:.4f} [{summary.low:.4f}, {summary.high:.4f}]"


def _difference_cell(difference: SeedSummary) -> str:
    return f"{_cell(difference)} ({verdict(difference, higher_is_better=True)})"


def summarize_experiment(records: list[dict[str, Any]], variants: list[str], metric: str = "recall@20") -> str:
    """The Markdown report: per-level results, the claims with paired differences, and the pruning log.

    Args:
        records: One record per seed as written by the experiment (``levels`` → variant → metrics).
        variants: Variants in table order (the first is the baseline of the Δ column).
        metric: The metric the claims are judged on.
    """
    levels = list(records[0]["levels"])
    baseline = variants[0]

    def by_seed(level: str, name: str, key: str = metric) -> dict[int, float | None]:
        return {
            int(r["seed"]): r["levels"][level].get(name, {}).get(key) for r in records if name in r["levels"][level]
        }

    sections = []
    header = ["noise", "variant", *METRICS, f"Δ {metric} vs {baseline} (paired)"]
    rows = []
    for level in levels:
        for name in variants:
            cells = [_cell(summarize(by_seed(level, name, key).values())) for key in METRICS]
            delta = (
                "—"
                if name == baseline
                else _difference_cell(paired_difference(by_seed(level, name), by_seed(level, baseline)))
            )
            rows.append([level, name, *cells, delta])
    sections.append("### Test metrics (mean [95% interval] over seeds)\n\n" + markdown_table(header, rows))

    claims = []
    clean = levels[0]
    if {"+aug", "lightgcn"} <= set(variants):
        difference = paired_difference(by_seed(clean, "+aug"), by_seed(clean, "lightgcn"))
        claims.append(
            [f"augmentation helps when clean: +aug > lightgcn at noise {clean}", _difference_cell(difference)]
        )
    if {"+prune", "lightgcn"} <= set(variants):
        difference = paired_difference(by_seed(clean, "+prune"), by_seed(clean, "lightgcn"))
        claims.append(["control: pruning alone > lightgcn (no triplets)", _difference_cell(difference)])
    if {"+aug", "+aug+prune"} <= set(variants):
        clean_gain = paired_difference(by_seed(clean, "+aug+prune"), by_seed(clean, "+aug"))
        claims.append([f"pruning helps +aug at noise {clean}", _difference_cell(clean_gain)])
        for level in levels[1:]:
            gain = paired_difference(by_seed(level, "+aug+prune"), by_seed(level, "+aug"))
            claims.append([f"pruning helps +aug at noise {level}: +aug+prune > +aug", _difference_cell(gain)])
            lost = paired_difference(by_seed(clean, "+aug"), by_seed(level, "+aug"))
            claims.append([f"noise {level} costs +aug: +aug(clean) > +aug(noise {level})", _difference_cell(lost)])
            noisy_gain = {
                seed: (value - by_seed(level, "+aug")[seed])
                - (by_seed(clean, "+aug+prune")[seed] - by_seed(clean, "+aug")[seed])
                for seed, value in by_seed(level, "+aug+prune").items()
                if None
                not in (
                    value,
                    by_seed(level, "+aug")[seed],
                    by_seed(clean, "+aug+prune")[seed],
                    by_seed(clean, "+aug")[seed],
                )
            }
            claims.append(
                [
                    f"pruning's gain is larger at noise {level} than clean (difference in differences)",
                    _difference_cell(summarize(noisy_gain.values())),
                ]
            )
            if "lightgcn" in variants:
                recovered = paired_difference(by_seed(level, "+aug+prune"), by_seed(clean, "+aug"))
                claims.append(
                    [
                        f"+aug+prune at noise {level} reaches clean +aug (≥ 0 means fully recovered)",
                        _difference_cell(recovered),
                    ]
                )
    if {"+aug", "+aug+small_loss"} <= set(variants):
        for level in levels:
            difference = paired_difference(by_seed(level, "+aug+small_loss"), by_seed(level, "+aug"))
            claims.append([f"control: small-loss denoising helps +aug at noise {level}", _difference_cell(difference)])
    sections.append(
        f"### Claims on {metric} (paired difference over seeds, mean [95% interval], verdict)\n\n"
        + markdown_table(["claim", "difference"], claims)
    )

    pruned = [name for name in variants if name.startswith("+aug") and name != "+aug"]
    log_rows = []
    for level in levels:
        for name in pruned:
            logs = [r["levels"][level][name].get("pruning") or {} for r in records if name in r["levels"][level]]
            values = {
                key: summarize(log.get(key) for log in logs)
                for key in (
                    "noise_share_of_augmented",
                    "noise_share_of_dropped_augmented",
                    "dropped_share_of_noisy",
                    "dropped_share_of_clean_augmented",
                )
            }
            log_rows.append([level, name, *(_cell(value) for value in values.values())])
    sections.append(
        "### What pruning dropped among the triplets (mean [95% interval] over seeds)\n\n"
        + markdown_table(
            [
                "noise",
                "variant",
                "noise share of triplets seen",
                "noise share of dropped triplets",
                "share of noisy triplets dropped",
                "share of clean triplets dropped",
            ],
            log_rows,
        )
    )
    sizes = markdown_table(
        ["seed", "pool ratings", "oracle triplets", "train pairs", "val pairs", "test pairs"],
        [
            [r["seed"], r["pool_ratings"], r["triplets"], r["train_pairs"], r["val_pairs"], r["test_pairs"]]
            for r in records
        ],
    )
    sections.append("### Data per seed\n\n" + sizes)
    return "\n\n".join(sections) + "\n"


@dataclass(frozen=True)
class ExperimentRun:
    """What :func:`run_noisy_augmentation` wrote: the run folder, the per-seed records and the report."""

    folder: RunFolder
    records: list[dict[str, Any]]
    report: str


def run_noisy_augmentation(config: NoisyAugmentationConfig) -> ExperimentRun:
    """Runs every seed, noise level and variant; writes the per-seed records and the Markdown report.

    Writes ``runs/recsys/<run_name>/``: ``config.yaml``, ``noisy_augmentation.json`` (after each seed),
    ``noisy_augmentation.md``, and one folder per seed/level/variant holding the settings that ran there.
    """
    check_experiment_config(config)
    ratings, items = read_rated_interactions(config.input)
    out = RunFolder.create("recsys", config.run_name, config.runs_root)
    out.clear_finished()
    out.save_config(config)
    records = []
    for seed in config.seeds:
        records.append(_run_seed(config, seed, out.path / f"seed{seed}", ratings, items))
        write_json_atomically(out.path / RESULTS_FILE, records)
    report = summarize_experiment(records, list(config.variants))
    write_text_atomically(out.path / TABLE_FILE, report)
    clean = f"{config.noise_levels[0]:g}"
    out.mark_finished(
        COMMAND,
        outputs=[CONFIG_FILE, RESULTS_FILE, TABLE_FILE],
        summary={
            f"{name} recall@20 at noise {clean}": summarize(r["levels"][clean][name]["recall@20"] for r in records).mean
            for name in config.variants
        },
    )
    return ExperimentRun(folder=out, records=records, report=report)
