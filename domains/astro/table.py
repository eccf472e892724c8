"""The AstroM3 results table in one command: test accuracy (mean ± std over split seeds) for each
modality x {without, with CLIP} x {full, sub50, sub25, sub10}.

    python -m domains.astro.table                     # CPU demo on the built-in data (about 10 minutes)
    python -m domains.astro.table --seeds [42,66,0,12,123] --config domains/astro/configs/paper.yaml

For every split seed it pretrains one CLIP model on that seed's full train split (labels unused), then
fine-tunes every mode on every label budget from scratch and from that CLIP model (same seed, so no test
object was seen in pretraining). Writes ``runs/astro/<run_name>/table.md`` and ``table.json`` (every
per-seed accuracy, the means and standard deviations, and the two claims checked: the CLIP gain per
modality and budget, and fused vs best single modality), plus the pretraining and fine-tuning runs under
``runs/astro/<run_name>/astro/``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from domains.astro.finetune import FinetuneConfig, demo_finetune_trainer, run_finetune
from domains.astro.model import FINETUNE_MODES, AstroModelConfig, demo_model_config
from domains.astro.pretrain import PretrainConfig, demo_pretrain_trainer, run_pretrain
from domains.astro.training_data import SUBSETS, resolve_ingest_dir
from shared.cli import config_to_dict, parse_config, run_dir_for, save_config, write_text_atomically
from shared.trainer import TrainerConfig

MODE_TITLES = {"photo": "Photometry", "spectra": "Spectra", "meta": "Metadata", "all": "All (fused)"}


@dataclass
class TableConfig:
    """Settings of the modality x CLIP x label-budget table (defaults: the CPU demo)."""

    run_name: str = "table-demo"
    """Output folder name under runs/astro/."""
    runs_root: str = "runs"
    """Root of the run folders."""
    data: str | None = None
    """Ingest folder; empty: the built-in demo set."""
    demo_stars: int = 2000
    """Stars in the built-in demo set (only without --data)."""
    seeds: list[int] = field(default_factory=lambda: [42, 66, 0])
    """Split seeds (paper: 42 66 0 12 123); one CLIP pretraining per seed."""
    subsets: list[str] = field(default_factory=lambda: list(SUBSETS))
    """Label budgets (columns of the table)."""
    modes: list[str] = field(default_factory=lambda: list(FINETUNE_MODES))
    """Classifier modes (rows of the table)."""
    model: AstroModelConfig = field(default_factory=demo_model_config)
    """Architecture of every model in the table."""
    pretrain_epochs: int = 8
    """CLIP pretraining epochs per seed."""
    pretrain_batch_size: int = 64
    """CLIP batch size."""
    pretrain_trainer: TrainerConfig = field(default_factory=demo_pretrain_trainer)
    """Trainer settings of the CLIP pretraining (step counts are derived from the epochs)."""
    finetune_epochs: int = 5
    """Maximum fine-tuning epochs per run (early stopping on validation accuracy)."""
    finetune_min_steps: int = 40
    """Fine-tuning steps at least, whatever the label budget."""
    finetune_batch_size: int = 32
    """Fine-tuning batch size."""
    finetune_trainer: TrainerConfig = field(default_factory=demo_finetune_trainer)
    """Trainer settings of the fine-tuning runs (step counts are derived from the epochs)."""
    reuse_finished: bool = True
    """Reuse runs already finished in the table folder with identical settings (resumes an interrupted table;
    lets several processes fill disjoint --modes of one table)."""


def finished_pretraining(run_dir: Path, config: PretrainConfig) -> bool:
    """Whether ``run_dir`` holds a finished pretraining with the settings of ``config``."""
    saved_path = run_dir / "config.yaml"
    if not (run_dir / "model.safetensors").is_file() or not (run_dir / "eval" / "metrics.json").is_file():
        return False
    saved = yaml.safe_load(saved_path.read_text(encoding="utf-8"))
    wanted = config_to_dict(config)
    keys = ("data", "subset", "seed", "batch_size", "epochs", "warmup_epochs", "model")
    trainer_keys = ("lr", "weight_decay", "betas", "schedule", "grad_clip_norm", "select_metric", "seed")
    return all(saved.get(k) == wanted[k] for k in keys) and all(
        saved["trainer"].get(k) == wanted["trainer"][k] for k in trainer_keys
    )


def finished_cell(run_dir: Path, config: FinetuneConfig) -> dict[str, Any] | None:
    """The accuracy summary of a finished fine-tuning run with exactly the settings of ``config``, if any."""
    summary_path, saved_path = run_dir / "eval" / "summary.json", run_dir / "config.yaml"
    if not summary_path.is_file() or not saved_path.is_file():
        return None
    if yaml.safe_load(saved_path.read_text(encoding="utf-8")) != config_to_dict(config):
        return None
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    return summary["accuracy"] if summary.get("seeds") == sorted(config.seeds) else None


def format_cell(summary: dict[str, Any] | None) -> str:
    """``"mean ± std"`` in percent, or an en dash when the cell was not run."""
    if summary is None:
        return "–"
    return f"{100 * summary['mean']:.1f} ± {100 * summary['std']:.1f}"


def check_claims(cells: dict[str, dict[str, Any]], modes: list[str], subsets: list[str]) -> dict[str, Any]:
    """The paper's two claims on this table: CLIP gain per mode and budget; fused vs best single modality."""
    gains = {
        mode: {
            subset: cells[f"{mode}|clip|{subset}"]["mean"] - cells[f"{mode}|scratch|{subset}"]["mean"]
            for subset in subsets
        }
        for mode in modes
    }
    fusion: dict[str, Any] = {}
    singles = [m for m in modes if m != "all"]
    if "all" in modes and singles:
        for init in ("scratch", "clip"):
            for subset in subsets:
                best = max(singles, key=lambda m: cells[f"{m}|{init}|{subset}"]["mean"])
                fused = cells[f"all|{init}|{subset}"]["mean"]
                best_value = cells[f"{best}|{init}|{subset}"]["mean"]
                fusion[f"{init}|{subset}"] = {
                    "fused": fused,
                    "best_single": best,
                    "best_single_accuracy": best_value,
                    "fused_minus_best": fused - best_value,
                }
    photo = gains.get("photo", {})
    return {
        "clip_gain": gains,
        "photometry_clip_helps_everywhere": bool(photo) and all(v > 0 for v in photo.values()),
        "photometry_gain_largest_with_fewest_labels": bool(photo) and max(photo, key=photo.get) == subsets[-1],
        "fusion_vs_best_single": fusion,
        "fusion_beats_best_single_everywhere": bool(fusion) and all(v["fused_minus_best"] > 0 for v in fusion.values()),
    }


def markdown_table(cells: dict[str, dict[str, Any]], config: TableConfig, claims: dict[str, Any]) -> str:
    """The table as markdown (rows: mode x init; columns: label budgets) followed by the claims."""
    header = "| Mode | CLIP init | " + " | ".join(config.subsets) + " |"
    lines = [
        f"Test accuracy (%) mean ± std over split seeds {config.seeds}.",
        "",
        header,
        "|" + "---|" * (2 + len(config.subsets)),
    ]
    for mode in config.modes:
        for init in ("scratch", "clip"):
            row = [format_cell(cells.get(f"{mode}|{init}|{subset}")) for subset in config.subsets]
            lines.append(
                f"| {MODE_TITLES.get(mode, mode)} | {'yes' if init == 'clip' else 'no'} | " + " | ".join(row) + " |"
            )
    lines += ["", "CLIP gain (percentage points, with minus without):", ""]
    for mode, gains in claims["clip_gain"].items():
        lines.append(f"- {MODE_TITLES.get(mode, mode)}: " + ", ".join(f"{s} {100 * g:+.1f}" for s, g in gains.items()))
    if claims["fusion_vs_best_single"]:
        lines += ["", "Fused minus best single modality (percentage points):", ""]
        for key, value in claims["fusion_vs_best_single"].items():
            init, subset = key.split("|")
            lines.append(
                f"- {subset}, {'CLIP' if init == 'clip' else 'no CLIP'}: {100 * value['fused_minus_best']:+.1f} "
                f"(best single: {value['best_single']})"
            )
    return "\n".join(lines) + "\n"


def run_table(config: TableConfig) -> dict[str, Any]:
    """Run every pretraining and fine-tuning of the table; returns the ``table.json`` payload."""
    unknown = [m for m in config.modes if m not in FINETUNE_MODES] + [s for s in config.subsets if s not in SUBSETS]
    if unknown:
        raise ValueError(f"unknown modes/subsets {unknown}; modes {FINETUNE_MODES}, subsets {SUBSETS}")
    started = time.perf_counter()
    ingest_dir = resolve_ingest_dir(config.data, config.runs_root, config.demo_stars)
    table_dir = run_dir_for("astro", config.run_name, root=config.runs_root)
    save_config(config, table_dir)
    for seed in config.seeds:
        pretrain_config = PretrainConfig(
            run_name=f"pretrain-seed{seed}",
            runs_root=str(table_dir),
            data=str(ingest_dir),
            seed=seed,
            batch_size=config.pretrain_batch_size,
            epochs=config.pretrain_epochs,
            warmup_epochs=min(1.0, config.pretrain_epochs / 4),
            model=config.model,
            trainer=replace(config.pretrain_trainer),
        )
        if config.reuse_finished and finished_pretraining(
            table_dir / "astro" / f"pretrain-seed{seed}", pretrain_config
        ):
            print(f"[table] CLIP pretraining, split seed {seed}: reusing the finished run", flush=True)
            continue
        print(f"[table] CLIP pretraining, split seed {seed}", flush=True)
        run_pretrain(pretrain_config)
    cells: dict[str, dict[str, Any]] = {}
    for mode in config.modes:
        for init in ("scratch", "clip"):
            for subset in config.subsets:
                finetune_config = FinetuneConfig(
                    run_name=f"{mode}-{init}-{subset}",
                    runs_root=str(table_dir),
                    data=str(ingest_dir),
                    mode=mode,
                    subset=subset,
                    seeds=list(config.seeds),
                    clip_run=str(table_dir / "astro" / "pretrain-seed{seed}") if init == "clip" else None,
                    batch_size=config.finetune_batch_size,
                    epochs=config.finetune_epochs,
                    min_steps=config.finetune_min_steps,
                    model=config.model,
                    trainer=replace(config.finetune_trainer),
                )
                cell_dir = table_dir / "astro" / finetune_config.run_name
                reused = finished_cell(cell_dir, finetune_config) if config.reuse_finished else None
                if reused is not None:
                    print(f"[table] fine-tuning {mode}, {init}, {subset}: reusing the finished run", flush=True)
                    cells[f"{mode}|{init}|{subset}"] = reused
                    continue
                print(f"[table] fine-tuning {mode}, {init}, {subset}, seeds {config.seeds}", flush=True)
                cells[f"{mode}|{init}|{subset}"] = run_finetune(finetune_config).summary["accuracy"]
    claims = check_claims(cells, config.modes, config.subsets)
    payload = {
        "seeds": config.seeds,
        "subsets": config.subsets,
        "modes": config.modes,
        "ingest_dir": str(ingest_dir),
        "cells": cells,
        "claims": claims,
        "wall_time_s": time.perf_counter() - started,
    }
    write_text_atomically(table_dir / "table.json", json.dumps(payload, indent=2))
    write_text_atomically(table_dir / "table.md", markdown_table(cells, config, claims))
    payload["table_dir"] = str(table_dir)
    return payload


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point (``python -m domains.astro.table --help``)."""
    config = parse_config(TableConfig, argv, prog="python -m domains.astro.table", description=__doc__)
    payload = run_table(config)
    table_dir = Path(payload["table_dir"])
    print((table_dir / "table.md").read_text(encoding="utf-8"))
    print(f"wrote {table_dir / 'table.md'} and {table_dir / 'table.json'} in {payload['wall_time_s'] / 60:.1f} min")
    print(f"next: python -m domains.astro.embed --clip_run {table_dir / 'astro' / f'pretrain-seed{config.seeds[0]}'}")
    return payload


if __name__ == "__main__":
    main()
