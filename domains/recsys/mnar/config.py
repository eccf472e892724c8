"""Settings of an MNAR run (``python -m domains.recsys.mnar``), their paper defaults and their checks.

One dataclass, :class:`MnarConfig`, with a section per protocol: ``semi_synthetic`` (the generator and the
batched training of the compared models) is read only when ``dataset`` is ``semi_synthetic``; ``real`` (the
models and estimators) and ``trainer`` (the core training loop) only for a real log. A section given for the
other protocol is refused rather than silently ignored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NoReturn

from domains.recsys.mnar.losses import ALL_ESTIMATORS, POINTWISE_ESTIMATORS
from domains.recsys.mnar.training import mnar_trainer_config
from shared.trainer import TrainerConfig, check_trainer_config
from shared.user_errors import UserError

DEFAULT_ESTIMATORS = {
    "semi_synthetic": ["oracle", "naive", "relmf", "relmf_clipped"],
    "real": ["naive", "wmf", "expomf", "relmf", "relmf_clipped", "ubpr"],
}
INPUT_HELP = {
    "yahoo_r3": "the Yahoo! R3 folder (train.txt, test.txt), or train.txt with --test_input test.txt",
    "coat": "the Coat folder (train.ascii, test.ascii, propensities.ascii)",
    "click_log": "the training click log (csv/tsv/parquet), optionally --test_input with a randomized log",
    "recbole": "a RecBole .inter file",
}
"""What ``--input`` is for each real dataset."""
PAPER_CLIP = {"semi_synthetic": 0.1, "real": 0.00914}
"""Clip M of ``relmf_clipped`` when ``--clip`` is not given (Saito et al.'s values)."""


class MnarConfigError(UserError, ValueError):
    """A flag's value is out of range or does not fit the chosen dataset; the message names the flag."""


@dataclass
class SemiSyntheticSection:
    """The semi-synthetic ML-100K generator and the batched training of the compared models."""

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
    device: str = "auto"
    """Torch device of the compared models: auto (CUDA when available), cpu or cuda."""


@dataclass
class RealDataSection:
    """Models and estimators on a real biased log (the loop's settings are in the trainer section)."""

    dim: int = 64
    """Latent dimension of the MF models (the paper used 200 for Rel-MF on a GPU)."""
    loss: Literal["log", "squared"] = "squared"
    """Local loss of pointwise estimators (the authors' real-data code uses squared)."""
    batch_size: int = 4096
    """Pairs per step (the global batch: under torchrun each rank trains on its slice of the same draw); an epoch
    is ceil(training clicks / batch_size) steps."""
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
    resplit_per_seed: bool = False
    """Each seed holds out its own random validation clicks (and trains on the rest), so seed intervals include
    training-data variation, not only initialisation (closed-form fits reach the same scores from any start)."""
    expomf_row_solver: Literal["exact", "cg"] = "exact"
    """ExpoMF's M-step: exact d×d solves per row, or warm-started conjugate gradient (dimension 200 on a CPU)."""
    als_iterations: int = 15
    """Sweeps of the closed-form ALS estimators (naive_als, wmf_als, relmf_als, relmf_clipped_als)."""
    als_regularization: float = 10.0
    """λ of the ALS estimators, on their sum-over-all-pairs scale: λ(‖X‖² + ‖Y‖²)."""
    select_dims: list[int] | None = None
    """Latent dimensions to choose from on validation (ExpoMF too); null: dim (expomf_dim for ExpoMF)."""
    select_als_regularizations: list[float] | None = None
    """ALS λ values to choose from on validation; null: als_regularization."""
    select_weight_decays: list[float] | None = None
    """Gradient fits' λ (trainer.weight_decay) values to choose from on validation; null: the trainer's."""
    select_expomf_lams: list[float] | None = None
    """ExpoMF ridge weights to choose from on validation; null: expomf_lam."""


@dataclass
class MnarConfig:
    """Unbiased recommender learning from MNAR implicit feedback: semi-synthetic ML-100K or a real log."""

    dataset: Literal["semi_synthetic", "yahoo_r3", "coat", "click_log", "recbole"] = "semi_synthetic"
    """Which data: the semi-synthetic ML-100K protocol, or a real dataset read from --input."""
    input: str | None = None
    """Real data: Coat folder; Yahoo! R3 folder or its train.txt; click-log file (csv/tsv/parquet); RecBole .inter."""
    test_input: str | None = None
    """Missing-at-random test file: Yahoo! R3 test.txt (when --input is train.txt) or a randomized click log."""
    rating_threshold: int = 4
    """Ratings at or above this are clicks / relevant."""
    estimators: list[str] | None = None
    """Estimators to train (oracle, naive, wmf, relmf, relmf_clipped, ubpr, expomf; ALS: naive_als, wmf_als, relmf_als, relmf_clipped_als); null: dataset default."""
    propensity: Literal["popularity", "logged", "none"] = "popularity"
    """Real data: propensities from item popularity^η, from the log's propensity column, or none (θ = 1)."""
    eta: list[float] = field(default_factory=lambda: [0.5])
    """Popularity powers η to sweep (real data, propensity popularity)."""
    clip: list[float] | None = None
    """Clip values M for relmf_clipped (and UBPR) to sweep; null: 0.1 semi-synthetic, 0.00914 real data."""
    clip_quantiles: list[float] | None = None
    """Real data: clip candidates M at these quantiles of θ among training clicks, chosen on validation (replaces --clip)."""
    selection_metric: str | None = None
    """Real data: SNIPS metric on the held-out biased clicks that picks dim, λ and M per estimator; null: DCG@max(ks)."""
    also_popularity_propensity: bool = False
    """With --propensity logged, also train the propensity estimators on popularity θ (η from --eta): misspecification cost."""
    ordering: list[str] | None = None
    """Estimators in their expected order, best first: paired difference and verdict for each 'A beats B' claim."""
    claims: list[str] | None = None
    """Further claims 'A>B' (estimator names or full labels, e.g. relmf_als>wmf_als) judged like --ordering's."""
    user_columns: list[str] | None = None
    """Click logs: compose the user id from these columns (e.g. a log without a user column); null: the user column."""
    seeds: int = 5
    """Number of training seeds; real data: trainer.seed, trainer.seed + 1, ... (semi-synthetic: 0, 1, ...)."""
    ks: list[int] = field(default_factory=lambda: [1, 3, 5])
    """Cut-offs K of the ranking metrics."""
    conventions: Literal["paper", "standard"] = "paper"
    """Ranking-metric conventions: the Rel-MF code's (relevance 0.001 for negatives) or standard binary ones."""
    rare_item_max_positives: int | None = None
    """Items with at most this many training clicks are 'rare'; null: 500 for Yahoo! R3, else the median."""
    semi_synthetic: SemiSyntheticSection = field(default_factory=SemiSyntheticSection)
    """Semi-synthetic generator and model settings."""
    real: RealDataSection = field(default_factory=RealDataSection)
    """Real-data model and estimator settings."""
    trainer: TrainerConfig = field(default_factory=mnar_trainer_config)
    """Training loop of the real-data fits (weight_decay is the L2 weight λ; resume latest continues a run)."""
    run_name: str | None = None
    """Run folder name under runs/recsys/; null: mnar-<dataset>."""
    runs_root: str = "runs"
    """Root of the run folders."""
    store: str | None = "runs/embeddings.duckdb"
    """DuckDB embedding store for the user/item embeddings; null: do not write embeddings."""
    cpu_threads: int = 1
    """Torch CPU threads; these models are tiny, and extra threads only add contention on small machines."""

    @property
    def is_semi_synthetic(self) -> bool:
        """Whether the run is the semi-synthetic protocol (else a real log)."""
        return self.dataset == "semi_synthetic"


def estimator_names(config: MnarConfig) -> list[str]:
    """The estimators to train: ``--estimators`` or the dataset's default."""
    if config.estimators is not None:
        return list(config.estimators)
    return list(DEFAULT_ESTIMATORS["semi_synthetic" if config.is_semi_synthetic else "real"])


def clip_values(config: MnarConfig) -> list[float]:
    """The clip values M to sweep: ``--clip`` or the paper's value for the protocol."""
    if config.clip is not None:
        return list(config.clip)
    return [PAPER_CLIP["semi_synthetic" if config.is_semi_synthetic else "real"]]


def _refuse(flag: str, problem: str) -> NoReturn:
    raise MnarConfigError(f"{flag}: {problem}")


def check_config(config: MnarConfig) -> None:
    """Refuse out-of-range values and sections that do not apply, naming the flag, before anything runs.

    Raises:
        MnarConfigError: the first problem found.
    """
    if config.seeds < 1:
        _refuse("--seeds", f"must be >= 1, got {config.seeds}")
    if not config.ks or min(config.ks) < 1:
        _refuse("--ks", f"cut-offs must be >= 1, got {config.ks}")
    if config.cpu_threads < 0:
        _refuse("--cpu_threads", f"must be >= 0 (0: torch's default), got {config.cpu_threads}")
    unknown = [name for name in config.estimators or [] if name not in ALL_ESTIMATORS]
    if unknown:
        _refuse("--estimators", f"unknown {', '.join(map(repr, unknown))}; choose from {', '.join(ALL_ESTIMATORS)}")
    if config.estimators == []:
        _refuse("--estimators", "empty list; give at least one estimator (or null for the dataset's default)")
    if any(value < 0 for value in config.eta):
        _refuse("--eta", f"popularity powers must be >= 0, got {config.eta}")
    if config.clip is not None and any(not 0 <= value <= 1 for value in config.clip):
        _refuse("--clip", f"clip values M must lie in [0, 1], got {config.clip}")
    if (
        config.clip is not None
        and 0 in config.clip
        and any(n.startswith("relmf_clipped") for n in estimator_names(config))
    ):
        _refuse("--clip", f"relmf_clipped needs clip values M > 0, got {config.clip}")
    if config.clip_quantiles is not None and (
        not config.clip_quantiles or any(not 0 <= q <= 1 for q in config.clip_quantiles)
    ):
        _refuse("--clip_quantiles", f"quantiles must lie in [0, 1], got {config.clip_quantiles}")
    if config.user_columns is not None and (not config.user_columns or config.dataset != "click_log"):
        _refuse("--user_columns", "give at least one column, and only with --dataset click_log")
    if any(claim.count(">") != 1 or "" in claim.split(">") for claim in config.claims or []):
        _refuse("--claims", f"write each claim as 'A>B', got {config.claims}")
    if config.also_popularity_propensity and config.propensity != "logged":
        _refuse("--also_popularity_propensity", "compares popularity θ against logged θ: needs --propensity logged")
    if config.store is not None and Path(config.store).is_dir():
        _refuse("--store", f"{config.store} is a folder, expected a DuckDB file (or null)")
    if config.is_semi_synthetic:
        _check_semi_synthetic(config)
    else:
        _check_real(config)


def _changed_field(section: object, default: object) -> str | None:
    """The first field of a settings section that differs from its default (None: all defaults)."""
    for item in dataclasses.fields(section):  # type: ignore[arg-type]
        if getattr(section, item.name) != getattr(default, item.name):
            return item.name
    return None


def _check_semi_synthetic(config: MnarConfig) -> None:
    section = config.semi_synthetic
    if config.input is not None or config.test_input is not None:
        _refuse(
            "--input", "the semi-synthetic protocol reads MovieLens-100K from recbole; give --dataset for a real log"
        )
    for section_name, default in (("trainer", mnar_trainer_config()), ("real", RealDataSection())):
        changed = _changed_field(getattr(config, section_name), default)
        if changed is not None:
            _refuse(
                f"--{section_name}.{changed}",
                "applies to real datasets; the semi-synthetic protocol uses --semi_synthetic.*",
            )
    for name in ("clip_quantiles", "selection_metric", "ordering", "claims", "user_columns"):
        if getattr(config, name) is not None:
            _refuse(f"--{name}", "applies to real datasets, not the semi-synthetic protocol")
    not_pointwise = [name for name in config.estimators or [] if name not in POINTWISE_ESTIMATORS]
    if not_pointwise:
        _refuse("--estimators", f"the semi-synthetic log-loss protocol needs pointwise estimators, got {not_pointwise}")
    if not section.exposure_powers or min(section.exposure_powers) <= 0:
        _refuse("--semi_synthetic.exposure_powers", f"powers p must be > 0, got {section.exposure_powers}")
    if not 0 < section.validation_fraction < 1:
        _refuse("--semi_synthetic.validation_fraction", f"must lie in (0, 1), got {section.validation_fraction}")
    positive = ("generator_dim", "generator_iterations", "generator_batch_size", "dim", "batch_size", "iterations")
    for name in (*positive, "validate_every"):
        if getattr(section, name) < 1:
            _refuse(f"--semi_synthetic.{name}", f"must be >= 1, got {getattr(section, name)}")


def _check_real(config: MnarConfig) -> None:
    section = config.real
    changed = _changed_field(config.semi_synthetic, SemiSyntheticSection())
    if changed is not None:
        _refuse(
            f"--semi_synthetic.{changed}", f"applies to the semi-synthetic protocol, not --dataset {config.dataset}"
        )
    if "oracle" in (config.estimators or []):
        _refuse("--estimators", "the oracle needs the true relevance: only the semi-synthetic dataset has it")
    if not 0 <= section.validation_fraction < 1:
        _refuse("--real.validation_fraction", f"must lie in [0, 1), got {section.validation_fraction}")
    if not 0 < section.positive_fraction < 1:
        _refuse("--real.positive_fraction", f"must lie in (0, 1), got {section.positive_fraction}")
    for name in ("dim", "batch_size", "expomf_dim", "expomf_iterations", "als_iterations"):
        if getattr(section, name) < 1:
            _refuse(f"--real.{name}", f"must be >= 1, got {getattr(section, name)}")
    if section.als_regularization <= 0:
        _refuse("--real.als_regularization", f"must be > 0, got {section.als_regularization}")
    for name in ("select_dims", "select_als_regularizations", "select_weight_decays", "select_expomf_lams"):
        values = getattr(section, name)
        if values is not None and (not values or min(values) < (1 if name == "select_dims" else 0)):
            _refuse(f"--real.{name}", f"needs at least one value, all positive; got {values}")
    if config.selection_metric is not None and config.selection_metric.split("@")[0] not in ("DCG", "Recall", "MAP"):
        _refuse("--selection_metric", f"use DCG@K, Recall@K or MAP@K, got {config.selection_metric!r}")
    _check_trainer(config.trainer)


def _check_trainer(trainer: TrainerConfig) -> None:
    """Refuse trainer settings the real-data fits cannot honour, before the run folder exists."""
    if trainer.resume is not None and trainer.resume != "latest":
        _refuse(
            "--trainer.resume",
            f"an MNAR run holds one fit per estimator and seed; use 'latest', got {trainer.resume!r}",
        )
    check_trainer_config(trainer)  # before the run folder exists
    unused = {
        "select_metric": trainer.select_metric,
        "stop_metric": trainer.stop_metric,
        "validate_every": trainer.validate_every or None,
        "validate_every_epochs": trainer.validate_every_epochs,
        "early_stopping_patience": trainer.early_stopping_patience or None,
    }
    for name, value in unused.items():
        if value is not None:
            _refuse(
                f"--trainer.{name}", "the real-data fits have no validation during training (the last weights are kept)"
            )
