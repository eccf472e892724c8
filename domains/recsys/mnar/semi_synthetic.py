"""The Rel-MF semi-synthetic MNAR protocol on MovieLens-100K (Saito et al., WSDM 2020, Section 5.1).

1. Fit MF (no biases) to the observed ratings → predicted rating ``R̂``; relevance probability
   ``γ = σ(clip(R̂, 1, 5) − ε)`` (ε = 5).
2. Fit logistic MF to "rated vs not rated" over all pairs → logits ``z``; exposure ``θ = σ(z)^p``; larger
   ``p`` makes exposure rarer and more skewed (stronger MNAR).
3. Sample ``R ~ Bern(γ)``, ``O ~ Bern(θ)``, ``Y = O·R``.
4. Train the compared models on ``Y`` (:mod:`domains.recsys.mnar.replicated_training`).

``R`` and the uniforms behind ``O`` are drawn once, so the exposures for different ``p`` are coupled
(common random numbers): differences between powers come from θ, not from sampling noise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from domains.recsys.mnar.data import MnarDataset
from domains.recsys.mnar.models import PointwiseMF
from shared.run_folder import METRICS_FILE
from shared.trainer import Trainer, TrainerConfig


@dataclass
class SemiSyntheticWorld:
    """Ground truth of one semi-synthetic dataset (all matrices are ``n_users × n_items``).

    Attributes:
        relevance_probability: γ.
        exposure_logits: logits ``z`` of the logistic exposure MF (θ = σ(z)^p).
        relevance: sampled ``R``.
        exposure_uniforms: the uniforms ``u`` with ``O = [u < θ]``.
        epsilon: the ε used for γ.
    """

    relevance_probability: np.ndarray
    exposure_logits: np.ndarray
    relevance: np.ndarray
    exposure_uniforms: np.ndarray
    epsilon: float

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_users, n_items)``."""
        return self.relevance_probability.shape

    def exposure_propensity(self, power: float) -> np.ndarray:
        """θ = σ(z)^p."""
        if power <= 0:
            raise ValueError(f"exposure power p must be > 0, got {power}")
        return (1.0 / (1.0 + np.exp(-self.exposure_logits))) ** power

    def sample(self, power: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(θ, O, Y)`` for exposure power ``p``."""
        theta = self.exposure_propensity(power)
        exposure = (self.exposure_uniforms < theta).astype(np.int8)
        return theta, exposure, exposure * self.relevance


class GeneratorObjective(nn.Module):
    """A generator MF (no biases) with its loss on a batch: squared error on ratings or logistic on "rated".

    Args:
        model: the factorisation.
        loss: ``"squared"`` (step 1: ``batch["targets"]`` are ratings) or ``"logistic"`` (step 2: 0/1).
    """

    def __init__(self, model: PointwiseMF, loss: str) -> None:
        super().__init__()
        self.model = model
        self.loss_kind = loss

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"loss": ...}`` of a batch of ``users``, ``items`` and ``targets``."""
        logits = self.model.logits(batch["users"], batch["items"])
        if self.loss_kind == "squared":
            return {"loss": F.mse_loss(logits, batch["targets"])}
        return {"loss": F.binary_cross_entropy_with_logits(logits, batch["targets"])}


@dataclass
class GeneratorSettings:
    """Settings of the two generator fits (defaults: the paper's).

    Attributes:
        dim: latent dimension of both generator MFs.
        iterations: Adam steps of each fit.
        batch_size: pairs per step.
        lr: Adam learning rate.
        epsilon: ε in ``γ = σ(clip(R̂, 1, 5) − ε)``; larger means rarer relevance.
        seed: seed of the fits and of the sampling of ``R`` and ``O``.
    """

    dim: int = 20
    iterations: int = 300
    batch_size: int = 256
    lr: float = 0.01
    epsilon: float = 5.0
    seed: int = 12345

    def trainer_config(self) -> TrainerConfig:
        """The core trainer's settings for a generator fit: plain Adam (torch defaults), constant LR, on the CPU."""
        return TrainerConfig(
            max_steps=self.iterations,
            optimizer="adam",
            lr=self.lr,
            weight_decay=0.0,
            betas=(0.9, 0.999),
            eps=1e-8,
            schedule="constant",
            precision="fp32",
            device="cpu",
            checkpoint_every=self.iterations,
            keep_last=1,
            log_every=max(1, self.iterations // 10),
            seed=self.seed,
            progress_bar=False,
        )


def _fit_generator(
    objective: GeneratorObjective,
    draw: Callable[[], dict[str, torch.Tensor]],
    settings: GeneratorSettings,
    run_dir: str | Path,
) -> np.ndarray:
    """Train a generator MF with the core trainer; returns its full ``n_users × n_items`` logit matrix."""

    def make_batches(epoch: int, start_batch: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        # One stream of draws from the fit's generator (a fresh fit always starts at batch 0).
        for _ in range(start_batch, settings.iterations):
            yield draw()

    (Path(run_dir) / METRICS_FILE).unlink(missing_ok=True)  # a fresh fit starts a fresh log
    Trainer(objective, settings.trainer_config(), run_dir).fit(make_batches)
    return objective.model.cpu().score_matrix().numpy()


def fit_rating_model(dataset: MnarDataset, settings: GeneratorSettings, run_dir: str | Path) -> np.ndarray:
    """Step 1: MF (no biases) fitted to ratings by squared error with Adam; returns predicted ratings ``R̂``.

    Args:
        dataset: the rating log (needs a ``rating`` column).
        settings: generator settings.
        run_dir: folder of the fit (the trainer's ``metrics.csv``, checkpoint and ``model.safetensors``).
    """
    if "rating" not in dataset.train:
        raise ValueError(f"{dataset.name}: the semi-synthetic protocol needs explicit ratings")
    users = torch.as_tensor(dataset.train["user"].to_numpy(dtype=np.int64, copy=True))
    items = torch.as_tensor(dataset.train["item"].to_numpy(dtype=np.int64, copy=True))
    ratings = torch.as_tensor(dataset.train["rating"].to_numpy(dtype=np.float32, copy=True))
    generator = torch.Generator().manual_seed(settings.seed)

    def draw() -> dict[str, torch.Tensor]:
        pick = torch.randint(0, ratings.numel(), (settings.batch_size,), generator=generator)
        return {"users": users[pick], "items": items[pick], "targets": ratings[pick]}

    model = PointwiseMF(dataset.n_users, dataset.n_items, settings.dim, use_bias=False, seed=settings.seed)
    return _fit_generator(GeneratorObjective(model, "squared"), draw, settings, run_dir)


def fit_exposure_model(dataset: MnarDataset, settings: GeneratorSettings, run_dir: str | Path) -> np.ndarray:
    """Step 2: logistic MF (no biases) of "rated" vs "not rated" over all pairs; returns the logits ``z``.

    Args:
        dataset: the rating log.
        settings: generator settings.
        run_dir: folder of the fit.
    """
    observed = np.zeros((dataset.n_users, dataset.n_items), dtype=np.float32)
    observed[dataset.train["user"].to_numpy(), dataset.train["item"].to_numpy()] = 1.0
    observed_t = torch.as_tensor(observed)
    generator = torch.Generator().manual_seed(settings.seed)

    def draw() -> dict[str, torch.Tensor]:
        users = torch.randint(0, dataset.n_users, (settings.batch_size,), generator=generator)
        items = torch.randint(0, dataset.n_items, (settings.batch_size,), generator=generator)
        return {"users": users, "items": items, "targets": observed_t[users, items]}

    model = PointwiseMF(dataset.n_users, dataset.n_items, settings.dim, use_bias=False, seed=settings.seed)
    return _fit_generator(GeneratorObjective(model, "logistic"), draw, settings, run_dir)


def build_semi_synthetic_world(
    ratings: MnarDataset, settings: GeneratorSettings, run_dir: str | Path
) -> SemiSyntheticWorld:
    """Steps 1–3 for every ``p`` at once: fit both generator models and draw ``R`` and the exposure uniforms.

    Args:
        ratings: the rating log (MovieLens-100K in the paper).
        settings: generator settings.
        run_dir: folder for the two generator fits (``ratings/`` and ``exposure/`` inside).
    """
    predicted = fit_rating_model(ratings, settings, Path(run_dir) / "ratings")
    gamma = 1.0 / (1.0 + np.exp(-(np.clip(predicted, 1.0, 5.0) - settings.epsilon)))
    logits = fit_exposure_model(ratings, settings, Path(run_dir) / "exposure")
    rng = np.random.default_rng(settings.seed)
    relevance = (rng.random(gamma.shape) < gamma).astype(np.int8)
    uniforms = rng.random(gamma.shape)
    return SemiSyntheticWorld(gamma, logits, relevance, uniforms, settings.epsilon)
