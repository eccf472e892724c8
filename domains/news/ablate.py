"""``python -m domains.news.ablate``: FND-CLIP ablations × seeds on cached features → a markdown + JSON table.

Variants (each trained with validation-only selection and tested once, like ``train``):

* ``full``: text, image and cross-modal branches, affine similarity weighting (the official model);
* ``standardized``: as full, with the batch-standardised similarity (the paper's wording);
* ``no_similarity``: as full, the cross-modal feature not scaled by CLIP similarity;
* ``no_clip``: no CLIP at all: text and image branches on the text and image towers only;
* ``text_only``: the text branch (text tower + CLIP text);
* ``image_only``: the image branch (image tower + CLIP image).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from domains.news.detector import EncoderConfig, HeadConfig
from domains.news.ingest import DEFAULT_SHARDS
from domains.news.train import DEFAULT_CACHE_DIR, TrainConfig, demo_trainer_config, prepare_data, train_head
from shared.trainer import TrainerConfig

VARIANTS: dict[str, dict[str, Any]] = {
    "full": {},
    "standardized": {"similarity": "standardized"},
    "no_similarity": {"similarity": "none"},
    "no_clip": {"branches": ["text", "image"], "use_clip_in_unimodal": False},
    "text_only": {"branches": ["text"]},
    "image_only": {"branches": ["image"]},
}
REPORTED = ("accuracy", "roc_auc", "macro_f1", "ece")


@dataclass
class AblateConfig:
    """Run FND-CLIP ablations over several seeds and tabulate test metrics (mean ± std)."""

    data: str = DEFAULT_SHARDS
    """Shard folder (the default is built from the built-in set when missing)."""
    run_name: str = "ablation"
    """Run folder name under runs/news/."""
    runs_root: str = "runs"
    """Root of all run folders."""
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    """Variants to run (full, standardized, no_similarity, no_clip, text_only, image_only)."""
    seeds: list[int] = field(default_factory=lambda: [64, 1, 2])
    """Training seeds (the CLIP stand-in is fitted once, with the first seed)."""
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
    """Optimisation and validation selection (the seed is replaced per run)."""


def markdown_table(summary: dict[str, dict[str, Any]], seeds: list[int]) -> str:
    """Mean ± std over seeds of each reported metric, one row per variant."""
    lines = [
        f"Test metrics, mean ± std over seeds {seeds} (model selected on validation ROC-AUC).",
        "",
        "| variant | " + " | ".join(REPORTED) + " |",
        "|---|" + "---|" * len(REPORTED),
    ]
    for variant, stats in summary.items():
        cells = [f"{stats[m]['mean']:.3f} ± {stats[m]['std']:.3f}" for m in REPORTED]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command entry point; returns the summary written to ``ablation.json``."""
    from shared.cli import parse_config, run_dir_for, save_config, write_text_atomically

    config = parse_config(AblateConfig, argv, prog="python -m domains.news.ablate")
    unknown = set(config.variants) - set(VARIANTS)
    if unknown:
        raise ValueError(f"unknown variant(s) {sorted(unknown)}; choose from {list(VARIANTS)}")
    run_dir = run_dir_for("news", config.run_name, config.runs_root)
    save_config(config, run_dir)
    train_config = TrainConfig(
        data=config.data,
        run_name=config.run_name,
        runs_root=config.runs_root,
        batch_size=config.batch_size,
        val_fraction=config.val_fraction,
        test_fraction=config.test_fraction,
        cache_dir=config.cache_dir,
        device=config.device,
        encoders=config.encoders,
        head=config.head,
        trainer=dataclasses.replace(config.trainer, seed=config.seeds[0]),
    )
    prepared = prepare_data(train_config, run_dir)
    per_run: dict[str, dict[str, dict[str, Any]]] = {}
    for variant in config.variants:
        head = dataclasses.replace(config.head, **VARIANTS[variant])
        for seed in config.seeds:
            trainer = dataclasses.replace(config.trainer, seed=seed, progress_bar=False)
            _, test = train_head(prepared, head, trainer, config.batch_size, run_dir / variant / f"seed-{seed}")
            per_run.setdefault(variant, {})[str(seed)] = test
            print(f"{variant} seed {seed}: test accuracy {test['accuracy']:.3f}, ROC-AUC {test['roc_auc']:.3f}")
    summary = {
        variant: {
            metric: {
                "mean": float(np.mean([r[metric] or 0.0 for r in runs.values()])),
                "std": float(np.std([r[metric] or 0.0 for r in runs.values()])),
            }
            for metric in REPORTED
        }
        for variant, runs in per_run.items()
    }
    table = markdown_table(summary, config.seeds)
    result = {
        "summary": summary,
        "runs": per_run,
        "seeds": config.seeds,
        "data": config.data,
        "split_sizes": {k: len(v) for k, v in prepared.rows.items()},
    }
    write_text_atomically(run_dir / "ablation.json", json.dumps(result, indent=2))
    write_text_atomically(run_dir / "ablation.md", table)
    print(table)
    print(f"wrote {run_dir / 'ablation.md'} and {run_dir / 'ablation.json'} (per-run folders beside them)")
    print("next: python -m domains.news.train   (the full model) or python -m domains.news.detect --help")
    return result


if __name__ == "__main__":
    main()
