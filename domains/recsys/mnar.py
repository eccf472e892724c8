"""Unbiased learning from missing-not-at-random implicit feedback (Rel-MF and baselines): one command.

With no arguments it runs the semi-synthetic MovieLens-100K protocol of Saito et al. (WSDM 2020): for each
exposure power p it trains the oracle, naive and Rel-MF (plain and clipped) models over several seeds and
reports their test log loss relative to the oracle. With ``--dataset yahoo_r3|coat|click_log|recbole`` and
paths it trains the selected estimators on a real biased log and reports DCG/Recall/MAP@K on the
missing-at-random test set (all items and rare items), plus IPS/SNIPS estimates on a held-out part of the
biased log.

Writes ``runs/recsys/<run-name>/``: ``config.yaml``, ``metrics.csv`` (one row per trained model),
``results.md`` and ``results.json`` (the table), ``eval/metrics.json``; user and item embeddings of the
trained models go to the DuckDB embedding store.

    python -m domains.recsys.mnar
    python -m domains.recsys.mnar --config domains/recsys/configs/mnar_yahoo_r3.yaml --train_path ... --test_path ...
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

DATASETS = ("semi_synthetic", "yahoo_r3", "coat", "click_log", "recbole")


@dataclass
class SemiSyntheticSection:
    """The semi-synthetic ML-100K generator (used when dataset is semi_synthetic)."""

    exposure_powers: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0, 3.0, 4.0])
    """Exposure powers p in θ = σ(z)^p; larger p = stronger MNAR."""
    epsilon: float = 5.0
    """ε in γ = σ(clip(R̂, 1, 5) − ε); larger ε = rarer relevance."""
    generator_dim: int = 20
    """Latent dimension of the rating MF and the logistic exposure MF."""
    generator_iterations: int = 300
    """Adam steps of each generator fit."""
    generator_batch_size: int = 256
    """Pairs per generator step."""
    generator_lr: float = 0.01
    """Adam learning rate of the generator fits."""
    generator_seed: int = 12345
    """Seed of the generator fits and of sampling R and O."""
    dim: int = 10
    """Latent dimension of the compared models."""
    use_bias: bool = True
    """User/item/global biases in the compared models."""
    optimizer: Literal["sgd", "adam"] = "sgd"
    """Optimiser of the compared models."""
    lr: float = 0.1
    """Learning rate of the compared models."""
    l2: float = 1e-5
    """L2 weight λ of the compared models."""
    batch_size: int = 4096
    """Pairs per training step."""
    iterations: int = 1000
    """Training steps per model."""
    validate_every: int = 50
    """Steps between validation-loss checks (the model with the lowest validation loss is kept)."""
    validation_fraction: float = 0.1
    """Share of all user–item pairs held out for validation."""


@dataclass
class RealDataSection:
    """Training on a real biased log (used when dataset is not semi_synthetic)."""

    dim: int = 64
    """Latent dimension of the MF models (the paper used 200 for Rel-MF on a GPU)."""
    loss: Literal["log", "squared"] = "squared"
    """Local loss of pointwise estimators (the authors' real-data code uses squared)."""
    optimizer: Literal["sgd", "adam"] = "adam"
    """Optimiser."""
    lr: float = 0.005
    """Learning rate."""
    l2: float = 1e-4
    """L2 weight λ."""
    batch_size: int = 4096
    """Pairs per step."""
    iterations: int = 1000
    """Training steps per model."""
    positive_fraction: float = 0.5
    """Share of clicks in each pointwise batch (the rest: unclicked pairs), as in the authors' code."""
    wmf_unlabeled_weight: float = 0.977
    """Weight of unlabeled pairs in WMF (paper's tuned value)."""
    ubpr_nonnegative_beta: float | None = None
    """UBPR's non-negative clip β on the batch loss (null: off)."""
    expomf_dim: int = 30
    """Latent dimension of ExpoMF (its EM step is dense and cubic in the dimension)."""
    expomf_iterations: int = 10
    """EM iterations of ExpoMF."""
    expomf_lam: float = 1e-4
    """Ridge weight of ExpoMF's factors."""
    validation_fraction: float = 0.1
    """Share of training clicks held out as a biased log for the IPS/SNIPS estimates."""


@dataclass
class MnarConfig:
    """Unbiased recommender learning from MNAR implicit feedback: semi-synthetic ML-100K or a real log."""

    dataset: Literal["semi_synthetic", "yahoo_r3", "coat", "click_log", "recbole"] = "semi_synthetic"
    """Which data: the semi-synthetic ML-100K protocol, or a real dataset read from the paths below."""
    train_path: str | None = None
    """Yahoo! R3 train.txt, click-log training file (csv/tsv/parquet) or RecBole .inter file."""
    test_path: str | None = None
    """Yahoo! R3 test.txt or the randomized click-log test file (optional for click_log)."""
    data_dir: str | None = None
    """Coat folder (train.ascii, test.ascii, propensities.ascii) or a Yahoo! R3 folder with train.txt/test.txt."""
    rating_threshold: int = 4
    """Ratings at or above this are clicks / relevant."""
    estimators: list[str] | None = None
    """Estimators to train (oracle, naive, wmf, relmf, relmf_clipped, ubpr, expomf); null: dataset default."""
    propensity: Literal["popularity", "logged", "none"] = "popularity"
    """Real data: propensities from item popularity^η, from the log's propensity column, or none (θ = 1)."""
    eta: list[float] = field(default_factory=lambda: [0.5])
    """Popularity powers η to sweep (real data, propensity popularity)."""
    clip: list[float] | None = None
    """Clip values M for relmf_clipped (and UBPR) to sweep; null: 0.1 semi-synthetic, 0.00914 real data."""
    seeds: int = 5
    """Number of training seeds (0..seeds-1)."""
    ks: list[int] = field(default_factory=lambda: [1, 3, 5])
    """Cut-offs K of the ranking metrics."""
    conventions: Literal["paper", "standard"] = "paper"
    """Ranking-metric conventions: the Rel-MF code's (relevance 0.001 for negatives) or standard binary ones."""
    rare_item_max_positives: int | None = None
    """Items with at most this many training clicks are 'rare'; null: 500 for Yahoo! R3, else the median."""
    semi_synthetic: SemiSyntheticSection = field(default_factory=SemiSyntheticSection)
    """Semi-synthetic generator and model settings."""
    real: RealDataSection = field(default_factory=RealDataSection)
    """Real-data training settings."""
    run_name: str | None = None
    """Run folder name under runs/recsys/; null: mnar-<dataset>."""
    runs_root: str = "runs"
    """Root of the run folders."""
    store_path: str | None = "runs/embeddings.duckdb"
    """DuckDB embedding store for the user/item embeddings; null: do not write embeddings."""
    device: str = "auto"
    """Torch device: auto (CUDA when available), cpu or cuda."""
    cpu_threads: int = 1
    """Torch CPU threads; these models are tiny, and extra threads only add contention on small machines."""


DEFAULT_ESTIMATORS = {
    "semi_synthetic": ["oracle", "naive", "relmf", "relmf_clipped"],
    "real": ["naive", "wmf", "expomf", "relmf", "relmf_clipped", "ubpr"],
}
PAPER_CLIP = {"semi_synthetic": 0.1, "real": 0.00914}


def _estimator_label(name: str, clip: float, eta: float | None) -> str:
    label = name
    if name in ("relmf_clipped",) or (name == "ubpr" and clip > 0):
        label += f"(M={clip:g})"
    if eta is not None and name in ("relmf", "relmf_clipped", "ubpr"):
        label += f"[η={eta:g}]"
    return label


def _write_json(path: Path, payload: Any) -> None:
    from shared.cli import write_text_atomically

    write_text_atomically(path, json.dumps(payload, indent=2, sort_keys=False, allow_nan=False) + "\n")


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    from shared.cli import write_text_atomically

    buffer = io.StringIO()
    fieldnames: list[str] = []
    for row in rows:
        fieldnames.extend(k for k in row if k not in fieldnames)
    writer = csv.DictWriter(buffer, fieldnames=fieldnames)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomically(path, buffer.getvalue())


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _write_embeddings(
    config: MnarConfig, run_id: str, dataset_name: str, models: list[tuple[str, str, Any]], user_ids, item_ids
) -> int:
    """Write user and item factors of ``(model_name, model_version, PointwiseMF)`` triples to the store."""
    from shared.store import EmbeddingStore

    store = EmbeddingStore(config.store_path)
    written = 0
    with store.writing() as writer:
        for model_name, model_version, model in models:
            model_run_id = f"{run_id}/{model_name}/{model_version}"
            writer.register_run(model_run_id, "recsys", model_name, model_version, {"dataset": dataset_name})
            for modality, factors, ids in (
                ("user", model.user_factors.detach().cpu().numpy(), user_ids),
                ("item", model.item_factors.detach().cpu().numpy(), item_ids),
            ):
                norms = np.linalg.norm(factors, axis=1)
                keep = norms > 1e-12  # an all-zero factor (never-updated row) has no direction
                written += writer.write_embeddings(
                    domain="recsys",
                    modality=modality,
                    model_name=model_name,
                    model_version=model_version,
                    run_id=model_run_id,
                    sample_ids=[f"{dataset_name}:{modality}:{i}" for i in np.asarray(ids)[keep]],
                    vectors=factors[keep],
                )
    return written


def run_semi_synthetic(config: MnarConfig, run_dir: Path) -> dict[str, Any]:
    """The semi-synthetic experiment; returns the summary written to ``eval/metrics.json``."""
    from domains.recsys.mnar_data import read_movielens_100k_ratings
    from domains.recsys.mnar_estimators import EstimatorSpec
    from domains.recsys.semi_synthetic import (
        GeneratorSettings,
        LearnerSettings,
        build_semi_synthetic_world,
        run_power,
    )
    from shared.device import pick_device

    section = config.semi_synthetic
    device = pick_device(config.device)
    names = config.estimators or DEFAULT_ESTIMATORS["semi_synthetic"]
    clips = config.clip if config.clip is not None else [PAPER_CLIP["semi_synthetic"]]
    specs = []
    for name in names:
        for clip in clips if name == "relmf_clipped" else [0.0]:
            specs.append(EstimatorSpec(name, loss="log", clip_min=clip))
    ratings = read_movielens_100k_ratings()
    started = time.perf_counter()
    print(f"[mnar] fitting the ML-100K generator ({ratings.n_users} users x {ratings.n_items} items)", flush=True)
    world = build_semi_synthetic_world(
        ratings,
        GeneratorSettings(
            section.generator_dim,
            section.generator_iterations,
            section.generator_batch_size,
            section.generator_lr,
            section.epsilon,
            section.generator_seed,
        ),
    )
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
        fits = run_power(world, power, specs, seeds, learner, keep_models_for_seed=seeds[0], device=device)
        oracle = {f.seed: f.test_log_loss for f in fits if f.estimator == "oracle"}
        for fit in fits:
            label = _estimator_label(fit.estimator, fit.clip_min, None)
            rows.append(
                {
                    "power": power,
                    "estimator": label,
                    "seed": fit.seed,
                    "test_log_loss": fit.test_log_loss,
                    "relative_to_oracle": fit.test_log_loss / oracle[fit.seed] if fit.seed in oracle else math.nan,
                    "best_step": fit.best_step,
                    "exposure_rate": float(exposure.mean()),
                    "click_rate": float(clicks.mean()),
                    "median_theta": float(np.median(theta)),
                }
            )
            if fit.model is not None:
                kept.append((f"mnar-semi-{label}", f"p={power:g},seed={fit.seed}", fit.model))
        summary_now = {r["estimator"]: r["relative_to_oracle"] for r in rows if r["power"] == power and r["seed"] == 0}
        print(
            f"[mnar] p={power:g} done ({time.perf_counter() - started:.0f}s): seed-0 relative log loss {summary_now}",
            flush=True,
        )
    labels = list(dict.fromkeys(r["estimator"] for r in rows))
    table: dict[str, dict[str, dict[str, float]]] = {}
    for label in labels:
        table[label] = {}
        for power in section.exposure_powers:
            values = np.array(
                [r["relative_to_oracle"] for r in rows if r["estimator"] == label and r["power"] == power]
            )
            losses = np.array([r["test_log_loss"] for r in rows if r["estimator"] == label and r["power"] == power])
            table[label][f"{power:g}"] = {
                "relative_mean": float(values.mean()),
                "relative_std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
                "log_loss_mean": float(losses.mean()),
            }
    header = ["estimator"] + [f"p={p:g}" for p in section.exposure_powers]
    body = [
        [label]
        + [
            f"{table[label][f'{p:g}']['relative_mean']:.3f} ± {table[label][f'{p:g}']['relative_std']:.3f}"
            for p in section.exposure_powers
        ]
        for label in labels
    ]
    markdown = (
        "# Semi-synthetic ML-100K: test log loss relative to the oracle\n\n"
        f"Mean ± std over {len(seeds)} seeds; test pairs are all pairs with Y = 0, scored against the sampled R.\n\n"
        + _markdown_table(header, body)
    )
    summary = {
        "dataset": "semi_synthetic_ml100k",
        "metric": "test log loss relative to the oracle (lower is better; oracle = 1)",
        "seeds": len(seeds),
        "table": table,
        "elapsed_s": time.perf_counter() - started,
    }
    from shared.cli import write_text_atomically

    write_text_atomically(run_dir / "results.md", markdown)
    _write_json(run_dir / "results.json", {"summary": summary, "rows": rows})
    _write_csv(run_dir / "metrics.csv", rows)
    if config.store_path:
        written = _write_embeddings(
            config, f"recsys-{run_dir.name}", "ml100k-semi", kept, ratings.user_ids, ratings.item_ids
        )
        summary["embeddings_written"] = written
    _write_json(run_dir / "eval" / "metrics.json", summary)
    print(markdown)
    return summary


def _read_real_dataset(config: MnarConfig):
    from domains.recsys.mnar_data import (
        MnarDataError,
        read_click_log,
        read_coat,
        read_recbole_ratings,
        read_yahoo_r3,
    )

    if config.dataset == "yahoo_r3":
        train, test = config.train_path, config.test_path
        if config.data_dir:
            train = train or str(Path(config.data_dir) / "train.txt")
            test = test or str(Path(config.data_dir) / "test.txt")
        if not train or not test:
            raise MnarDataError("yahoo_r3 needs --train_path and --test_path (or --data_dir with train.txt/test.txt)")
        return read_yahoo_r3(train, test, config.rating_threshold)
    if config.dataset == "coat":
        if not config.data_dir:
            raise MnarDataError("coat needs --data_dir (folder with train.ascii, test.ascii, propensities.ascii)")
        return read_coat(config.data_dir, config.rating_threshold)
    if config.dataset == "click_log":
        if not config.train_path:
            raise MnarDataError("click_log needs --train_path (and optionally --test_path)")
        return read_click_log(config.train_path, config.test_path)
    if config.dataset == "recbole":
        if not config.train_path:
            raise MnarDataError("recbole needs --train_path pointing at a .inter file")
        return read_recbole_ratings(config.train_path, config.rating_threshold)
    raise ValueError(f"unknown dataset {config.dataset!r}; choose from {', '.join(DATASETS)}")


def run_real(config: MnarConfig, run_dir: Path) -> dict[str, Any]:
    """Train the selected estimators on a real biased log and evaluate them; returns the summary."""
    import torch

    from domains.recsys.mnar_data import split_validation_clicks, training_feedback
    from domains.recsys.mnar_estimators import (
        EstimatorSpec,
        PairSampler,
        fit_expomf,
        fit_pointwise,
        fit_ubpr,
    )
    from domains.recsys.mnar_metrics import (
        mar_ranking_metrics,
        propensity_weighted_ranking_metrics,
        rare_item_mask,
    )
    from shared.device import pick_device

    section = config.real
    device = pick_device(config.device)
    dataset = _read_real_dataset(config)
    names = config.estimators or DEFAULT_ESTIMATORS["real"]
    clips = config.clip if config.clip is not None else [PAPER_CLIP["real"]]
    train_clicks, validation_clicks = split_validation_clicks(dataset, section.validation_fraction)
    if train_clicks.empty:
        raise ValueError(f"{dataset.sources[0]}: no training clicks at rating threshold {config.rating_threshold}")
    counts = np.bincount(train_clicks["item"].to_numpy(), minlength=dataset.n_items)
    rare_threshold = config.rare_item_max_positives
    if rare_threshold is None:
        rare_threshold = 500 if dataset.name == "yahoo_r3" else int(np.median(counts))
    print(
        f"[mnar] {dataset.name}: {dataset.n_users} users x {dataset.n_items} items, {len(train_clicks)} training clicks, "
        f"{0 if dataset.test is None else len(dataset.test)} MAR test rows",
        flush=True,
    )
    # validation clicks' propensities for IPS/SNIPS: logged if available, else popularity (η of the first sweep)
    if config.propensity == "logged" and "propensity" in validation_clicks:
        validation_theta = validation_clicks["propensity"].to_numpy(dtype=np.float64)
    else:
        from domains.recsys.mnar_estimators import item_popularity_propensity

        validation_theta = item_popularity_propensity(train_clicks["item"].to_numpy(), dataset.n_items, config.eta[0])[
            validation_clicks["item"].to_numpy()
        ]
    rows: list[dict[str, Any]] = []
    kept: list[tuple[str, str, Any]] = []
    started = time.perf_counter()
    for name in names:
        etas: list[float | None] = (
            list(config.eta)
            if (name in ("relmf", "relmf_clipped", "ubpr") and config.propensity == "popularity")
            else [None]
        )
        for eta in etas:
            propensity_source = config.propensity if name in ("relmf", "relmf_clipped", "ubpr") else "none"
            feedback = training_feedback(dataset, train_clicks, propensity_source, eta if eta is not None else 0.5)
            for clip in clips if name in ("relmf_clipped", "ubpr") else [0.0]:
                spec = EstimatorSpec(
                    name,
                    loss=section.loss,
                    clip_min=clip,
                    unlabeled_weight=section.wmf_unlabeled_weight,
                    normalization="weighted" if section.loss == "squared" else "mean",
                    nonnegative_beta=section.ubpr_nonnegative_beta,
                )
                label = _estimator_label(name, clip, eta if config.propensity == "popularity" else None)
                for seed in range(config.seeds):
                    fit_started = time.perf_counter()
                    if name == "expomf":
                        model = fit_expomf(
                            feedback, dim=section.expomf_dim, iterations=section.expomf_iterations,
                            lam=section.expomf_lam, seed=seed, device=device,
                        ).as_model()  # fmt: skip
                    elif name == "ubpr":
                        model = fit_ubpr(
                            feedback, spec, dim=section.dim, iterations=section.iterations, batch_size=section.batch_size,
                            optimizer=section.optimizer, lr=section.lr, l2=section.l2, seed=seed, device=device,
                        ).model  # fmt: skip
                    elif name == "oracle":
                        raise ValueError("the oracle needs the true relevance: only the semi-synthetic dataset has it")
                    else:
                        sampler = PairSampler(feedback, positive_fraction=section.positive_fraction, seed=seed)
                        model = fit_pointwise(
                            sampler, spec, dim=section.dim, iterations=section.iterations, batch_size=section.batch_size,
                            optimizer=section.optimizer, lr=section.lr, l2=section.l2, seed=seed, device=device,
                        ).model  # fmt: skip
                    model = model.cpu().eval()
                    with torch.no_grad():
                        scores = model.score_matrix().numpy()
                    row: dict[str, Any] = {
                        "estimator": label,
                        "seed": seed,
                        "fit_seconds": time.perf_counter() - fit_started,
                    }
                    if dataset.test is not None:
                        test = dataset.test
                        test_scores = scores[test["user"].to_numpy(), test["item"].to_numpy()]
                        metrics = mar_ranking_metrics(
                            test["user"].to_numpy(),
                            test["label"].to_numpy(),
                            test_scores,
                            config.ks,
                            config.conventions,
                        )
                        row.update({f"mar_{k}": v for k, v in metrics.items()})
                        rare = rare_item_mask(test["item"].to_numpy(), counts, rare_threshold)
                        if rare.any() and test["label"].to_numpy()[rare].any():
                            rare_metrics = mar_ranking_metrics(
                                test["user"].to_numpy()[rare], test["label"].to_numpy()[rare], test_scores[rare],
                                config.ks, config.conventions,
                            )  # fmt: skip
                            row.update({f"rare_{k}": v for k, v in rare_metrics.items()})
                    if len(validation_clicks):
                        for estimator in ("ips", "snips"):
                            estimate = propensity_weighted_ranking_metrics(
                                scores,
                                validation_clicks["user"].to_numpy(),
                                validation_clicks["item"].to_numpy(),
                                validation_theta,
                                config.ks,
                                estimator,
                                excluded_users=train_clicks["user"].to_numpy(),
                                excluded_items=train_clicks["item"].to_numpy(),
                            )
                            row.update({f"{estimator}_{k}": v for k, v in estimate.items()})
                    rows.append(row)
                    if seed == 0:
                        kept.append((f"mnar-{dataset.name}-{label}", f"seed={seed}", model))
                    print(f"[mnar] {label} seed {seed}: {time.perf_counter() - fit_started:.1f}s", flush=True)
    labels = list(dict.fromkeys(r["estimator"] for r in rows))
    metric_columns = [
        c for c in rows[0] if c.startswith(("mar_", "rare_", "ips_", "snips_")) and not c.endswith("users")
    ]
    table = {
        label: {
            c: float(np.nanmean([r.get(c, np.nan) for r in rows if r["estimator"] == label])) for c in metric_columns
        }
        for label in labels
    }
    shown = [c for c in metric_columns if c.endswith(f"@{max(config.ks)}")] or metric_columns
    markdown = (
        f"# {dataset.name}: ranking metrics ({config.conventions} conventions), mean over {config.seeds} seed(s)\n\n"
        f"mar_ = missing-at-random test set; rare_ = items with <= {rare_threshold} training clicks; "
        "ips_/snips_ = estimates from the held-out biased clicks.\n\n"
        + _markdown_table(
            ["estimator", *shown], [[label] + [f"{table[label][c]:.4f}" for c in shown] for label in labels]
        )
    )
    summary = {
        "dataset": dataset.name,
        "sources": dataset.sources,
        "rare_item_max_positives": rare_threshold,
        "table": table,
        "elapsed_s": time.perf_counter() - started,
    }
    from shared.cli import write_text_atomically

    write_text_atomically(run_dir / "results.md", markdown)
    _write_json(run_dir / "results.json", {"summary": summary, "rows": rows})
    _write_csv(run_dir / "metrics.csv", rows)
    if config.store_path:
        summary["embeddings_written"] = _write_embeddings(
            config, f"recsys-{run_dir.name}", dataset.name, kept, dataset.user_ids, dataset.item_ids
        )
    _write_json(run_dir / "eval" / "metrics.json", summary)
    print(markdown)
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse the command line, run the experiment, write the run folder; returns the summary."""
    from shared.cli import parse_config, run_dir_for, save_config

    config = parse_config(MnarConfig, argv, prog="python -m domains.recsys.mnar", description=__doc__)
    import torch

    if config.cpu_threads > 0:
        torch.set_num_threads(config.cpu_threads)
    if config.seeds < 1:
        raise SystemExit("--seeds must be >= 1")
    run_dir = run_dir_for("recsys", config.run_name or f"mnar-{config.dataset.replace('_', '-')}", config.runs_root)
    save_config(config, run_dir)
    summary = run_semi_synthetic(config, run_dir) if config.dataset == "semi_synthetic" else run_real(config, run_dir)
    print(f"[mnar] wrote {run_dir}/ (results.md, results.json, metrics.csv, eval/metrics.json, config.yaml)")
    if config.store_path:
        print(
            f"[mnar] embeddings in {config.store_path}; browse them with the explorer (apps/) or SQL on all_embeddings"
        )
    print(f"[mnar] next: compare estimators in {run_dir}/results.md, or rerun with --config {run_dir}/config.yaml")
    return summary


if __name__ == "__main__":
    main()
