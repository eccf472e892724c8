"""The estimators on a real biased log: one trainer fit per (estimator, η, M, seed), ranking metrics on MAR data.

Each fit trains in ``fits/<fit>/`` of the run folder through the core trainer (ExpoMF, fitted by EM, writes
only its weights there). Each model is evaluated by DCG/Recall/MAP@K on the missing-at-random test set (all
items and rare items) and by IPS/SNIPS estimates on a held-out part of the biased log.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from domains.recsys.mnar.config import INPUT_HELP, MnarConfig, MnarConfigError, clip_values, estimator_names
from domains.recsys.mnar.data import (
    MnarDataError,
    MnarDataset,
    read_click_log,
    read_coat,
    read_recbole_ratings,
    read_yahoo_r3,
    split_validation_clicks,
    training_feedback,
)
from domains.recsys.mnar.expomf import fit_expomf
from domains.recsys.mnar.feedback import item_popularity_propensity
from domains.recsys.mnar.losses import EstimatorSpec
from domains.recsys.mnar.metrics import mar_ranking_metrics, propensity_weighted_ranking_metrics, rare_item_mask
from domains.recsys.mnar.models import PointwiseMF
from domains.recsys.mnar.report import (
    ExperimentReport,
    copy_fit_metrics,
    estimator_label,
    finite_or_none,
    fit_folder_name,
    summaries_by_label,
)
from domains.recsys.mnar.sampling import PairSampler, steps_per_epoch
from domains.recsys.mnar.training import fit_pointwise, fit_ubpr
from shared.checkpoints import CheckpointManager, save_weights_atomically
from shared.device import pick_device
from shared.run_folder import CHECKPOINTS_DIR, METRICS_FILE, MetricsLog, RunFolder
from shared.seed_statistics import markdown_table
from shared.trainer import TrainerConfig

FITS_DIR = "fits"
"""Folder of the per-fit trainer folders inside the run folder."""
PROPENSITY_ESTIMATORS = ("relmf", "relmf_clipped", "ubpr")
"""Estimators that use exposure propensities (the others train with θ = 1)."""


def read_real_dataset(config: MnarConfig) -> MnarDataset:
    """Read the dataset named by ``--dataset`` from ``--input`` (and ``--test_input``).

    Raises:
        MnarConfigError: the inputs do not fit the dataset's layout.
        MnarDataError: a file is missing or malformed.
    """
    if config.input is None:
        raise MnarConfigError(f"--input: --dataset {config.dataset} needs its data: {INPUT_HELP[config.dataset]}")
    path = Path(config.input)
    if config.dataset != "click_log" and config.dataset != "yahoo_r3" and config.test_input is not None:
        raise MnarConfigError(f"--test_input: not used by --dataset {config.dataset} (its test set is in --input)")
    if config.dataset == "yahoo_r3":
        if path.is_dir():
            test = Path(config.test_input) if config.test_input else path / "test.txt"
            return read_yahoo_r3(path / "train.txt", test, config.rating_threshold)
        if config.test_input is None:
            raise MnarConfigError("--test_input: yahoo_r3 with --input train.txt needs test.txt (or give the folder)")
        return read_yahoo_r3(path, config.test_input, config.rating_threshold)
    if config.dataset == "coat":
        return read_coat(path, config.rating_threshold)
    if config.dataset == "click_log":
        return read_click_log(path, config.test_input)
    return read_recbole_ratings(path, config.rating_threshold)


@dataclass
class RealData:
    """A real log split for training, with what the run derives from it before it starts.

    Attributes:
        dataset: the data as read.
        train_clicks: clicks the models train on.
        validation_clicks: held-out clicks for the IPS/SNIPS estimates.
        item_counts: training clicks per item.
        rare_item_max_positives: the rare-item threshold (given, or derived from the data).
        steps_per_epoch: trainer steps in one epoch (``ceil(training clicks / batch size)``).
    """

    dataset: MnarDataset
    train_clicks: pd.DataFrame
    validation_clicks: pd.DataFrame
    item_counts: np.ndarray
    rare_item_max_positives: int
    steps_per_epoch: int


def prepare_real_data(config: MnarConfig) -> RealData:
    """Read and split the log, and check it can give the requested run everything it needs.

    Raises:
        MnarDataError: no training clicks; logged propensities requested but missing; a test set where no
            user has a relevant item under standard conventions.
        MnarConfigError: nothing to evaluate (no test set and no held-out clicks).
    """
    dataset = read_real_dataset(config)
    source = dataset.sources[0] if dataset.sources else dataset.name
    train_clicks, validation_clicks = split_validation_clicks(dataset, config.real.validation_fraction)
    if train_clicks.empty:
        threshold = f"no rating reaches --rating_threshold {config.rating_threshold}"
        why = "every row has click 0" if dataset.name == "click_log" else threshold
        raise MnarDataError(f"{source}: no training clicks ({why})")
    if config.propensity == "logged" and not dataset.has_logged_propensity():
        missing = int(dataset.clicks()["propensity"].isna().sum()) if "propensity" in dataset.train else "all"
        raise MnarDataError(f"{source}: --propensity logged, but {missing} clicks have no logged propensity")
    if dataset.test is None and validation_clicks.empty:
        raise MnarConfigError(
            f"--real.validation_fraction: {source} has no missing-at-random test set and "
            f"{config.real.validation_fraction:g} of its clicks leaves none held out: nothing to evaluate"
        )
    if dataset.test is not None and config.conventions == "standard" and not dataset.test["label"].any():
        raise MnarDataError(
            f"{dataset.sources[-1]}: no relevant test item; standard ranking metrics are undefined "
            "(use --conventions paper or a lower --rating_threshold)"
        )
    counts = np.bincount(train_clicks["item"].to_numpy(), minlength=dataset.n_items)
    rare = config.rare_item_max_positives
    if rare is None:
        rare = 500 if dataset.name == "yahoo_r3" else int(np.median(counts))
    return RealData(
        dataset,
        train_clicks,
        validation_clicks,
        counts,
        rare,
        steps_per_epoch(len(train_clicks), config.real.batch_size),
    )


def has_checkpoints(folder: RunFolder) -> bool:
    """Whether any fit of the run folder has a checkpoint to resume from."""
    return any((folder.path / FITS_DIR).glob(f"*/{CHECKPOINTS_DIR}/latest.json"))


def _fit_trainer(trainer: TrainerConfig, fit_dir: Path) -> TrainerConfig:
    """A fit's trainer settings: with ``resume: latest``, a fit that never wrote a checkpoint starts afresh."""
    if trainer.resume == "latest" and CheckpointManager(fit_dir / CHECKPOINTS_DIR).latest() is not None:
        return trainer
    (fit_dir / METRICS_FILE).unlink(missing_ok=True)  # a fresh fit starts a fresh log
    return dataclasses.replace(trainer, resume=None)


def _train(
    config: MnarConfig, name: str, spec: EstimatorSpec, feedback: Any, seed: int, fit_dir: Path
) -> tuple[PointwiseMF, int]:
    """Fit one model; returns it (on the CPU) and its number of optimizer steps (EM iterations for ExpoMF)."""
    section = config.real
    if name == "expomf":
        model = fit_expomf(
            feedback,
            dim=section.expomf_dim,
            iterations=section.expomf_iterations,
            lam=section.expomf_lam,
            seed=seed,
            device=pick_device(config.trainer.device),
        ).as_model()
        save_weights_atomically(model, fit_dir / "model.safetensors")
        return model, section.expomf_iterations
    trainer = _fit_trainer(config.trainer, fit_dir)
    if name == "ubpr":
        fit = fit_ubpr(
            feedback, spec, dim=section.dim, batch_size=section.batch_size, trainer=trainer, run_dir=fit_dir, seed=seed
        )
    else:
        sampler = PairSampler(feedback, positive_fraction=section.positive_fraction, seed=seed)
        fit = fit_pointwise(
            sampler, spec, dim=section.dim, batch_size=section.batch_size, trainer=trainer, run_dir=fit_dir, seed=seed
        )
    return fit.model, fit.steps


def _evaluate(config: MnarConfig, data: RealData, scores: np.ndarray, validation_theta: np.ndarray) -> dict[str, float]:
    """MAR (all and rare items) and IPS/SNIPS metrics of one model's score matrix."""
    out: dict[str, float] = {}
    test = data.dataset.test
    if test is not None:
        users, items, labels = (test[column].to_numpy() for column in ("user", "item", "label"))
        test_scores = scores[users, items]
        metrics = mar_ranking_metrics(users, labels, test_scores, config.ks, config.conventions)
        out.update({f"mar_{key}": value for key, value in metrics.items()})
        rare = rare_item_mask(items, data.item_counts, data.rare_item_max_positives)
        if rare.any() and labels[rare].any():
            rare_metrics = mar_ranking_metrics(
                users[rare], labels[rare], test_scores[rare], config.ks, config.conventions
            )
            out.update({f"rare_{key}": value for key, value in rare_metrics.items()})
    held_out = data.validation_clicks
    if len(held_out):
        for estimator in ("ips", "snips"):
            estimate = propensity_weighted_ranking_metrics(
                scores,
                held_out["user"].to_numpy(),
                held_out["item"].to_numpy(),
                validation_theta,
                config.ks,
                estimator,
                excluded_users=data.train_clicks["user"].to_numpy(),
                excluded_items=data.train_clicks["item"].to_numpy(),
            )
            out.update({f"{estimator}_{key}": value for key, value in estimate.items()})
    return out


def run_real_data_experiment(
    config: MnarConfig, data: RealData, folder: RunFolder, log: MetricsLog
) -> ExperimentReport:
    """Train and evaluate every (estimator, η, M, seed) on the log; returns the report.

    Args:
        config: the resolved settings (trainer budgets already in steps).
        data: the prepared log (:func:`prepare_real_data`).
        folder: the run folder (fits go to ``fits/``).
        log: the run's ``metrics.csv`` (every fit's training rows and test values).
    """
    dataset, train_clicks, held_out = data.dataset, data.train_clicks, data.validation_clicks
    print(
        f"[mnar] {dataset.name}: {dataset.n_users} users x {dataset.n_items} items, {len(train_clicks)} training "
        f"clicks, {0 if dataset.test is None else len(dataset.test)} MAR test rows",
        flush=True,
    )
    # held-out clicks' propensities for IPS/SNIPS: logged if requested, else popularity (η of the first sweep)
    if config.propensity == "logged":
        validation_theta = held_out["propensity"].to_numpy(dtype=np.float64)
    else:
        popularity = item_popularity_propensity(train_clicks["item"].to_numpy(), dataset.n_items, config.eta[0])
        validation_theta = popularity[held_out["item"].to_numpy()]
    section = config.real
    rows: list[dict[str, Any]] = []
    kept: list[tuple[str, str, Any]] = []
    outputs: list[str] = []
    started = time.perf_counter()
    for name in estimator_names(config):
        uses_propensity = name in PROPENSITY_ESTIMATORS
        etas: list[float | None] = list(config.eta) if uses_propensity and config.propensity == "popularity" else [None]
        for eta in etas:
            source = config.propensity if uses_propensity else "none"
            feedback = training_feedback(dataset, train_clicks, source, eta if eta is not None else 0.5)
            for clip in clip_values(config) if name in ("relmf_clipped", "ubpr") else [0.0]:
                spec = EstimatorSpec(
                    name,
                    loss=section.loss,
                    clip_min=clip,
                    unlabeled_weight=section.wmf_unlabeled_weight,
                    normalization="weighted" if section.loss == "squared" else "mean",
                    nonnegative_beta=section.ubpr_nonnegative_beta,
                )
                label = estimator_label(name, clip, eta if config.propensity == "popularity" else None)
                for offset in range(config.seeds):
                    seed = config.trainer.seed + offset
                    fit_id = f"{label}/seed={seed}"
                    fit_dir = folder.path / FITS_DIR / fit_folder_name(fit_id)
                    fit_started = time.perf_counter()
                    model, steps = _train(config, name, spec, feedback, seed, fit_dir)
                    with torch.no_grad():
                        scores = model.eval().score_matrix().numpy()
                    metrics = _evaluate(config, data, scores, validation_theta)
                    if name != "expomf":
                        copy_fit_metrics(log, fit_dir, fit_id)
                    log.write(steps, 0, "test", {f"{fit_id}/{key}": value for key, value in metrics.items()})
                    rows.append(
                        {
                            "estimator": label,
                            "seed": seed,
                            "steps": steps,
                            "fit_seconds": time.perf_counter() - fit_started,
                        }
                        | metrics
                    )
                    outputs.append(str((fit_dir / "model.safetensors").relative_to(folder.path)))
                    if offset == 0:
                        kept.append((f"mnar-{dataset.name}-{label}", f"seed={seed}", model))
                    print(f"[mnar] {label} seed {seed}: {time.perf_counter() - fit_started:.1f}s", flush=True)
    return _report(config, data, rows, kept, outputs, time.perf_counter() - started)


def _report(
    config: MnarConfig,
    data: RealData,
    rows: list[dict[str, Any]],
    kept: list[tuple[str, str, Any]],
    outputs: list[str],
    elapsed: float,
) -> ExperimentReport:
    dataset = data.dataset
    columns = list(
        dict.fromkeys(
            column
            for row in rows
            for column in row
            if column.startswith(("mar_", "rare_", "ips_", "snips_")) and not column.endswith("users")
        )
    )
    summaries = summaries_by_label(rows, columns)
    table = {label: {c: finite_or_none(s.mean) for c, s in by_column.items()} for label, by_column in summaries.items()}
    statistics = {label: {c: s.as_dict() for c, s in by_column.items()} for label, by_column in summaries.items()}
    shown = [column for column in columns if column.endswith(f"@{max(config.ks)}")] or columns
    markdown = (
        f"# {dataset.name}: ranking metrics ({config.conventions} conventions), mean [95% interval] over "
        f"{config.seeds} seed(s)\n\n"
        f"mar_ = missing-at-random test set; rare_ = items with <= {data.rare_item_max_positives} training clicks; "
        "ips_/snips_ = estimates from the held-out biased clicks.\n\n"
        + markdown_table(
            ["estimator", *shown], [[label, *(summaries[label][c].format(4) for c in shown)] for label in summaries]
        )
    )
    headline_metric = shown[0] if shown else None
    summary = {
        "dataset": dataset.name,
        "sources": dataset.sources,
        "rare_item_max_positives": data.rare_item_max_positives,
        "table": table,
        "seed_statistics": statistics,
        "elapsed_s": elapsed,
    }
    headline = (
        {f"{label} {headline_metric}": table[label][headline_metric] for label in table} if headline_metric else {}
    )
    return ExperimentReport(
        markdown=markdown,
        summary=summary,
        rows=rows,
        headline=headline,
        models=kept,
        dataset_name=dataset.name,
        user_ids=dataset.user_ids,
        item_ids=dataset.item_ids,
        outputs=outputs,
    )
