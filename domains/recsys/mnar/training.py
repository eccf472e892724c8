"""Fitting the MNAR estimators on a real log with the core trainer (checkpoints, progress, ``metrics.csv``).

Each estimator is an ``nn.Module`` whose ``forward(batch)`` returns ``{"loss": ...}`` (the trainer's
``TrainableModel``) around a :class:`~domains.recsys.mnar.models.PointwiseMF`. The L2 weight λ of the papers
is the trainer's ``weight_decay`` with ``optimizer: adam`` (decay coupled into the gradient: the gradient of
``λ·½‖P‖²``); the trainer exempts vectors (biases) from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from domains.recsys.mnar.feedback import ImplicitFeedback
from domains.recsys.mnar.losses import POINTWISE_ESTIMATORS, EstimatorSpec, unbiased_pairwise_loss
from domains.recsys.mnar.models import PointwiseMF
from domains.recsys.mnar.sampling import (
    MakeBatches,
    PairBatch,
    PairSampler,
    pairwise_batch,
    seeded_batches,
    steps_per_epoch,
)
from shared.trainer import Trainer, TrainerConfig


class PointwiseObjective(nn.Module):
    """A :class:`PointwiseMF` trained with a pointwise estimator's loss (``oracle`` aside: it needs ``γ``).

    Args:
        model: the factorisation.
        spec: the estimator (``naive``, ``wmf``, ``relmf``, ``relmf_clipped``).
    """

    def __init__(self, model: PointwiseMF, spec: EstimatorSpec) -> None:
        super().__init__()
        self.model = model
        self.spec = spec

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"loss": ...}`` of a batch of pairs (``users``, ``items``, ``labels``, ``propensity``)."""
        logits = self.model.logits(batch["users"], batch["items"])
        return {"loss": self.spec.pointwise_loss(logits, PairBatch(**batch))}


class PairwiseObjective(nn.Module):
    """A :class:`PointwiseMF` trained with the unbiased pairwise loss (UBPR) on batches from :func:`pairwise_batch`.

    Args:
        model: the factorisation.
        spec: the ``ubpr`` estimator (its ``clip_min`` and ``nonnegative_beta``).
    """

    def __init__(self, model: PointwiseMF, spec: EstimatorSpec) -> None:
        super().__init__()
        self.model = model
        self.spec = spec

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"loss": ...}`` of clicked pairs against their sampled items."""
        loss = unbiased_pairwise_loss(
            self.model.logits(batch["users"], batch["items"]),
            self.model.logits(batch["users"], batch["negatives"]),
            batch["positive_propensity"],
            batch["negative_labels"],
            batch["negative_propensity"],
            clip_min=self.spec.clip_min,
            nonnegative_beta=self.spec.nonnegative_beta,
        )
        return {"loss": loss}


@dataclass
class FitResult:
    """Outcome of one trainer fit.

    Attributes:
        model: the trained factorisation (on the CPU).
        steps: optimizer steps run.
        pairs_seen: user–item pairs drawn over the fit.
        run_dir: the fit's folder (``metrics.csv``, ``checkpoints/``, ``model.safetensors``).
    """

    model: PointwiseMF
    steps: int
    pairs_seen: int
    run_dir: Path


def train_objective(
    objective: PointwiseObjective | PairwiseObjective,
    make_batches: MakeBatches,
    trainer: TrainerConfig,
    run_dir: str | Path,
    batch_size: int,
) -> FitResult:
    """Run the core trainer on ``objective`` and return its factorisation.

    Args:
        objective: the estimator around its model.
        make_batches: the trainer's batch source.
        trainer: the trainer settings (budgets already resolved).
        run_dir: folder of this fit.
        batch_size: pairs per batch (for the ``pairs_seen`` count).
    """
    result = Trainer(objective, trainer, run_dir).fit(make_batches)
    return FitResult(objective.model.cpu(), result.step, result.step * batch_size, Path(run_dir))


def fit_pointwise(
    sampler: PairSampler,
    spec: EstimatorSpec,
    *,
    dim: int,
    batch_size: int,
    trainer: TrainerConfig,
    run_dir: str | Path,
    use_bias: bool = False,
    seed: int = 0,
) -> FitResult:
    """Train a :class:`PointwiseMF` with a pointwise estimator (``naive``, ``wmf``, ``relmf*``).

    Args:
        sampler: draws the training pairs (clicks as labels).
        spec: the estimator.
        dim: latent dimension.
        batch_size: pairs per step.
        trainer: loop settings (``max_steps``, ``optimizer``, ``lr``, ``weight_decay`` = λ, ...).
        run_dir: folder of this fit.
        use_bias: user/item/global biases.
        seed: initialisation seed and seed of the batches.
    """
    if spec.name not in POINTWISE_ESTIMATORS:
        raise ValueError(f"{spec.name!r} is not a pointwise estimator")
    if spec.name == "oracle":
        raise ValueError("the oracle needs the true relevance: only the semi-synthetic dataset has it")
    feedback = sampler.feedback
    model = PointwiseMF(feedback.n_users, feedback.n_items, dim, use_bias=use_bias, seed=seed)
    make_batches = seeded_batches(
        lambda rng: sampler.sample(batch_size, rng=rng).as_dict(),
        steps_per_epoch(feedback.users.size, batch_size),
        seed,
    )
    return train_objective(PointwiseObjective(model, spec), make_batches, trainer, run_dir, batch_size)


def fit_ubpr(
    feedback: ImplicitFeedback,
    spec: EstimatorSpec,
    *,
    dim: int,
    batch_size: int,
    trainer: TrainerConfig,
    run_dir: str | Path,
    seed: int = 0,
) -> FitResult:
    """Train MF with the unbiased pairwise loss: clicked ``(u, i)`` against uniformly drawn items ``j``.

    Args mirror :func:`fit_pointwise`; ``spec.clip_min`` clips propensities and ``spec.nonnegative_beta``
    enables the non-negative clip.
    """
    if feedback.users.size == 0:
        raise ValueError("UBPR needs at least one click")
    model = PointwiseMF(feedback.n_users, feedback.n_items, dim, use_bias=False, seed=seed)
    make_batches = seeded_batches(
        lambda rng: pairwise_batch(feedback, batch_size, rng), steps_per_epoch(feedback.users.size, batch_size), seed
    )
    return train_objective(PairwiseObjective(model, spec), make_batches, trainer, run_dir, batch_size)


def mnar_trainer_config(**overrides: object) -> TrainerConfig:
    """The trainer settings of the real-data fits: the authors' recipe (Adam, lr 0.005, λ = 1e-4, 1000 steps).

    Constant learning rate, fp32, a checkpoint every 250 steps (only the last kept); ``overrides`` replace
    any field.
    """
    values: dict[str, object] = {
        "max_steps": 1000,
        "optimizer": "adam",
        "lr": 0.005,
        "weight_decay": 1e-4,
        "betas": (0.9, 0.999),
        "eps": 1e-8,
        "schedule": "constant",
        "precision": "fp32",
        "checkpoint_every": 250,
        "keep_last": 1,
        "log_every": 50,
    }
    values.update(overrides)
    return TrainerConfig(**values)  # type: ignore[arg-type]
