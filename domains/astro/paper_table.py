"""The AstroM3 paper's results table (the work of ``python -m domains.astro.table``): test accuracy over split
seeds for each modality x {without, with CLIP} x {full, sub50, sub25, sub10}, and the paper's three claims.

For every split seed it pretrains one CLIP model on that seed's full train split (labels unused), then
fine-tunes every mode on every label budget from scratch and from that CLIP model (same seed, so no test
object was seen in pretraining), with AstroM3's per-mode, per-budget recipe
(:mod:`domains.astro.finetune_recipes`). The ingest must cap only the training split per budget
(``--budget_scope train``, the default), so every column is scored on the same full test split; the table
refuses an ingest whose test split differs between budgets. Cells are the mean with its 95% interval over
seeds; each mode also gets the paired CLIP-minus-no-CLIP difference; two leak baselines (a linear model on the
metadata, and the star's field alone, :mod:`domains.astro.leak_baselines`) sit beside the models. Each claim
is judged on paired differences over seeds (:mod:`shared.seed_statistics`): "supported", "contradicted" or
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
from domains.astro.finetune_recipes import RECIPES
from domains.astro.ingest_pipeline import resolve_ingest_dir
from domains.astro.leak_baselines import BASELINES, baseline_accuracies
from domains.astro.model import FINETUNE_MODES, AstroModelConfig, demo_model_config
from domains.astro.training_budget import with_epoch_budget
from shared.atomic_files import write_json_atomically, write_text_atomically
from shared.cli import config_to_dict
from shared.run_folder import RunFolder
from shared.seed_statistics import (
    CANNOT_TELL,
    CONTRADICTED,
    SUPPORTED,
    SeedSummary,
    markdown_table,
    paired_difference,
    summarize,
    verdict,
)
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
    # The paper's shape (50 epochs, 10 of warm-up, early stopping) shortened for 2 CPU cores.
    return with_epoch_budget(demo_finetune_trainer(), max_epochs=10, warmup_epochs=2)


@dataclass
class TableConfig:
    """Settings of the modality x CLIP x label-budget table (defaults: the CPU demo)."""

    run_name: str = "table-demo"
    """Output folder name under runs/astro/."""
    runs_root: str = "runs"
    """Root of the run folders."""
    input: str | None = None
    """Ingest folder (python -m domains.astro.ingest); empty: the built-in demo set."""
    demo_stars: int = 8000
    """Stars in the built-in demo set (only without --input). Sized from the spread measured on 2,000 stars
    (200 test stars per seed; photometry CLIP gain ±3.9 points at 95% over 5 seeds): about 4x the test stars
    for ±2 points. table_demo.yaml uses 8,000 (24 minutes on 2 loaded cores)."""
    seeds: list[int] = field(default_factory=lambda: [42, 66, 0, 12, 123])
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
    """Trainer settings of the fine-tuning runs: the budget and warm-up (demo: 10 epochs, 2 of warm-up; paper: 50
    and 10); with finetune_recipe official, the optimizer settings come from the recipe."""
    finetune_recipe: str = "official"
    """official: AstroM3's per-mode, per-budget recipe (domains/astro/finetune_recipes.py); none: the
    finetune_trainer settings as given, for every mode and budget."""
    baselines: bool = True
    """Add the leak baselines (metadata logistic regression, field only, most common class) to the table."""
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


def _gain_by_seed(cells: dict[str, dict[str, Any]], mode: str, subset: str) -> dict[int, float | None]:
    """Per seed, CLIP minus no-CLIP test accuracy of ``mode`` on ``subset``."""
    clip, scratch = _by_seed(cells[f"{mode}|clip|{subset}"]), _by_seed(cells[f"{mode}|scratch|{subset}"])
    return {
        seed: None if clip[seed] is None or scratch[seed] is None else clip[seed] - scratch[seed]
        for seed in sorted(set(clip) & set(scratch))
    }


def _overall(verdicts: list[str]) -> str:
    """One verdict from several: supported only if all are, contradicted if any is, else cannot tell."""
    if verdicts and all(v == SUPPORTED for v in verdicts):
        return SUPPORTED
    if any(v == CONTRADICTED for v in verdicts):
        return CONTRADICTED
    return CANNOT_TELL


def check_claims(cells: dict[str, dict[str, Any]], modes: list[str], subsets: list[str]) -> dict[str, Any]:
    """The paper's three claims on this table, each judged on paired differences over seeds.

    1. *CLIP helps photometry*: photometry with CLIP minus without, on the largest budget of the table
       (the paper: 84.6% -> 91.5% on full data).
    2. *More with fewer labels*: the photometry CLIP gain on the smallest budget minus the gain on the
       largest, paired by seed (a difference of differences).
    3. *Fusion beats the best single modality*: mode ``all`` minus the single mode with the best mean, for
       each budget and initialisation; the claim's verdict is "supported" only if every comparison
       supports it, "contradicted" if any contradicts it.

    Also returns every mode's CLIP gain per budget with its interval and verdict.
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
    claims: dict[str, dict[str, Any]] = {}
    if "photo" in modes:
        largest, smallest = subsets[0], subsets[-1]
        photo_gain = differences["photo"][largest]
        claims["clip_helps_photometry"] = {
            "statement": f"CLIP pretraining raises photometry accuracy ({largest})",
            "interval": photo_gain.as_dict(),
            "verdict": verdict(photo_gain),
        }
        if smallest != largest:
            more = paired_difference(_gain_by_seed(cells, "photo", smallest), _gain_by_seed(cells, "photo", largest))
            claims["more_with_fewer_labels"] = {
                "statement": f"the photometry CLIP gain is larger on {smallest} than on {largest}",
                "interval": more.as_dict(),
                "verdict": verdict(more),
            }
    if fusion:
        claims["fusion_beats_best_single"] = {
            "statement": "all three modalities fused beat the best single modality (every budget, both inits)",
            "verdict": _overall([value["verdict"] for value in fusion.values()]),
        }
    return {
        "claims": claims,
        "clip_gain": gains,
        "clip_gain_interval": {m: {s: d.as_dict() for s, d in by.items()} for m, by in differences.items()},
        "clip_gain_verdict": {m: {s: verdict(d) for s, d in by.items()} for m, by in differences.items()},
        "fusion_vs_best_single": fusion,
    }


def _points(interval: dict[str, Any], judged: str | None = None) -> str:
    """A paired difference in percentage points: ``+5.0 [+1.0, +9.0] supported``."""
    mean, low, high = interval["mean"], interval["ci_low"], interval["ci_high"]
    if mean is None or not math.isfinite(mean):
        return "undefined"
    if low is None or high is None:
        return f"{100 * mean:+.1f} (1 seed)"
    return f"{100 * mean:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]" + (f" {judged}" if judged else "")


def table_markdown(
    cells: dict[str, dict[str, Any]],
    config: TableConfig,
    claims: dict[str, Any],
    baselines: dict[str, dict[str, Any]] | None = None,
) -> str:
    """The table as markdown (rows: mode x init, the paired CLIP gain, baselines; columns: label budgets)
    followed by the claims and their verdicts."""
    rows = []
    for mode in config.modes:
        for init in ("scratch", "clip"):
            rows.append(
                [MODE_TITLES.get(mode, mode), "yes" if init == "clip" else "no"]
                + [format_cell(cells.get(f"{mode}|{init}|{subset}")) for subset in config.subsets]
            )
        intervals = claims["clip_gain_interval"].get(mode, {})
        rows.append(
            [MODE_TITLES.get(mode, mode), "CLIP − no CLIP (pp)"]
            + [_points(intervals[s]) if s in intervals else "–" for s in config.subsets]
        )
    for key, cell_by_subset in (baselines or {}).items():
        rows.append([f"Baseline: {BASELINES[key]}", "–"] + [format_cell(cell_by_subset.get(s)) for s in config.subsets])
    lines = [
        f"Test accuracy (%): mean [95% interval] over split seeds {config.seeds}; every budget is scored on the "
        "same full test split of its seed. CLIP − no CLIP rows: paired difference in percentage points.",
        "",
        markdown_table(["Mode", "CLIP init", *config.subsets], rows).rstrip("\n"),
        "",
        "Claims (95% interval of the paired difference over seeds):",
        "",
    ]
    for claim in claims["claims"].values():
        interval = f": {_points(claim['interval'])}" if "interval" in claim else ""
        lines.append(f"- {claim['statement']}{interval} -> **{claim['verdict']}**")
    lines += ["", "CLIP gain per mode and budget (percentage points, with minus without, paired by seed):", ""]
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


def check_same_test_split(ingest_dir: Path, subsets: list[str], seeds: list[int]) -> None:
    """Refuse an ingest whose test split differs between label budgets (budgets must cap training only).

    Raises:
        UserError: naming the seed and budget whose test split is not the first budget's.
    """
    for seed in seeds:
        reference = None
        for subset in subsets:
            path = ingest_dir / "splits" / subset / str(seed) / "test.csv"
            ids = sorted(path.read_text(encoding="utf-8").splitlines()[1:])
            if reference is None:
                reference = (subset, ids)
            elif ids != reference[1]:
                raise UserError(
                    f"--input {ingest_dir}: the test split of {subset} (seed {seed}) differs from that of "
                    f"{reference[0]}, so the columns would be scored on different objects; re-ingest with "
                    "--budget_scope train"
                )


def baseline_cells(ingest_dir: Path, subsets: list[str], seeds: list[int]) -> dict[str, dict[str, Any]]:
    """``{baseline: {subset: cell}}`` of the leak baselines (cells as the models' cells)."""
    per_seed = {(subset, seed): baseline_accuracies(ingest_dir, subset, seed) for subset in subsets for seed in seeds}
    cells: dict[str, dict[str, Any]] = {}
    for key in BASELINES:
        for subset in subsets:
            values = [per_seed[(subset, seed)][key] for seed in seeds]
            cells.setdefault(key, {})[subset] = {**summarize(values).as_dict(), "values": values, "seeds": list(seeds)}
    return cells


def _check_config(config: TableConfig) -> None:
    unknown_modes = [m for m in config.modes if m not in FINETUNE_MODES]
    if unknown_modes or not config.modes:
        raise UserError(f"--modes: choose from {list(FINETUNE_MODES)}, got {config.modes}")
    unknown_subsets = [s for s in config.subsets if s not in SUBSETS]
    if unknown_subsets or not config.subsets:
        raise UserError(f"--subsets: choose from {list(SUBSETS)}, got {config.subsets}")
    if not config.seeds:
        raise UserError("--seeds: give at least one split seed")
    if config.finetune_recipe not in RECIPES:
        raise UserError(f"--finetune_recipe: choose from {list(RECIPES)}, got {config.finetune_recipe!r}")
    check_trainer_config(config.pretrain_trainer, "--pretrain_trainer.")
    check_trainer_config(config.finetune_trainer, "--finetune_trainer.")


def run_table(config: TableConfig) -> dict[str, Any]:
    """Run every pretraining and fine-tuning of the table; returns the ``table.json`` payload."""
    _check_config(config)
    started = time.perf_counter()
    ingest_dir = resolve_ingest_dir(config.input, config.runs_root, config.demo_stars)
    require_splits(ingest_dir, sorted({"full", *config.subsets}), config.seeds)
    check_same_test_split(ingest_dir, list(config.subsets), list(config.seeds))
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
                    recipe=config.finetune_recipe,
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
    baselines = baseline_cells(ingest_dir, list(config.subsets), list(config.seeds)) if config.baselines else {}
    payload = {
        "seeds": config.seeds,
        "subsets": config.subsets,
        "modes": config.modes,
        "ingest_dir": str(ingest_dir),
        "cells": cells,
        "claims": claims,
        "baselines": baselines,
        "wall_time_s": time.perf_counter() - started,
    }
    write_json_atomically(table_dir / "table.json", payload)
    write_text_atomically(table_dir / "table.md", table_markdown(cells, config, claims, baselines))
    folder.mark_finished(
        command=TABLE_COMMAND,
        outputs=["config.yaml", "table.json", "table.md"],
        summary={"cells": len(cells), "seeds": len(config.seeds)},
    )
    payload["table_dir"] = str(table_dir)
    return payload
