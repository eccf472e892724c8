"""The Rel-MF semi-synthetic MNAR protocol on MovieLens-100K (Saito et al., WSDM 2020, Section 5.1).

1. Fit MF (no biases) to the observed ratings → predicted rating ``R̂``; relevance probability
   ``γ = σ(clip(R̂, 1, 5) − ε)`` (ε = 5).
2. Fit logistic MF to "rated vs not rated" over all pairs → logits ``z``; exposure ``θ = σ(z)^p``; larger
   ``p`` makes exposure rarer and more skewed (stronger MNAR).
3. Sample ``R ~ Bern(γ)``, ``O ~ Bern(θ)``, ``Y = O·R``.
4. Train on a random 90 % of all pairs (10 % validation for model selection): the oracle on ``γ``, the naive
   model on ``Y``, Rel-MF on ``Y`` with the true ``θ`` (and clipped variants). Test: log loss against ``R`` on
   every pair with ``Y = 0``, reported relative to the oracle.

``R`` and the uniforms behind ``O`` are drawn once, so the exposures for different ``p`` are coupled
(common random numbers): differences between powers come from θ, not from sampling noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from domains.recsys.mnar_data import MnarDataset
from domains.recsys.mnar_estimators import (
    POINTWISE_ESTIMATORS,
    EstimatorSpec,
    PairBatch,
    PointwiseMF,
    ReplicatedPointwiseMF,
    fit_mf,
)


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


def fit_rating_model(
    dataset: MnarDataset,
    dim: int = 20,
    iterations: int = 300,
    batch_size: int = 256,
    lr: float = 0.01,
    seed: int = 12345,
) -> np.ndarray:
    """Step 1: MF (no biases) fitted to ratings by squared error with Adam; returns predicted ratings ``R̂``."""
    if "rating" not in dataset.train:
        raise ValueError(f"{dataset.name}: the semi-synthetic protocol needs explicit ratings")
    users = torch.as_tensor(dataset.train["user"].to_numpy(dtype=np.int64, copy=True))
    items = torch.as_tensor(dataset.train["item"].to_numpy(dtype=np.int64, copy=True))
    ratings = torch.as_tensor(dataset.train["rating"].to_numpy(dtype=np.float32, copy=True))
    generator = torch.Generator().manual_seed(seed)
    model = PointwiseMF(dataset.n_users, dataset.n_items, dim, use_bias=False, seed=seed)

    def loss_for_batch(m: PointwiseMF) -> torch.Tensor:
        pick = torch.randint(0, ratings.numel(), (batch_size,), generator=generator)
        return F.mse_loss(m.logits(users[pick], items[pick]), ratings[pick])

    fit_mf(model, loss_for_batch, iterations=iterations, optimizer="adam", lr=lr)
    return model.score_matrix().numpy()


def fit_exposure_model(
    dataset: MnarDataset,
    dim: int = 20,
    iterations: int = 300,
    batch_size: int = 256,
    lr: float = 0.01,
    seed: int = 12345,
) -> np.ndarray:
    """Step 2: logistic MF (no biases) of "rated" vs "not rated" over all pairs; returns the logits ``z``."""
    observed = np.zeros((dataset.n_users, dataset.n_items), dtype=np.float32)
    observed[dataset.train["user"].to_numpy(), dataset.train["item"].to_numpy()] = 1.0
    observed_t = torch.as_tensor(observed)
    generator = torch.Generator().manual_seed(seed)
    model = PointwiseMF(dataset.n_users, dataset.n_items, dim, use_bias=False, seed=seed)

    def loss_for_batch(m: PointwiseMF) -> torch.Tensor:
        users = torch.randint(0, dataset.n_users, (batch_size,), generator=generator)
        items = torch.randint(0, dataset.n_items, (batch_size,), generator=generator)
        return F.binary_cross_entropy_with_logits(m.logits(users, items), observed_t[users, items])

    fit_mf(model, loss_for_batch, iterations=iterations, optimizer="adam", lr=lr)
    return model.score_matrix().numpy()


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


def build_semi_synthetic_world(ratings: MnarDataset, settings: GeneratorSettings | None = None) -> SemiSyntheticWorld:
    """Steps 1–3 for every ``p`` at once: fit both generator models and draw ``R`` and the exposure uniforms."""
    settings = settings or GeneratorSettings()
    predicted = fit_rating_model(
        ratings, settings.dim, settings.iterations, settings.batch_size, settings.lr, settings.seed
    )
    gamma = 1.0 / (1.0 + np.exp(-(np.clip(predicted, 1.0, 5.0) - settings.epsilon)))
    logits = fit_exposure_model(
        ratings, settings.dim, settings.iterations, settings.batch_size, settings.lr, settings.seed
    )
    rng = np.random.default_rng(settings.seed)
    relevance = (rng.random(gamma.shape) < gamma).astype(np.int8)
    uniforms = rng.random(gamma.shape)
    return SemiSyntheticWorld(gamma, logits, relevance, uniforms, settings.epsilon)


@dataclass
class LearnerSettings:
    """Training of the compared models (defaults: the paper's semi-synthetic settings).

    Attributes:
        dim: latent dimension.
        use_bias: user/item/global biases.
        optimizer: ``"sgd"`` or ``"adam"``.
        lr: learning rate.
        l2: L2 weight λ.
        batch_size: pairs per step.
        iterations: steps per fit.
        validate_every: steps between validation-loss checks (model selection by validation loss).
        validation_fraction: share of all pairs held out for validation.
    """

    dim: int = 10
    use_bias: bool = True
    optimizer: str = "sgd"
    lr: float = 0.1
    l2: float = 1e-5
    batch_size: int = 4096
    iterations: int = 1000
    validate_every: int = 50
    validation_fraction: float = 0.1


@dataclass
class SemiSyntheticFit:
    """One trained model of the experiment.

    Attributes:
        power: exposure power p.
        estimator: estimator name (``relmf_clipped`` rows carry their clip in ``clip_min``).
        clip_min: M (0 when unclipped).
        seed: training seed.
        test_log_loss: log loss against ``R`` on pairs with ``Y = 0``.
        best_step: step of the selected model.
        model: the trained model (kept only when requested).
    """

    power: float
    estimator: str
    clip_min: float
    seed: int
    test_log_loss: float
    best_step: int
    model: PointwiseMF | None = field(default=None, repr=False)


def run_power(
    world: SemiSyntheticWorld,
    power: float,
    specs: list[EstimatorSpec],
    seeds: list[int],
    settings: LearnerSettings,
    keep_models_for_seed: int | None = None,
    device: torch.device | str = "cpu",
) -> list[SemiSyntheticFit]:
    """Train every estimator in ``specs`` for every seed on the data of exposure power ``p``.

    All (estimator, seed) models train together as one :class:`ReplicatedPointwiseMF`; models with the same
    seed share initialisation and minibatches, so estimators differ only in their loss. Each replica keeps
    its parameters from the step with its lowest validation loss (its own estimator's loss on the held-out
    pairs, as in the authors' code).

    Args:
        world: the ground truth.
        power: exposure power p.
        specs: pointwise estimators (``oracle``, ``naive``, ``wmf``, ``relmf``, ``relmf_clipped``).
        seeds: training seeds (initialisation and batch order).
        settings: training settings.
        keep_models_for_seed: keep the trained models of this seed (for embedding export).
        device: torch device.

    Returns:
        One :class:`SemiSyntheticFit` per (estimator, seed).
    """
    for spec in specs:
        if spec.name not in POINTWISE_ESTIMATORS:
            raise ValueError(f"the semi-synthetic log-loss protocol needs pointwise estimators, got {spec.name!r}")
    if not specs or not seeds:
        raise ValueError("need at least one estimator and one seed")
    n_users, n_items = world.shape
    theta, _, clicks = world.sample(power)
    click_flat = torch.as_tensor(clicks.ravel(), dtype=torch.float32, device=device)
    gamma_flat = torch.as_tensor(world.relevance_probability.ravel(), dtype=torch.float32, device=device)
    theta_flat = torch.as_tensor(theta.ravel(), dtype=torch.float32, device=device)
    split_rng = np.random.default_rng(0)
    all_keys = split_rng.permutation(n_users * n_items)
    n_validation = int(round(settings.validation_fraction * all_keys.size))
    validation_keys = torch.as_tensor(np.sort(all_keys[:n_validation]), device=device)
    train_keys = np.sort(all_keys[n_validation:])
    test_keys = torch.as_tensor(np.flatnonzero(clicks.ravel() == 0), device=device)
    test_labels = torch.as_tensor(world.relevance.ravel(), dtype=torch.float32, device=device)[test_keys]

    n_seeds, n_specs = len(seeds), len(specs)
    replica_seeds = [seed for _ in specs for seed in seeds]  # replica index = spec_index * n_seeds + seed_index
    model = ReplicatedPointwiseMF(n_users, n_items, settings.dim, replica_seeds, settings.use_bias).to(device)
    best = ReplicatedPointwiseMF(n_users, n_items, settings.dim, replica_seeds, settings.use_bias).to(device)
    best.load_state_dict(model.state_dict())
    best_loss = torch.full((len(replica_seeds),), float("inf"), device=device)
    best_step = torch.full((len(replica_seeds),), settings.iterations, dtype=torch.long, device=device)
    batch_rngs = [np.random.default_rng(seed) for seed in seeds]
    params = list(model.parameters())
    opt = (
        torch.optim.SGD(params, lr=settings.lr)
        if settings.optimizer == "sgd"
        else torch.optim.Adam(params, lr=settings.lr)
    )

    def estimator_losses(keys: torch.Tensor, logits: torch.Tensor, per_replica: bool) -> torch.Tensor:
        """Loss of every replica; ``keys`` ``(n_seeds, B)`` are shared across estimators."""
        logits = logits.view(n_specs, n_seeds, -1)
        values = []
        for index, spec in enumerate(specs):
            labels = (gamma_flat if spec.name == "oracle" else click_flat)[keys]
            batch = PairBatch(keys, keys, labels, theta_flat[keys])  # users/items unused by the loss
            if per_replica:
                values.extend(spec.pointwise_loss(logits[index, s], _row(batch, s)) for s in range(n_seeds))
            else:  # sum of per-replica means (all batches have equal size)
                values.append(spec.pointwise_loss(logits[index].reshape(-1), _flat(batch)) * n_seeds)
        return torch.stack(values)

    validation_seed_keys = validation_keys.expand(n_seeds, -1)
    for step in range(1, settings.iterations + 1):
        keys = torch.as_tensor(
            np.stack([train_keys[rng.integers(0, train_keys.size, settings.batch_size)] for rng in batch_rngs]),
            device=device,
        )
        replica_keys = keys.repeat(n_specs, 1)
        logits = model.logits(replica_keys // n_items, replica_keys % n_items)
        loss = estimator_losses(keys, logits, per_replica=False).sum()
        if settings.l2 > 0:
            loss = loss + settings.l2 * model.l2_penalty()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss at step {step} (p={power}); lower the learning rate")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % settings.validate_every == 0 or step == settings.iterations:
            with torch.no_grad():
                scores = model.score_matrices().view(len(replica_seeds), -1)[:, validation_keys]
                validation = estimator_losses(validation_seed_keys, scores, per_replica=True)
            improved = validation < best_loss
            if bool(improved.any()):
                best.copy_replicas_from(model, improved)
                best_loss = torch.where(improved, validation, best_loss)
                best_step = torch.where(improved, torch.full_like(best_step, step), best_step)

    fits: list[SemiSyntheticFit] = []
    with torch.no_grad():
        test_logits = best.score_matrices().view(len(replica_seeds), -1)[:, test_keys]
        for index, spec in enumerate(specs):
            for s, seed in enumerate(seeds):
                replica = index * n_seeds + s
                fits.append(
                    SemiSyntheticFit(
                        power=power,
                        estimator=spec.name,
                        clip_min=spec.clip_min if spec.name == "relmf_clipped" else 0.0,
                        seed=seed,
                        test_log_loss=float(F.binary_cross_entropy_with_logits(test_logits[replica], test_labels)),
                        best_step=int(best_step[replica]),
                        model=best.replica(replica) if seed == keep_models_for_seed else None,
                    )
                )
    return fits


def _row(batch: PairBatch, index: int) -> PairBatch:
    return PairBatch(batch.users[index], batch.items[index], batch.labels[index], batch.propensity[index])


def _flat(batch: PairBatch) -> PairBatch:
    return PairBatch(
        batch.users.reshape(-1), batch.items.reshape(-1), batch.labels.reshape(-1), batch.propensity.reshape(-1)
    )
