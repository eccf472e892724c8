"""Step 4 of the semi-synthetic protocol: the compared models, every (estimator, seed) trained at once.

On a random 90 % of all pairs (10 % validation for model selection): the oracle on ``γ``, the naive model on
``Y``, Rel-MF on ``Y`` with the true ``θ`` (and clipped variants). Test: log loss against ``R`` on every pair
with ``Y = 0``, reported relative to the oracle.

The fits are tiny and many (estimators × seeds × powers), so they train as the replicas of one
:class:`~domains.recsys.mnar.models.ReplicatedPointwiseMF` in one batched loop rather than one trainer run
each. Each replica keeps its own best weights (lowest validation loss), which a single scalar selection
metric cannot express; a non-finite loss stops the loop with the core trainer's :class:`~shared.trainer.TrainingDiverged`
(its :class:`~shared.trainer.NonFiniteGuard`); optimizer and best-value tracking are the core's too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from domains.recsys.mnar.losses import POINTWISE_ESTIMATORS, EstimatorSpec
from domains.recsys.mnar.models import PointwiseMF, ReplicatedPointwiseMF
from domains.recsys.mnar.sampling import PairBatch
from domains.recsys.mnar.semi_synthetic import SemiSyntheticWorld
from shared.trainer import BestValue, NonFiniteGuard, TrainerConfig, build_optimizer


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
        history: ``(step, train_loss, validation_loss)`` at every validation (train loss of that step's batch).
        model: the trained model (kept only when requested).
    """

    power: float
    estimator: str
    clip_min: float
    seed: int
    test_log_loss: float
    best_step: int
    history: list[tuple[int, float, float]] = field(default_factory=list, repr=False)
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
    best_loss = BestValue("min", torch.full((len(replica_seeds),), float("inf"), device=device))
    best_step = torch.full((len(replica_seeds),), settings.iterations, dtype=torch.long, device=device)
    batch_rngs = [np.random.default_rng(seed) for seed in seeds]
    # L2 is part of the loss (the authors' λ‖·‖²), so the optimizer itself does not decay; torch's Adam
    # defaults (betas, eps) as in the authors' code.
    optimizer_settings = TrainerConfig(
        optimizer=settings.optimizer, lr=settings.lr, weight_decay=0.0, betas=(0.9, 0.999), eps=1e-8
    )
    opt = build_optimizer(list(model.parameters()), optimizer_settings)
    nonfinite = NonFiniteGuard(max_consecutive=0)  # one bad step would corrupt every replica: stop at once

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
    histories: list[list[tuple[int, float, float]]] = [[] for _ in replica_seeds]
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
        nonfinite.record(bool(torch.isfinite(loss)), step, f"exposure power p={power:g}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % settings.validate_every == 0 or step == settings.iterations:
            with torch.no_grad():
                scores = model.score_matrices().view(len(replica_seeds), -1)[:, validation_keys]
                validation = estimator_losses(validation_seed_keys, scores, per_replica=True)
                train = estimator_losses(keys, logits.detach(), per_replica=True)
            for replica, (train_value, validation_value) in enumerate(zip(train.tolist(), validation.tolist())):
                histories[replica].append((step, train_value, validation_value))
            improved = best_loss.update(validation)
            if bool(improved.any()):
                best.copy_replicas_from(model, improved)
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
                        history=histories[replica],
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
