"""FND-CLIP ablations × seeds on cached features → a table of test metrics with 95% intervals.

Variants (each trained with validation-only selection and tested once, like ``train``):

* ``full``: text, image and cross-modal branches, affine similarity weighting (the official model);
* ``standardized``: as full, with the batch-standardised similarity (the paper's wording);
* ``no_similarity``: as full, the cross-modal feature not scaled by CLIP similarity;
* ``no_clip``: no CLIP at all: text and image branches on the text and image towers only;
* ``text_only``: the text branch (text tower + CLIP text);
* ``image_only``: the image branch (image tower + CLIP image).

Every variant and seed sees the same split and the same stand-in CLIP (fitted once, with the first seed),
so the seeds vary the head's initialisation and batch order only. Each metric is summarised over seeds by
:mod:`shared.seed_statistics` (mean, sample standard deviation, 95% t-interval); an undefined value (e.g.
ROC-AUC on a one-class test split) is left out and counted, never turned into a number.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from domains.news.detector_training import (
    TRAIN_COMMAND,
    check_trainer_settings,
    demo_trainer_config,
    fit_clip_features,
    load_training_posts,
    steps_per_epoch,
    train_head,
)
from domains.news.feature_cache import DEFAULT_CACHE_DIR
from domains.news.frozen_encoders import EncoderConfig
from domains.news.ingestion import DEFAULT_SHARDS, ensure_builtin_shards
from domains.news.model import HeadConfig
from domains.news.splits import check_fractions
from shared.atomic_files import write_json_atomically, write_text_atomically
from shared.checkpoints import check_resume
from shared.run_folder import RunFolder
from shared.seed_statistics import markdown_table, summarize
from shared.trainer import TrainerConfig, resolve_budget
from shared.user_errors import UserError

ABLATE_COMMAND = "domains.news.ablate"
VARIANTS: dict[str, dict[str, Any]] = {
    "full": {},
    "standardized": {"similarity": "standardized"},
    "no_similarity": {"similarity": "none"},
    "no_clip": {"branches": ["text", "image"], "use_clip_in_unimodal": False},
    "text_only": {"branches": ["text"]},
    "image_only": {"branches": ["image"]},
}
REPORTED = ("accuracy", "roc_auc", "macro_f1", "ece")


class UnknownVariantError(UserError, ValueError):
    """``--variants`` names a variant that is not in :data:`VARIANTS`."""


@dataclass
class AblateConfig:
    """Run FND-CLIP ablations over several seeds and tabulate test metrics (mean and 95% interval)."""

    input: str = DEFAULT_SHARDS
    """Shard folder (the default is built from the built-in set when missing)."""
    run_name: str = "ablation"
    """Run folder name under runs/news/."""
    runs_root: str = "runs"
    """Root of all run folders."""
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    """Variants to run (full, standardized, no_similarity, no_clip, text_only, image_only)."""
    seeds: list[int] = field(default_factory=lambda: [64, 1, 2])
    """Training seeds (the split and the CLIP stand-in come from the first seed)."""
    batch_size: int = 64
    """Posts per optimizer step."""
    val_fraction: float = 0.15
    """Validation share when the data has no val split."""
    test_fraction: float = 0.15
    """Test share when the data has no splits."""
    cache_dir: str | None = DEFAULT_CACHE_DIR
    """Frozen-feature cache."""
    device: str = "auto"
    """auto, cpu or cuda."""
    encoders: EncoderConfig = field(default_factory=EncoderConfig)
    """Frozen encoders."""
    head: HeadConfig = field(default_factory=HeadConfig)
    """Base head settings that each variant modifies."""
    trainer: TrainerConfig = field(default_factory=demo_trainer_config)
    """Optimisation and validation selection (each run uses its own seed from --seeds instead of trainer.seed)."""


@dataclass
class AblationResult:
    """What :func:`run_ablation` wrote: the summary table and the per-run test metrics."""

    result: dict[str, Any]
    table: str
    folder: RunFolder


def check_ablate_config(config: AblateConfig) -> None:
    """Refuse settings that cannot run, before any data is read.

    Raises:
        UserError: unknown variants (:class:`UnknownVariantError`), no seeds, a bad batch size, split
            share, head, encoder or trainer setting (named).
    """
    unknown = [variant for variant in config.variants if variant not in VARIANTS]
    if unknown:
        raise UnknownVariantError(f"--variants: unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    if not config.variants:
        raise UserError(f"--variants: give at least one of {list(VARIANTS)}")
    if not config.seeds:
        raise UserError("--seeds: give at least one seed")
    if len(set(config.seeds)) != len(config.seeds):
        raise UserError(f"--seeds: each seed once, got {config.seeds}")
    if config.batch_size < 1:
        raise UserError(f"--batch_size: must be >= 1, got {config.batch_size}")
    check_fractions(config.val_fraction, config.test_fraction)
    config.encoders.check()
    for variant in config.variants:
        dataclasses.replace(config.head, **VARIANTS[variant]).check()
    check_trainer_settings(config.trainer)
    if config.trainer.resume not in (None, "latest"):
        raise UserError("--trainer.resume: only 'latest' (each variant and seed resumes its own run)")


def ablation_table(summary: dict[str, dict[str, Any]], seeds: list[int]) -> str:
    """One row per variant: each reported metric as mean [95% interval] over seeds."""
    rows = [[variant, *(summary[variant][metric].format() for metric in REPORTED)] for variant in summary]
    caption = (
        f"Test metrics over seeds {seeds}: mean [95% t-interval] (model selected on validation ROC-AUC; "
        "undefined values are left out and counted)."
    )
    return caption + "\n\n" + markdown_table(["variant", *REPORTED], rows)


def run_ablation(config: AblateConfig) -> AblationResult:
    """Train every variant with every seed on one split; write ``ablation.md`` and ``ablation.json``.

    Each run's folder is ``<run>/<variant>/seed-<seed>/`` with its own ``config.yaml`` (head and trainer
    exactly as they ran) and ``metrics.csv``.
    """
    check_ablate_config(config)
    shards = ensure_builtin_shards(config.input)
    folder = RunFolder.create("news", config.run_name, config.runs_root)
    first = config.seeds[0]
    if config.trainer.resume == "latest":
        check_resume("latest", folder.path / config.variants[0] / f"seed-{first}" / "checkpoints")
    folder.clear_finished()
    encoders, table, rows = load_training_posts(
        shards, config.encoders, config.device, config.cache_dir, config.val_fraction, config.test_fraction, first
    )
    trainer = resolve_budget(config.trainer, steps_per_epoch(len(rows["train"]), config.batch_size))
    config = dataclasses.replace(config, trainer=trainer)
    folder.save_config(config)
    prepared = fit_clip_features(encoders, table, rows, folder.path, first)
    per_run: dict[str, dict[str, dict[str, Any]]] = {}
    for variant in config.variants:
        head = dataclasses.replace(config.head, **VARIANTS[variant])
        for seed in config.seeds:
            run_trainer = dataclasses.replace(trainer, seed=seed, progress_bar=False)
            run = RunFolder(folder.path / variant / f"seed-{seed}")
            run.save_config({"variant": variant, "head": head, "trainer": run_trainer, "batch_size": config.batch_size})
            _, test = train_head(prepared, head, run_trainer, config.batch_size, run.path)
            per_run.setdefault(variant, {})[str(seed)] = test
            roc_auc = "undefined" if test["roc_auc"] is None else f"{test['roc_auc']:.3f}"
            print(f"{variant} seed {seed}: test accuracy {test['accuracy']:.3f}, ROC-AUC {roc_auc}")
    summaries = {
        variant: {metric: summarize(run[metric] for run in runs.values()) for metric in REPORTED}
        for variant, runs in per_run.items()
    }
    table_text = ablation_table(summaries, config.seeds)
    result = {
        "summary": {v: {m: s.as_dict() for m, s in metrics.items()} for v, metrics in summaries.items()},
        "runs": per_run,
        "seeds": config.seeds,
        "data": config.input,
        "split_sizes": {k: len(v) for k, v in prepared.rows.items()},
        "selection": f"validation {trainer.select_metric} ({TRAIN_COMMAND}'s recipe)",
    }
    write_json_atomically(folder.path / "ablation.json", result)
    write_text_atomically(folder.path / "ablation.md", table_text)
    full = summaries.get("full", next(iter(summaries.values())))
    folder.mark_finished(
        ABLATE_COMMAND,
        ["config.yaml", "ablation.json", "ablation.md"],
        summary={"variants": len(summaries), "seeds": len(config.seeds), "roc_auc": full["roc_auc"].as_dict()["mean"]},
    )
    return AblationResult(result, table_text, folder)
