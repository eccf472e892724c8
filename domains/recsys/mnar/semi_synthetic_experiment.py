"""The semi-synthetic ML-100K experiment of Saito et al. (WSDM 2020): test log loss relative to the oracle.

For each exposure power p every estimator is trained over the seeds (:func:`run_power`), and its test log
loss is reported relative to the oracle of the same seed, with a 95% interval over seeds, plus each
estimator's paired difference against the naive model (same seed = same initialisation and batches).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from domains.recsys.mnar.config import MnarConfig, clip_values, estimator_names
from domains.recsys.mnar.data import read_movielens_100k_ratings
from domains.recsys.mnar.losses import EstimatorSpec
from domains.recsys.mnar.replicated_training import LearnerSettings, SemiSyntheticFit, run_power
from domains.recsys.mnar.report import ExperimentReport, copy_fit_metrics, estimator_label, prefixed
from domains.recsys.mnar.semi_synthetic import GeneratorSettings, build_semi_synthetic_world
from shared.device import pick_device
from shared.run_folder import MetricsLog, RunFolder
from shared.seed_statistics import markdown_table, paired_difference, summarize, verdict

GENERATOR_DIR = "generator"
"""Folder of the two generator fits inside the run folder (``ratings/`` and ``exposure/``)."""


def _log_fit(log: MetricsLog, fit: SemiSyntheticFit, fit_id: str, relative: float) -> None:
    for step, train_loss, validation_loss in fit.history:
        log.write(step, 0, "train", {f"{fit_id}/loss": train_loss})
        log.write(step, 0, "val", {f"{fit_id}/loss": validation_loss})
    test = {f"{fit_id}/test_log_loss": fit.test_log_loss}
    if math.isfinite(relative):
        test[f"{fit_id}/relative_to_oracle"] = relative
    log.write(fit.best_step, 0, "test", test)


def run_semi_synthetic_experiment(config: MnarConfig, folder: RunFolder, log: MetricsLog) -> ExperimentReport:
    """Fit the generator, train and test every estimator for every power and seed; returns the report.

    Args:
        config: the resolved settings (``dataset: semi_synthetic``).
        folder: the run folder (the generator fits go to ``generator/``).
        log: the run's ``metrics.csv`` (validation curves and test values of every fit).
    """
    section = config.semi_synthetic
    device = pick_device(section.device)
    specs = [
        EstimatorSpec(name, loss="log", clip_min=clip)
        for name in estimator_names(config)
        for clip in (clip_values(config) if name == "relmf_clipped" else [0.0])
    ]
    ratings = read_movielens_100k_ratings()
    started = time.perf_counter()
    print(f"[mnar] fitting the ML-100K generator ({ratings.n_users} users x {ratings.n_items} items)", flush=True)
    generator = GeneratorSettings(
        section.generator_dim,
        section.generator_iterations,
        section.generator_batch_size,
        section.generator_lr,
        section.epsilon,
        section.generator_seed,
    )
    world = build_semi_synthetic_world(ratings, generator, folder.path / GENERATOR_DIR)
    for part in ("ratings", "exposure"):
        copy_fit_metrics(log, folder.path / GENERATOR_DIR / part, f"{GENERATOR_DIR}/{part}")
    learner = LearnerSettings(
        section.dim,
        section.use_bias,
        section.optimizer,
        section.lr,
        section.l2,
        section.batch_size,
        section.iterations,
        section.validate_every,
        section.validation_fraction,
    )
    seeds = list(range(config.seeds))
    rows: list[dict[str, Any]] = []
    kept: list[tuple[str, str, Any]] = []
    for power in section.exposure_powers:
        theta, exposure, clicks = world.sample(power)
        rates = {
            "exposure_rate": float(exposure.mean()),
            "click_rate": float(clicks.mean()),
            "median_theta": float(np.median(theta)),
        }
        fits = run_power(world, power, specs, seeds, learner, keep_models_for_seed=seeds[0], device=device)
        oracle = {fit.seed: fit.test_log_loss for fit in fits if fit.estimator == "oracle"}
        for fit in fits:
            label = estimator_label(fit.estimator, fit.clip_min, None)
            relative = fit.test_log_loss / oracle[fit.seed] if fit.seed in oracle else math.nan
            _log_fit(log, fit, f"{label}/p={power:g}/seed={fit.seed}", relative)
            rows.append(
                {
                    "power": power,
                    "estimator": label,
                    "seed": fit.seed,
                    "test_log_loss": fit.test_log_loss,
                    "relative_to_oracle": relative,
                    "best_step": fit.best_step,
                    **rates,
                }
            )
            if fit.model is not None:
                kept.append((f"mnar-semi-{label}", f"p={power:g},seed={fit.seed}", fit.model))
        now = {
            row["estimator"]: row["relative_to_oracle"] for row in rows if row["power"] == power and row["seed"] == 0
        }
        print(
            f"[mnar] p={power:g} done ({time.perf_counter() - started:.0f}s): seed-0 relative log loss {now}",
            flush=True,
        )
    return _report(config, rows, kept, ratings, time.perf_counter() - started)


def _report(
    config: MnarConfig, rows: list[dict[str, Any]], kept: list[tuple[str, str, Any]], ratings: Any, elapsed: float
) -> ExperimentReport:
    powers = config.semi_synthetic.exposure_powers
    labels = list(dict.fromkeys(row["estimator"] for row in rows))

    def values(label: str, power: float, column: str) -> dict[int, float]:
        return {row["seed"]: row[column] for row in rows if row["estimator"] == label and row["power"] == power}

    table: dict[str, dict[str, dict[str, Any]]] = {}
    relative_cells: dict[str, list[str]] = {}
    for label in labels:
        table[label], relative_cells[label] = {}, []
        for power in powers:
            relative = summarize(values(label, power, "relative_to_oracle").values())
            loss = summarize(values(label, power, "test_log_loss").values())
            table[label][f"{power:g}"] = {**prefixed(relative, "relative_"), **prefixed(loss, "log_loss_")}
            relative_cells[label].append(relative.format(3))
    header = ["estimator"] + [f"p={power:g}" for power in powers]
    markdown = (
        "# Semi-synthetic ML-100K: test log loss relative to the oracle\n\n"
        f"Mean [95% interval] over {config.seeds} seeds; test pairs are all pairs with Y = 0, scored against "
        "the sampled R.\n\n" + markdown_table(header, [[label, *relative_cells[label]] for label in labels])
    )
    paired: dict[str, dict[str, dict[str, Any]]] = {}
    if "naive" in labels:
        paired_rows = []
        for label in (label for label in labels if label != "naive"):
            paired[label], cells = {}, []
            for power in powers:
                naive = values("naive", power, "test_log_loss")
                difference = paired_difference(values(label, power, "test_log_loss"), naive)
                judged = verdict(difference, higher_is_better=False)
                paired[label][f"{power:g}"] = {**difference.as_dict(), "verdict": judged}
                cells.append(f"{difference.format(4)}: {judged}")
            paired_rows.append([label, *cells])
        markdown += (
            "\n## Test log loss minus the naive model's, paired over seeds\n\n"
            "Negative = better than naive; 'supported' = the 95% interval lies below zero.\n\n"
            + markdown_table(header, paired_rows)
        )
    largest = f"{max(powers):g}"
    summary = {
        "dataset": "semi_synthetic_ml100k",
        "metric": "test log loss relative to the oracle (lower is better; oracle = 1)",
        "seeds": config.seeds,
        "table": table,
        "paired_vs_naive": paired,
        "elapsed_s": elapsed,
    }
    headline = {f"{label} relative log loss p={largest}": table[label][largest]["relative_mean"] for label in labels}
    return ExperimentReport(
        markdown=markdown,
        summary=summary,
        rows=rows,
        headline=headline,
        models=kept,
        dataset_name="ml100k-semi",
        user_ids=ratings.user_ids,
        item_ids=ratings.item_ids,
        outputs=[f"{GENERATOR_DIR}/{part}/model.safetensors" for part in ("ratings", "exposure")],
    )
