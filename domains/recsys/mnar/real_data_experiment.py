"""The estimators on a real biased log: one trainer fit per (estimator, η, M, seed), ranking metrics on MAR data.

Each fit trains in ``fits/<fit>/`` of the run folder through the core trainer (ExpoMF, fitted by EM, writes
only its weights there). Each model is evaluated by DCG/Recall/MAP@K on the missing-at-random test set (all
items and rare items) and by IPS/SNIPS estimates on a held-out part of the biased log.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from domains.recsys.mnar.alternating_least_squares import (
    LeastSquaresProblem,
    fit_alternating_least_squares,
    relmf_problem,
    wmf_problem,
)
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
from domains.recsys.mnar.feedback import ImplicitFeedback, item_popularity_propensity
from domains.recsys.mnar.losses import ALS_ESTIMATORS, EstimatorSpec
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
from shared.distributed import on_main_process
from shared.run_folder import CHECKPOINTS_DIR, METRICS_FILE, MetricsLog, RunFolder
from shared.seed_statistics import markdown_table, paired_difference, verdict
from shared.trainer import TrainerConfig

VALIDATION_SEED = 12345
"""Seed of the held-out validation clicks (the authors' ``random_state``); seed offset k adds k when resplitting."""
FITS_DIR = "fits"
"""Folder of the per-fit trainer folders inside the run folder."""
PROPENSITY_ESTIMATORS = ("relmf", "relmf_clipped", "ubpr", "relmf_als", "relmf_clipped_als")
"""Estimators that use exposure propensities (the others train with θ = 1)."""
CLIPPED_ESTIMATORS = ("relmf_clipped", "relmf_clipped_als", "ubpr")
"""Estimators with a clip M on θ."""


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
        return read_click_log(path, config.test_input, config.user_columns)
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
    choices = [
        config.clip_quantiles,
        config.real.select_dims,
        config.real.select_als_regularizations,
        config.real.select_weight_decays,
        config.real.select_expomf_lams,
    ]
    if validation_clicks.empty and any(values is not None and len(values) > 1 for values in choices):
        raise MnarConfigError(
            f"--real.validation_fraction: {config.real.validation_fraction:g} of {source}'s clicks leaves none "
            "held out to choose settings on (--clip_quantiles / --real.select_*)"
        )
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


@dataclass(frozen=True)
class Candidate:
    """One setting an estimator can be fitted with, chosen among others on validation.

    Attributes:
        dim: latent dimension.
        regularization: λ on the estimator's own scale (ALS: sum over pairs; gradient fits: the trainer's
            weight decay; ExpoMF: its ridge weight).
        clip: ``M`` of the clipped estimators (0: none).
    """

    dim: int
    regularization: float
    clip: float

    def describe(self) -> str:
        """``dim=32,l2=10,M=0.05`` (M only when clipped)."""
        text = f"dim={self.dim},l2={self.regularization:g}"
        return text + (f",M={self.clip:g}" if self.clip > 0 else "")


def clip_candidates(config: MnarConfig, propensity: np.ndarray) -> list[float]:
    """Clip values M to choose from: quantiles of θ among the training clicks (``--clip_quantiles``)."""
    quantiles = np.quantile(np.asarray(propensity, dtype=np.float64), config.clip_quantiles or [])
    return sorted({float(f"{value:.4g}") for value in quantiles if value > 0})


def candidates_for(config: MnarConfig, name: str, clips: list[float]) -> list[Candidate]:
    """Every (dim, λ, M) the estimator ``name`` is fitted with before the validation choice."""
    section = config.real
    if name == "expomf":
        dims = section.select_dims or [section.expomf_dim]
        regularizations = section.select_expomf_lams or [section.expomf_lam]
    elif name in ALS_ESTIMATORS:
        dims = section.select_dims or [section.dim]
        regularizations = section.select_als_regularizations or [section.als_regularization]
    else:
        dims = section.select_dims or [section.dim]
        regularizations = section.select_weight_decays or [config.trainer.weight_decay]
    return [Candidate(d, r, c) for d in dims for r in regularizations for c in clips]


def _als_problem(config: MnarConfig, name: str, feedback: ImplicitFeedback, clip: float) -> LeastSquaresProblem:
    if name.startswith("relmf"):
        return relmf_problem(feedback, clip_min=clip)
    if name == "wmf_als":
        return wmf_problem(feedback, click_weight=1.0, unlabeled_weight=config.real.wmf_unlabeled_weight)
    return wmf_problem(feedback)


def _train(
    config: MnarConfig,
    name: str,
    spec: EstimatorSpec,
    feedback: Any,
    seed: int,
    fit_dir: Path,
    candidate: Candidate,
) -> tuple[PointwiseMF, int]:
    """Fit one model; returns it (on the CPU) and its steps (EM iterations for ExpoMF, sweeps for ALS)."""
    section = config.real
    if name == "expomf":
        model = fit_expomf(
            feedback,
            dim=candidate.dim,
            iterations=section.expomf_iterations,
            lam=candidate.regularization,
            seed=seed,
            device=pick_device(config.trainer.device),
            row_solver=section.expomf_row_solver,
        ).as_model()
        save_weights_atomically(model, fit_dir / "model.safetensors")
        return model, section.expomf_iterations
    if name in ALS_ESTIMATORS:
        factors = fit_alternating_least_squares(
            _als_problem(config, name, feedback, candidate.clip),
            dim=candidate.dim,
            regularization=candidate.regularization,
            iterations=section.als_iterations,
            seed=seed,
        )
        model = factors.as_model()
        save_weights_atomically(model, fit_dir / "model.safetensors")
        return model, section.als_iterations
    trainer = dataclasses.replace(_fit_trainer(config.trainer, fit_dir), weight_decay=candidate.regularization)
    if name == "ubpr":
        fit = fit_ubpr(
            feedback,
            spec,
            dim=candidate.dim,
            batch_size=section.batch_size,
            trainer=trainer,
            run_dir=fit_dir,
            seed=seed,
        )
    else:
        sampler = PairSampler(feedback, positive_fraction=section.positive_fraction, seed=seed)
        fit = fit_pointwise(
            sampler, spec, dim=candidate.dim, batch_size=section.batch_size, trainer=trainer, run_dir=fit_dir, seed=seed
        )
    return fit.model, fit.steps


def _snips_on_validation(
    config: MnarConfig, data: RealData, scores: np.ndarray, theta: np.ndarray, metric: str
) -> float:
    """The selection metric: a SNIPS estimate on the held-out biased clicks (training clicks excluded)."""
    held_out = data.validation_clicks
    estimate = propensity_weighted_ranking_metrics(
        scores,
        held_out["user"].to_numpy(),
        held_out["item"].to_numpy(),
        theta,
        (int(metric.split("@")[1]),),
        "snips",
        excluded_users=data.train_clicks["user"].to_numpy(),
        excluded_items=data.train_clicks["item"].to_numpy(),
    )
    return estimate[metric]


def _evaluate(
    config: MnarConfig,
    data: RealData,
    scores: np.ndarray,
    validation_theta: np.ndarray,
    split: tuple[pd.DataFrame, pd.DataFrame] | None = None,
) -> dict[str, float]:
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
    train_clicks, held_out = split or (data.train_clicks, data.validation_clicks)
    if len(held_out):
        for estimator in ("ips", "snips"):
            estimate = propensity_weighted_ranking_metrics(
                scores,
                held_out["user"].to_numpy(),
                held_out["item"].to_numpy(),
                validation_theta,
                config.ks,
                estimator,
                excluded_users=train_clicks["user"].to_numpy(),
                excluded_items=train_clicks["item"].to_numpy(),
            )
            out.update({f"{estimator}_{key}": value for key, value in estimate.items()})
    return out


def selection_metric(config: MnarConfig) -> str:
    """The SNIPS metric that chooses each estimator's setting (``DCG@max(ks)`` unless given)."""
    return config.selection_metric or f"DCG@{max(config.ks)}"


def _propensity_sources(config: MnarConfig, name: str) -> list[tuple[str, float | None]]:
    """``(θ source, η)`` pairs an estimator is trained with (θ = 1 for estimators without propensities)."""
    if name not in PROPENSITY_ESTIMATORS or config.propensity == "none":
        return [("none", None)]
    if config.propensity == "popularity":
        return [("popularity", eta) for eta in config.eta]
    also = [("popularity", eta) for eta in config.eta] if config.also_popularity_propensity else []
    return [("logged", None), *also]


FirstFit = tuple[PointwiseMF, int, float, Path]
"""A first-seed fit kept for reuse: model, steps, seconds, fit folder."""


def _choose_on_validation(
    config: MnarConfig,
    data: RealData,
    name: str,
    candidates: list[Candidate],
    spec_for: dict[Candidate, EstimatorSpec],
    feedback: ImplicitFeedback,
    seed: int,
    theta: np.ndarray,
    folder: RunFolder,
    family: str,
) -> tuple[Candidate, dict[Candidate, FirstFit], list[dict[str, Any]]]:
    """Fit every candidate with ``seed`` and keep the one with the best SNIPS metric on the held-out clicks.

    Returns:
        The chosen candidate (the first of equals), every candidate's fit (to reuse the chosen one's) and
        the validation scores; a single candidate is returned unfitted.
    """
    if len(candidates) == 1:
        return candidates[0], {}, []
    metric = selection_metric(config)
    first: dict[Candidate, FirstFit] = {}
    scored: list[dict[str, Any]] = []
    best, best_value = candidates[0], -np.inf
    for candidate in candidates:
        fit_dir = folder.path / FITS_DIR / fit_folder_name(f"{family}/{candidate.describe()}/seed={seed}")
        started = time.perf_counter()
        model, steps = _train(config, name, spec_for[candidate], feedback, seed, fit_dir, candidate)
        with torch.no_grad():
            scores = model.eval().score_matrix().numpy()
        # Scored once, on rank 0 under torchrun; every rank gets the value and makes the same choice.
        value = on_main_process(partial(_snips_on_validation, config, data, scores, theta, metric), "validation")
        first[candidate] = (model, steps, time.perf_counter() - started, fit_dir)
        scored.append({"setting": candidate.describe(), f"snips_{metric}": value})
        print(f"[mnar] select {family} {candidate.describe()}: snips {metric} {value:.4f}", flush=True)
        if value > best_value:
            best, best_value = candidate, value
    return best, first, scored


def run_real_data_experiment(
    config: MnarConfig, data: RealData, folder: RunFolder, log: MetricsLog
) -> ExperimentReport:
    """Choose each estimator's setting on validation, train it over the seeds and evaluate; returns the report.

    For every estimator (and θ source, and swept ``--clip`` value) with more than one candidate setting
    (``--real.select_*``, ``--clip_quantiles``), each candidate is fitted with the first seed and scored by a
    SNIPS estimate on the held-out biased clicks (θ of the same source as the estimator's training: logged, or
    popularity); the best one is then fitted with every seed (its first-seed fit is reused) and evaluated on
    the MAR test set and by IPS/SNIPS on the held-out clicks.

    Args:
        config: the resolved settings (trainer budgets already in steps).
        data: the prepared log (:func:`prepare_real_data`).
        folder: the run folder (fits go to ``fits/``).
        log: the run's ``metrics.csv`` (every fit's training rows and test values).
    """
    dataset = data.dataset
    print(
        f"[mnar] {dataset.name}: {dataset.n_users} users x {dataset.n_items} items, {len(data.train_clicks)} training "
        f"clicks, {0 if dataset.test is None else len(dataset.test)} MAR test rows",
        flush=True,
    )

    seeds = [config.trainer.seed + offset for offset in range(config.seeds)]
    splits = {seed: (data.train_clicks, data.validation_clicks) for seed in seeds}
    if config.real.resplit_per_seed:
        for offset, seed in enumerate(seeds[1:], start=1):
            splits[seed] = split_validation_clicks(dataset, config.real.validation_fraction, VALIDATION_SEED + offset)

    def held_out_theta(seed: int, source: str, eta: float | None) -> np.ndarray:
        train_clicks, held_out = splits[seed]
        if source == "logged":
            return held_out["propensity"].to_numpy(dtype=np.float64)
        popularity = item_popularity_propensity(train_clicks["item"].to_numpy(), dataset.n_items, eta or 0.5)
        return popularity[held_out["item"].to_numpy()]

    def evaluation_theta(seed: int) -> np.ndarray:
        """θ of every model's IPS/SNIPS columns: logged if requested, else popularity (η of the first sweep)."""
        return held_out_theta(seed, "logged" if config.propensity == "logged" else "popularity", config.eta[0])

    section = config.real
    rows: list[dict[str, Any]] = []
    kept: list[tuple[str, str, Any]] = []
    outputs: list[str] = []
    selection: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    for name in estimator_names(config):
        for source, eta in _propensity_sources(config, name):
            feedback_by_seed = {
                seed: training_feedback(dataset, splits[seed][0], source, eta if eta is not None else 0.5)
                for seed in dict.fromkeys(seeds if config.real.resplit_per_seed else seeds[:1])
            }
            feedback = feedback_by_seed[seeds[0]]
            selection_theta = evaluation_theta(seeds[0]) if source == "none" else held_out_theta(seeds[0], source, eta)
            clipped = name in CLIPPED_ESTIMATORS
            swept = [[clip] for clip in clip_values(config)] if clipped and config.clip_quantiles is None else None
            for clips in swept or [clip_candidates(config, feedback.propensity) if clipped else [0.0]]:
                candidates = candidates_for(config, name, clips)
                spec_for = {
                    c: EstimatorSpec(
                        name,
                        loss=section.loss,
                        clip_min=c.clip,
                        unlabeled_weight=section.wmf_unlabeled_weight,
                        normalization="weighted" if section.loss == "squared" else "mean",
                        nonnegative_beta=section.ubpr_nonnegative_beta,
                    )
                    for c in candidates
                }
                # the family's name before its M is chosen (fit folders, progress lines)
                base = estimator_label(name, 0.0, eta if source == "popularity" else None).replace("(M=0)", "")
                chosen, first, scored = _choose_on_validation(
                    config, data, name, candidates, spec_for, feedback, seeds[0], selection_theta, folder, base
                )
                label = estimator_label(name, chosen.clip, eta if source == "popularity" else None)
                if len(candidates) > 1:
                    selection[label] = {"chosen": chosen.describe(), "validation": scored}
                for seed in seeds:
                    fit_id = f"{label}/seed={seed}"
                    if seed == seeds[0] and chosen in first:
                        model, steps, seconds, fit_dir = first[chosen]
                    else:
                        named = f"{base}/{chosen.describe()}" if len(candidates) > 1 else label
                        fit_dir = folder.path / FITS_DIR / fit_folder_name(f"{named}/seed={seed}")
                        fit_started = time.perf_counter()
                        seed_feedback = feedback_by_seed.get(seed, feedback)
                        model, steps = _train(config, name, spec_for[chosen], seed_feedback, seed, fit_dir, chosen)
                        seconds = time.perf_counter() - fit_started
                    with torch.no_grad():
                        scores = model.eval().score_matrix().numpy()
                    metrics = on_main_process(
                        partial(_evaluate, config, data, scores, evaluation_theta(seed), splits[seed]), "the test"
                    )
                    if name != "expomf" and name not in ALS_ESTIMATORS:
                        copy_fit_metrics(log, fit_dir, fit_id)
                    log.write(steps, 0, "test", {f"{fit_id}/{key}": value for key, value in metrics.items()})
                    rows.append(
                        {
                            "estimator": label,
                            "seed": seed,
                            "steps": steps,
                            "dim": chosen.dim,
                            "regularization": chosen.regularization,
                            "fit_seconds": seconds,
                        }
                        | metrics
                    )
                    outputs.append(str((fit_dir / "model.safetensors").relative_to(folder.path)))
                    if seed == seeds[0]:
                        kept.append((f"mnar-{dataset.name}-{label}", f"seed={seed}", model))
                    print(f"[mnar] {label} seed {seed}: {seconds:.1f}s", flush=True)
    return _report(config, data, rows, kept, outputs, time.perf_counter() - started, selection)


def _labels_for(name: str, labels: list[str]) -> list[str]:
    """Labels of an ``--ordering``/``--claims`` entry: the label itself, else the estimator's labels with any clip M
    (``relmf_clipped_als`` → ``relmf_clipped_als(M=0.1)``, the logged-θ one when there is one;
    ``relmf_als[η=0.5]`` → the popularity-θ one)."""
    if name in labels:
        return [name]
    base = name.split("[")[0]
    popularity = name[len(base) :]
    same_estimator = [label for label in labels if label.split("(")[0].split("[")[0] == base]
    if popularity:
        return [label for label in same_estimator if label.endswith(popularity)]
    logged = [label for label in same_estimator if "[η" not in label]
    return logged or same_estimator  # a popularity-only run: its labels all carry η


def ordering_claims(config: MnarConfig, rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Paired differences (same seeds) and verdicts for each 'A beats B' of ``--ordering`` (adjacent, and first vs
    last) and of ``--claims``."""
    ordering = config.ordering or []
    labels = list(dict.fromkeys(row["estimator"] for row in rows))
    pairs = list(zip(ordering, ordering[1:]))
    if len(ordering) > 2:
        pairs.append((ordering[0], ordering[-1]))
    pairs += [tuple(part.strip() for part in claim.split(">")) for claim in config.claims or []]
    claims = []
    for better_name, worse_name in pairs:
        for better in _labels_for(better_name, labels):
            for worse in _labels_for(worse_name, labels):
                by_seed = {
                    label: {row["seed"]: row.get(metric) for row in rows if row["estimator"] == label}
                    for label in (better, worse)
                }
                difference = paired_difference(by_seed[better], by_seed[worse])
                claims.append(
                    {
                        "better": better,
                        "worse": worse,
                        "metric": metric,
                        **difference.as_dict(),
                        "verdict": verdict(difference, higher_is_better=True),
                        "difference_text": difference.format(4),
                    }
                )
    return claims


def _report(
    config: MnarConfig,
    data: RealData,
    rows: list[dict[str, Any]],
    kept: list[tuple[str, str, Any]],
    outputs: list[str],
    elapsed: float,
    selection: dict[str, dict[str, Any]] | None = None,
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
    if selection:
        markdown += (
            f"\n## Settings chosen on validation (SNIPS {selection_metric(config)} on the held-out biased clicks)\n\n"
            + markdown_table(
                ["estimator", "chosen", "candidates (validation SNIPS)"],
                [
                    [
                        label,
                        chosen["chosen"],
                        "; ".join(f"{r['setting']}: {list(r.values())[1]:.4f}" for r in chosen["validation"]),
                    ]
                    for label, chosen in selection.items()
                ],
            )
        )
    claims = ordering_claims(config, rows, headline_metric) if headline_metric else []
    if claims:
        markdown += (
            f"\n## Claims 'A beats B' on {headline_metric}: paired difference A − B over seeds\n\n"
            + markdown_table(
                ["claim", "difference [95% interval]", "verdict"],
                [[f"{c['better']} > {c['worse']}", c["difference_text"], c["verdict"]] for c in claims],
            )
        )
    summary = {
        "dataset": dataset.name,
        "sources": dataset.sources,
        "rare_item_max_positives": data.rare_item_max_positives,
        "table": table,
        "seed_statistics": statistics,
        "selection": selection or {},
        "claims": [{k: v for k, v in c.items() if k != "difference_text"} for c in claims],
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
