"""The AstroM3 paper's results table (the work of ``python -m domains.astro.table``): test accuracy over split
seeds for each modality x {without, with CLIP} x {full, sub50, sub25, sub10}, and the paper's two claims.

For every split seed it pretrains one CLIP model on that seed's full train split (labels unused), then
fine-tunes every mode on every label budget from scratch and from that CLIP model (same seed, so no test
object was seen in pretraining). Cells are the mean with its 95% interval over seeds, and each claim is
judged on paired differences over seeds (:mod:`shared.seed_statistics`): "supported", "contradicted" or
"cannot tell". Writes ``table.md`` and ``table.json`` into the table's run folder, plus the pretraining and
fine-tuning runs under ``<table run>/astro/``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from domains.astro.classifier_finetuning import (
    FINETUNE_COMMAND,
    FinetuneConfig,
    demo_finetune_trainer,
    run_finetune,
)
from domains.astro.clip_pretraining import PRETRAIN_COMMAND, PretrainConfig, demo_pretrain_trainer, run_pretrain
from domains.astro.datasets import SUBSETS, require_splits
from domains.astro.ingest_pipeline import resolve_ingest_dir
from domains.astro.model import FINETUNE_MODES, AstroModelConfig, demo_model_config
from domains.astro.training_budget import with_epoch_budget
from shared.atomic_files import write_json_atomically, write_text_atomically
from shared.cli import config_to_dict
from shared.run_folder import RunFolder
from shared.seed_statistics import SeedSummary, markdown_table, paired_difference, summarize, verdict
from shared.trainer import TrainerConfig, check_trainer_config
from shared.user_errors import UserError

TABLE_COMMAND = "domains.astro.table"
"""The command name in a table run's ``run.json`` marker."""

MODE_TITLES = {"photo": "Photometry", "spectra": "Spectra", "meta": "Metadata", "all": "All (fused)"}

_PRETRAIN_TRAINER_KEYS = (
    "lr",
    "weight_decay",
    "betas",
    "optimizer",
    "schedule",
    "grad_clip_norm",
    "select_metric",
    "select_mode",
    "stop_metric",
    "stop_mode",
    "seed",
    "max_epochs",
    "warmup_epochs",
)


def _table_pretrain_trainer() -> TrainerConfig:
    return dataclasses.replace(demo_pretrain_trainer(), max_epochs=8)


def _table_finetune_trainer() -> TrainerConfig:
    return with_epoch_budget(demo_finetune_trainer(), max_epochs=5)


@dataclass
class TableConfig:
    """Settings of the modality x CLIP x label-budget table (defaults: the CPU demo)."""

    run_name: str = "table-demo"
    """Output folder name under runs/astro/."""
    runs_root: str = "runs"
    """Root of the run folders."""
    input: str | None = None
    """Ingest folder (python -m domains.astro.ingest); empty: the built-in demo set."""
    demo_stars: int = 2000
    """Stars in the built-in demo set (only without --input)."""
    seeds: list[int] = field(default_factory=lambda: [42, 66, 0])
    """Split seeds (paper: 42 66 0 12 123); one CLIP pretraining per seed."""
    subsets: list[str] = field(default_factory=lambda: list(SUBSETS))
    """Label budgets (columns of the table)."""
    modes: list[str] = field(default_factory=lambda: list(FINETUNE_MODES))
    """Classifier modes (rows of the table)."""
    model: AstroModelConfig = field(default_factory=demo_model_config)
    """Architecture of every model in the table."""
    pretrain_batch_size: int = 64
    """CLIP batch size."""
    pretrain_trainer: TrainerConfig = field(default_factory=_table_pretrain_trainer)
    """Trainer settings of the CLIP pretraining per seed (demo: 8 epochs, 1 of warm-up)."""
    finetune_min_steps: int = 40
    """Fine-tuning steps at least, whatever the label budget (the --min_steps of each fine-tuning)."""
    finetune_batch_size: int = 32
    """Fine-tuning batch size."""
    finetune_trainer: TrainerConfig = field(default_factory=_table_finetune_trainer)
    """Trainer settings of the fine-tuning runs (demo: at most 5 epochs, early stopping on val accuracy)."""
    reuse_finished: bool = True
    """Reuse runs already finished in the table folder with identical settings (resumes an interrupted table;
    lets several processes fill disjoint --modes of one table)."""


def finished_pretraining(run_dir: Path, config: PretrainConfig) -> bool:
    """Whether ``run_dir`` holds a finished pretraining with the settings of ``config``."""
    folder = RunFolder(run_dir)
    if not folder.is_finished or folder.marker().get("command") != PRETRAIN_COMMAND:
        return False
    saved = folder.load_config()
    wanted = config_to_dict(config)
    keys = ("input", "subset", "seed", "batch_size", "model")
    trainer_keys = _PRETRAIN_TRAINER_KEYS + (("max_steps",) if config.trainer.max_epochs is None else ())
    return all(saved.get(k) == wanted[k] for k in keys) and all(
        saved["trainer"].get(k) == wanted["trainer"][k] for k in trainer_keys
    )


def _cell_of(summary: dict[str, Any]) -> dict[str, Any]:
    """A table cell: the accuracy summary over seeds with the seeds its values belong to."""
    return {**summary["accuracy"], "seeds": list(summary["seeds"])}


def finished_cell(run_dir: Path, config: FinetuneConfig) -> dict[str, Any] | None:
    """The accuracy cell of a finished fine-tuning run with exactly the settings of ``config``, if any."""
    folder = RunFolder(run_dir)
    summary_path = folder.path / "eval" / "summary.json"
    if not folder.is_finished or folder.marker().get("command") != FINETUNE_COMMAND or not summary_path.is_file():
        return None
    if folder.load_config() != config_to_dict(config):
        return None
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    return _cell_of(summary) if summary.get("seeds") == sorted(config.seeds) else None


def format_cell(cell: dict[str, Any] | None) -> str:
    """Mean test accuracy with its 95% interval over seeds, in percent; an en dash when the cell was not run."""
    if cell is None:
        return "–"
    return summarize([None if v is None else 100 * v for v in cell["values"]]).format(digits=1)


def _by_seed(cell: dict[str, Any]) -> dict[int, float | None]:
    seeds = cell.get("seeds") or list(range(len(cell["values"])))
    return dict(zip(seeds, cell["values"], strict=True))


def _difference(first: dict[str, Any], second: dict[str, Any]) -> SeedSummary:
    return paired_difference(_by_seed(first), _by_seed(second))


def check_claims(cells: dict[str, dict[str, Any]], modes: list[str], subsets: list[str]) -> dict[str, Any]:
    """The paper's two claims on this table: CLIP gain per mode and budget; fused vs best single modality.

    Gains are means of the paired per-seed differences (equal to the difference of the means when both
    cells ran the same seeds), each with its 95% interval and verdict.
    """
    differences = {
        mode: {
            subset: _difference(cells[f"{mode}|clip|{subset}"], cells[f"{mode}|scratch|{subset}"]) for subset in subsets
        }
        for mode in modes
    }
    gains = {mode: {subset: d.mean for subset, d in by_subset.items()} for mode, by_subset in differences.items()}
    fusion: dict[str, Any] = {}
    singles = [m for m in modes if m != "all"]
    if "all" in modes and singles:
        for init in ("scratch", "clip"):
            for subset in subsets:
                best = max(singles, key=lambda m: cells[f"{m}|{init}|{subset}"]["mean"])
                fused_cell, best_cell = cells[f"all|{init}|{subset}"], cells[f"{best}|{init}|{subset}"]
                difference = _difference(fused_cell, best_cell)
                fusion[f"{init}|{subset}"] = {
                    "fused": fused_cell["mean"],
                    "best_single": best,
                    "best_single_accuracy": best_cell["mean"],
                    "fused_minus_best": difference.mean,
                    "interval": difference.as_dict(),
                    "verdict": verdict(difference),
                }
    photo = gains.get("photo", {})
    return {
        "clip_gain": gains,
        "clip_gain_interval": {m: {s: d.as_dict() for s, d in by.items()} for m, by in differences.items()},
        "clip_gain_verdict": {m: {s: verdict(d) for s, d in by.items()} for m, by in differences.items()},
        "photometry_clip_helps_everywhere": bool(photo) and all(v > 0 for v in photo.values()),
        "photometry_gain_largest_with_fewest_labels": bool(photo) and max(photo, key=photo.get) == subsets[-1],
        "fusion_vs_best_single": fusion,
        "fusion_beats_best_single_everywhere": bool(fusion) and all(v["fused_minus_best"] > 0 for v in fusion.values()),
    }


def _points(interval: dict[str, Any], judged: str) -> str:
    """A paired difference in percentage points: ``+5.0 [+1.0, +9.0] supported``."""
    mean, low, high = interval["mean"], interval["ci_low"], interval["ci_high"]
    if mean is None or not math.isfinite(mean):
        return "undefined"
    if low is None or high is None:
        return f"{100 * mean:+.1f} (1 seed)"
    return f"{100 * mean:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}] {judged}"


def table_markdown(cells: dict[str, dict[str, Any]], config: TableConfig, claims: dict[str, Any]) -> str:
    """The table as markdown (rows: mode x init; columns: label budgets) followed by the claims."""
    rows = [
        [MODE_TITLES.get(mode, mode), "yes" if init == "clip" else "no"]
        + [format_cell(cells.get(f"{mode}|{init}|{subset}")) for subset in config.subsets]
        for mode in config.modes
        for init in ("scratch", "clip")
    ]
    lines = [
        f"Test accuracy (%): mean [95% interval] over split seeds {config.seeds}.",
        "",
        markdown_table(["Mode", "CLIP init", *config.subsets], rows).rstrip("\n"),
        "",
        "CLIP gain (percentage points, with minus without, paired by seed):",
        "",
    ]
    for mode in claims["clip_gain"]:
        intervals, verdicts = claims["clip_gain_interval"][mode], claims["clip_gain_verdict"][mode]
        lines.append(
            f"- {MODE_TITLES.get(mode, mode)}: "
            + ", ".join(f"{s} {_points(intervals[s], verdicts[s])}" for s in intervals)
        )
    if claims["fusion_vs_best_single"]:
        lines += ["", "Fused minus best single modality (percentage points, paired by seed):", ""]
        for key, value in claims["fusion_vs_best_single"].items():
            init, subset = key.split("|")
            lines.append(
                f"- {subset}, {'CLIP' if init == 'clip' else 'no CLIP'}: "
                f"{_points(value['interval'], value['verdict'])} (best single: {value['best_single']})"
            )
    return "\n".join(lines) + "\n"


def _check_config(config: TableConfig) -> None:
    unknown_modes = [m for m in config.modes if m not in FINETUNE_MODES]
    if unknown_modes or not config.modes:
        raise UserError(f"--modes: choose from {list(FINETUNE_MODES)}, got {config.modes}")
    unknown_subsets = [s for s in config.subsets if s not in SUBSETS]
    if unknown_subsets or not config.subsets:
        raise UserError(f"--subsets: choose from {list(SUBSETS)}, got {config.subsets}")
    if not config.seeds:
        raise UserError("--seeds: give at least one split seed")
    check_trainer_config(config.pretrain_trainer, "--pretrain_trainer.")
    check_trainer_config(config.finetune_trainer, "--finetune_trainer.")


def run_table(config: TableConfig) -> dict[str, Any]:
    """Run every pretraining and fine-tuning of the table; returns the ``table.json`` payload."""
    _check_config(config)
    started = time.perf_counter()
    ingest_dir = resolve_ingest_dir(config.input, config.runs_root, config.demo_stars)
    require_splits(ingest_dir, sorted({"full", *config.subsets}), config.seeds)
    config = dataclasses.replace(config, input=str(ingest_dir))
    folder = RunFolder.create("astro", config.run_name, config.runs_root)
    folder.clear_finished()
    folder.save_config(config)
    table_dir = folder.path
    for seed in config.seeds:
        pretrain_config = PretrainConfig(
            run_name=f"pretrain-seed{seed}",
            runs_root=str(table_dir),
            input=str(ingest_dir),
            seed=seed,
            batch_size=config.pretrain_batch_size,
            model=config.model,
            trainer=dataclasses.replace(config.pretrain_trainer),
        )
        if config.reuse_finished and finished_pretraining(
            table_dir / "astro" / f"pretrain-seed{seed}", pretrain_config
        ):
            print(f"[table] CLIP pretraining, split seed {seed}: reusing the finished run", flush=True)
            continue
        print(f"[table] CLIP pretraining, split seed {seed}", flush=True)
        run_pretrain(pretrain_config, trainer_flags="--pretrain_trainer.")
    cells: dict[str, dict[str, Any]] = {}
    for mode in config.modes:
        for init in ("scratch", "clip"):
            for subset in config.subsets:
                finetune_config = FinetuneConfig(
                    run_name=f"{mode}-{init}-{subset}",
                    runs_root=str(table_dir),
                    input=str(ingest_dir),
                    mode=mode,
                    subset=subset,
                    seeds=list(config.seeds),
                    run=str(table_dir / "astro" / "pretrain-seed{seed}") if init == "clip" else None,
                    batch_size=config.finetune_batch_size,
                    min_steps=config.finetune_min_steps,
                    model=config.model,
                    trainer=dataclasses.replace(config.finetune_trainer),
                )
                cell_dir = table_dir / "astro" / finetune_config.run_name
                reused = finished_cell(cell_dir, finetune_config) if config.reuse_finished else None
                if reused is not None:
                    print(f"[table] fine-tuning {mode}, {init}, {subset}: reusing the finished run", flush=True)
                    cells[f"{mode}|{init}|{subset}"] = reused
                    continue
                print(f"[table] fine-tuning {mode}, {init}, {subset}, seeds {config.seeds}", flush=True)
                cells[f"{mode}|{init}|{subset}"] = _cell_of(
                    run_finetune(finetune_config, trainer_flags="--finetune_trainer.").summary
                )
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
    write_json_atomically(table_dir / "table.json", payload)
    write_text_atomically(table_dir / "table.md", table_markdown(cells, config, claims))
    folder.mark_finished(
        command=TABLE_COMMAND,
        outputs=["config.yaml", "table.json", "table.md"],
        summary={"cells": len(cells), "seeds": len(config.seeds)},
    )
    payload["table_dir"] = str(table_dir)
    return payload
