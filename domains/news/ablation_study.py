"""FND-CLIP ablations × seeds on cached features → a table of test metrics with 95% intervals.

Variants (each trained with validation-only selection and tested once, like ``train``):

* ``full``: text, image and cross-modal branches, affine similarity weighting (the official model);
* ``standardized``: as full, with the batch-standardised similarity (the paper's wording);
* ``no_similarity``: as full, the cross-modal feature not scaled by CLIP similarity;
* ``no_clip``: no CLIP at all: text and image branches on the text and image towers only;
* ``text_only``: the text branch (text tower + CLIP text);
* ``image_only``: the image branch (image tower + CLIP image);
* ``cross_only``: the cross-modal branch (CLIP text ‖ CLIP image, scaled by the similarity affine).

Before any head, the CLIP similarity gauge's own test ROC-AUC (raw cosine, :mod:`domains.news.similarity_gauge`)
is measured and reported per falsification kind. A variant that sees the text only is **constant by design**
when every test caption occurs equally often real and fake (the built-in set): any function of the text then
has ROC-AUC exactly 0.5, so it is reported as such and not trained or tabulated.

Every variant and seed sees the same split and the same stand-in CLIP (fitted once, with the first seed),
so the seeds vary the head's initialisation and batch order only. Each metric is summarised over seeds by
:mod:`shared.seed_statistics` (mean, sample standard deviation, 95% t-interval); an undefined value (e.g.
ROC-AUC on a one-class test split) is left out and counted, never turned into a number. Each claim "full
beats <variant>" is the paired difference full − variant over seeds, with its interval and a verdict.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from domains.news.data import FAKE
from domains.news.detector_training import (
    TRAIN_COMMAND,
    check_trainer_settings,
    demo_trainer_config,
    fit_clip_features,
    load_training_posts,
    steps_per_epoch,
    train_head,
)
from domains.news.feature_cache import DEFAULT_CACHE_DIR, set_cpu_threads
from domains.news.frozen_encoders import EncoderConfig
from domains.news.ingestion import DEFAULT_SHARDS, ensure_builtin_shards
from domains.news.model import HeadConfig
from domains.news.similarity_gauge import ALL_KINDS, post_strategies, similarity_gauge_auc
from domains.news.splits import check_fractions
from shared.atomic_files import write_json_atomically, write_text_atomically
from shared.checkpoints import check_resume
from shared.run_folder import RunFolder
from shared.seed_statistics import markdown_table, paired_difference, summarize, verdict
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
    "cross_only": {"branches": ["cross"]},
}
DEFAULT_VARIANTS = ["full", "no_clip", "image_only", "cross_only", "text_only", "no_similarity"]
REPORTED = ("accuracy", "roc_auc", "macro_f1", "ece")
TEXT_ONLY_VARIANTS = ("text_only",)
"""Variants whose score is a function of the post text alone."""


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
    variants: list[str] = field(default_factory=lambda: list(DEFAULT_VARIANTS))
    """Variants to run (full, standardized, no_similarity, no_clip, text_only, image_only, cross_only)."""
    seeds: list[int] = field(default_factory=lambda: [64, 1, 2, 3, 4])
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
    cpu_threads: int = 1
    """torch CPU threads for features and training (a CPU run is bit-for-bit repeatable for a given value; 0 = torch's default)."""
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
    if config.cpu_threads < 0:
        raise UserError(f"--cpu_threads: must be >= 0, got {config.cpu_threads}")
    check_fractions(config.val_fraction, config.test_fraction)
    config.encoders.check()
    for variant in config.variants:
        dataclasses.replace(config.head, **VARIANTS[variant]).check()
    check_trainer_settings(config.trainer)
    if config.trainer.resume not in (None, "latest"):
        raise UserError("--trainer.resume: only 'latest' (each variant and seed resumes its own run)")


def text_is_balanced(labels: Any, texts: list[str], rows: Any) -> bool:
    """Whether every text of ``rows`` occurs equally often as real and as fake (text alone cannot tell)."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[texts[row]] = counts.get(texts[row], 0) + (1 if labels[row] == FAKE else -1)
    return bool(counts) and all(balance == 0 for balance in counts.values())


def _metric_columns(per_run: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """``roc_auc``, then ``roc_auc[<kind>]`` for each falsification kind seen, then accuracy."""
    kinds = sorted(
        {kind for runs in per_run.values() for run in runs.values() for kind in run.get("roc_auc_by_kind", {})}
    )
    return ["roc_auc", *(f"roc_auc[{kind}]" for kind in kinds if kind != ALL_KINDS), "accuracy"]


def _metric_value(run: dict[str, Any], metric: str) -> float | None:
    if metric.startswith("roc_auc["):
        return run.get("roc_auc_by_kind", {}).get(metric[len("roc_auc[") : -1])
    return run[metric]


def ablation_tables(
    per_run: dict[str, dict[str, dict[str, Any]]],
    seeds: list[int],
    gauge: dict[str, float | None] | None,
    constant: dict[str, str],
) -> tuple[str, dict[str, Any]]:
    """The markdown report (gauge, variant table, paired differences) and its numbers as JSON-able dicts."""
    columns = _metric_columns(per_run)
    summaries = {
        variant: {metric: summarize(_metric_value(run, metric) for run in runs.values()) for metric in columns}
        for variant, runs in per_run.items()
    }
    parts = []
    if gauge is not None:
        cells = ", ".join(f"{kind} {_format_auc(value)}" for kind, value in gauge.items())
        parts.append(f"CLIP similarity gauge, test ROC-AUC of the raw cosine (fake = low): {cells}.")
    parts.append(
        f"Test metrics over seeds {seeds}: mean [95% t-interval] (model selected on validation ROC-AUC; "
        "undefined values are left out and counted). roc_auc[kind]: all real test posts vs the fakes of that kind."
    )
    rows = [[variant, *(summaries[variant][metric].format() for metric in columns)] for variant in summaries]
    parts.append(markdown_table(["variant", *columns], rows))
    for variant, reason in constant.items():
        parts.append(f"Not tabulated: `{variant}` is constant by design ({reason}).")
    differences: dict[str, dict[str, Any]] = {}
    if "full" in per_run:
        diff_rows = []
        for variant in per_run:
            if variant == "full":
                continue
            for metric in columns:
                full_by_seed = {seed: _metric_value(run, metric) for seed, run in per_run["full"].items()}
                other_by_seed = {seed: _metric_value(run, metric) for seed, run in per_run[variant].items()}
                difference = paired_difference(full_by_seed, other_by_seed)
                decided = verdict(difference, higher_is_better=True)
                differences.setdefault(variant, {})[metric] = difference.as_dict() | {"verdict": decided}
                diff_rows.append([f"full − {variant}", metric, difference.format(), decided])
        if diff_rows:
            parts.append("Paired differences over seeds (full − variant; claim: full beats the variant):")
            parts.append(markdown_table(["comparison", "metric", "difference [95% CI]", "verdict"], diff_rows))
    numbers = {
        "summary": {v: {m: s.as_dict() for m, s in metrics.items()} for v, metrics in summaries.items()},
        "paired_differences": differences,
    }
    return "\n\n".join(parts) + "\n", numbers


def _format_auc(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"


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
    set_cpu_threads(config.cpu_threads)
    encoders, table, rows = load_training_posts(
        shards, config.encoders, config.device, config.cache_dir, config.val_fraction, config.test_fraction, first
    )
    trainer = resolve_budget(config.trainer, steps_per_epoch(len(rows["train"]), config.batch_size))
    config = dataclasses.replace(config, trainer=trainer)
    folder.save_config(config)
    prepared = fit_clip_features(encoders, table, rows, folder.path, first)
    strategies = post_strategies(table.meta)
    gauge = similarity_gauge_auc(prepared.features, table.labels, rows["test"], strategies)
    print(f"CLIP similarity gauge, test ROC-AUC: {gauge}")
    constant: dict[str, str] = {}
    if text_is_balanced(table.labels, table.texts, rows["test"]):
        reason = "every test caption occurs once real and once fake, so any text-only score has ROC-AUC 0.5 exactly"
        constant = {variant: reason for variant in config.variants if variant in TEXT_ONLY_VARIANTS}
    per_run: dict[str, dict[str, dict[str, Any]]] = {}
    for variant in config.variants:
        if variant in constant:
            print(f"{variant}: not trained, constant by design ({constant[variant]})")
            continue
        head = dataclasses.replace(config.head, **VARIANTS[variant])
        for seed in config.seeds:
            run_trainer = dataclasses.replace(trainer, seed=seed, progress_bar=False)
            run = RunFolder(folder.path / variant / f"seed-{seed}")
            run.save_config({"variant": variant, "head": head, "trainer": run_trainer, "batch_size": config.batch_size})
            _, test = train_head(prepared, head, run_trainer, config.batch_size, run.path)
            per_run.setdefault(variant, {})[str(seed)] = test
            print(
                f"{variant} seed {seed}: test accuracy {test['accuracy']:.3f}, ROC-AUC {_format_auc(test['roc_auc'])}"
            )
    table_text, numbers = ablation_tables(per_run, config.seeds, gauge, constant)
    result = numbers | {
        "similarity_gauge_roc_auc": gauge,
        "constant_by_design": constant,
        "runs": per_run,
        "seeds": config.seeds,
        "data": config.input,
        "split_sizes": {k: len(v) for k, v in prepared.rows.items()},
        "selection": f"validation {trainer.select_metric} ({TRAIN_COMMAND}'s recipe)",
    }
    write_json_atomically(folder.path / "ablation.json", result)
    write_text_atomically(folder.path / "ablation.md", table_text)
    full = numbers["summary"].get("full", next(iter(numbers["summary"].values()), {}))
    folder.mark_finished(
        ABLATE_COMMAND,
        ["config.yaml", "ablation.json", "ablation.md"],
        summary={
            "variants": len(per_run),
            "seeds": len(config.seeds),
            "roc_auc": full.get("roc_auc", {}).get("mean"),
            "similarity_gauge_roc_auc": gauge.get(ALL_KINDS),
        },
    )
    return AblationResult(result, table_text, folder)
