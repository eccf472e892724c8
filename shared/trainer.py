"""One training loop for every domain: contrastive pretraining and supervised fine-tuning alike.

The models it accepts are written down as protocols: a :class:`TrainableModel`'s ``forward(batch)``
returns a dict with ``"loss"``; a :class:`ContrastiveTrainable` also returns its features and computes
the loss from them, and gets gradient accumulation through a feature cache, so the contrastive batch is
the full effective batch. Budgets are in steps or epochs (:func:`resolve_budget`, called before the
config is saved); the optimizer (AdamW or Adam with coupled L2 decay), the selection metric and the
stopping metric are choices. Distribution comes from torch.distributed (launch with ``torchrun`` or
``accelerate launch``); the model is wrapped in DistributedDataParallel.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import shlex
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from shared.checkpoints import (
    CheckpointManager,
    capture_rng_state,
    load_training_state,
    load_weights,
    restore_rng_state,
    save_weights_atomically,
)
from shared.contrastive_loss import ContrastiveLoss
from shared.device import autocast_for, move_to_device, pick_device, resolve_precision
from shared.distributed import DistributedContext, init_distributed, on_main_process
from shared.lr_schedule import LearningRateSchedule
from shared.run_folder import MetricsLog, RunFolder
from shared.user_errors import UserError

MakeBatches = Callable[[int, int], Iterable[Any]]
Validate = Callable[[nn.Module], dict[str, float]]


@dataclass
class TrainerConfig:
    """Settings of the shared training loop."""

    max_steps: int | None = 100
    """Optimizer steps to run (each consumes ``accum_steps`` micro-batches); null when max_epochs sets it."""
    max_epochs: float | None = None
    """Budget in passes over the training data; resolved to max_steps before the config is saved."""
    optimizer: str = "adamw"
    """'adamw' (decoupled weight decay), 'adam' (Adam with L2 decay coupled into the gradient) or 'sgd'
    (plain SGD, L2 decay coupled)."""
    lr: float = 5e-4
    """Peak learning rate (after warm-up)."""
    weight_decay: float = 0.2
    """Weight decay, applied to weight matrices only (not to biases, norms, temperatures) unless
    decay_all_parameters is set."""
    decay_all_parameters: bool = False
    """Decay every trainable parameter, biases and norms included, as an optimizer handed
    ``model.parameters()`` does (AstroM3's official fine-tuning does this)."""
    betas: tuple[float, float] = (0.9, 0.98)
    """Adam(W) betas."""
    eps: float = 1e-6
    """Adam(W) epsilon."""
    warmup_steps: int | None = None
    """Linear warm-up length in optimizer steps (null: 0, or what warmup_epochs sets)."""
    warmup_epochs: float | None = None
    """Warm-up length in epochs; resolved to warmup_steps before the config is saved."""
    warmup_start_factor: float | None = None
    """Fraction of the peak LR at warm-up's first step, ramping linearly to the peak (null: one step's
    share, 1/warmup_steps); e.g. 1e-5 as torch's LinearLR(start_factor=1e-5) in AstroM3's official code."""
    schedule: str = "cosine"
    """LR schedule after warm-up: 'cosine', 'constant' or 'plateau' (reduce on validation plateau)."""
    min_lr_ratio: float = 0.0
    """Cosine floor as a fraction of the peak LR."""
    plateau_patience: int = 5
    """Validations without improvement before a plateau schedule lowers the LR."""
    plateau_decay: float = 0.5
    """Factor applied to the LR at each plateau."""
    accum_steps: int = 1
    """Micro-batches per optimizer step (contrastive models use the feature cache)."""
    grad_clip_norm: float | None = None
    """Clip the global gradient norm to this value (None: no clipping)."""
    precision: str = "auto"
    """'auto' (bf16 autocast on CUDA, fp32 on CPU), 'fp32' or 'bf16'."""
    device: str = "auto"
    """'auto' or a torch device string."""
    checkpoint_every: int | None = None
    """Write a checkpoint every N optimizer steps and at the end (null: 50, or what checkpoint_every_epochs sets)."""
    checkpoint_every_epochs: float | None = None
    """Checkpoint interval in epochs; resolved to checkpoint_every before the config is saved."""
    keep_last: int = 3
    """Number of step checkpoints kept."""
    resume: str | None = None
    """Resume from 'latest' (this run's newest checkpoint) or a checkpoint path; a missing one is an error."""
    log_every: int = 10
    """Write a metrics row (and a log line when not on a terminal) every N steps."""
    validate_every: int | None = None
    """Run validation every N steps (0 or null: only at the end, or what validate_every_epochs sets)."""
    validate_every_epochs: float | None = None
    """Validation interval in epochs; resolved to validate_every before the config is saved."""
    select_metric: str | None = None
    """Validation metric that selects the kept weights (None: the last weights are kept)."""
    select_mode: str = "max"
    """'max' or 'min': direction in which select_metric improves."""
    stop_metric: str | None = None
    """Validation metric for early stopping and the plateau schedule (None: the same as select_metric)."""
    stop_mode: str | None = None
    """'max' or 'min' for stop_metric (None: select_mode when stop_metric is unset, else required)."""
    early_stopping_patience: int = 0
    """Stop after this many validations without improvement of the stopping metric (0: never stop early)."""
    max_nonfinite_steps: int = 5
    """Consecutive non-finite losses/gradients tolerated (each step skipped) before the run stops."""
    seed: int = 0
    """Seed for torch, numpy and Python RNGs (rank is added under torch.distributed)."""
    deterministic: bool = False
    """Ask torch for deterministic algorithms (slower; for exact reproducibility on GPU)."""
    tensorboard: bool = False
    """Also write TensorBoard event files into the run folder."""
    progress_bar: bool = True
    """Show a progress bar with samples/s and ETA (on the main rank)."""
    resume_flag: str = "--trainer.resume"
    """How the command's CLI spells the resume option (used in the printed resume hint)."""


@dataclass
class TrainResult:
    """What a finished (or stopped) training run leaves behind."""

    step: int
    stop_reason: str
    model_path: Path
    best_metric: float | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    nonfinite_skipped: int = 0


class TrainingDiverged(RuntimeError):
    """Too many consecutive non-finite steps; the last good checkpoint is named in the message."""


class TrainingInterrupted(SystemExit):
    """Raised after a SIGINT/SIGTERM once the current step is finished and checkpointed."""


@runtime_checkable
class TrainableModel(Protocol):
    """What the trainer needs of a model: ``forward(batch)`` returns a dict with a scalar ``"loss"``.

    ``"loss_terms"`` (a dict of named scalar terms) may be returned beside ``"loss"``; they are logged.
    """

    def __call__(self, batch: Any) -> dict[str, Any]: ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...


@runtime_checkable
class ContrastiveTrainable(TrainableModel, Protocol):
    """A contrastive model: its loss is a function of the whole batch's features.

    ``forward(batch, features_only=True)`` returns ``{modality: features}`` and
    ``loss_from_features(features, loss_params_grad)`` the loss dict, so that gradient accumulation can
    cache features and the contrastive batch is the full effective batch. The model owns its loss, a
    :class:`~shared.contrastive_loss.ContrastiveLoss`, and the loss owns the temperatures (logged every
    step); ``after_optimizer_step()`` runs after each optimizer step (it clamps them).
    """

    loss: ContrastiveLoss

    def loss_from_features(
        self, features: dict[str, torch.Tensor], loss_params_grad: bool = True
    ) -> dict[str, Any]: ...

    def after_optimizer_step(self) -> None: ...


_EPOCH_BUDGETS = (
    ("max_epochs", "max_steps"),
    ("warmup_epochs", "warmup_steps"),
    ("validate_every_epochs", "validate_every"),
    ("checkpoint_every_epochs", "checkpoint_every"),
)


def resolve_budget(
    config: TrainerConfig, steps_per_epoch: int | None = None, flag_prefix: str = "--trainer."
) -> TrainerConfig:
    """A copy of ``config`` with every epoch-denominated setting turned into optimizer steps.

    Call it before saving the config, so that the saved ``config.yaml`` is exactly what runs. An epoch
    setting fills its step counterpart (``max_epochs`` → ``max_steps``, ``warmup_epochs`` →
    ``warmup_steps``, ``validate_every_epochs`` → ``validate_every``, ``checkpoint_every_epochs`` →
    ``checkpoint_every``); where both are given and disagree, neither silently wins.

    Args:
        config: The trainer settings as the user gave them.
        steps_per_epoch: Optimizer steps in one pass over the training data (None: no epoch settings
            may be used).
        flag_prefix: How the command spells the trainer's flags, for messages.

    Raises:
        UserError: both an epoch setting and its step setting are given and disagree, an epoch setting is
            used where the command cannot count epochs, or no budget is given at all.
    """
    values: dict[str, Any] = {}
    for epoch_field, step_field in _EPOCH_BUDGETS:
        epochs = getattr(config, epoch_field)
        steps = getattr(config, step_field)
        if epochs is None:
            continue
        if steps_per_epoch is None:
            raise UserError(
                f"{flag_prefix}{epoch_field}: this command counts its budget in steps; use {flag_prefix}{step_field}"
            )
        if epochs < 0:
            raise UserError(f"{flag_prefix}{epoch_field}: must be >= 0, got {epochs}")
        derived = (
            math.ceil(epochs * steps_per_epoch) if step_field == "max_steps" else int(round(epochs * steps_per_epoch))
        )
        if step_field != "warmup_steps":
            derived = max(1, derived)
        if steps is not None and steps != derived:
            raise UserError(
                f"{flag_prefix}{step_field} {steps} and {flag_prefix}{epoch_field} {epochs} (= {derived} steps of "
                f"{steps_per_epoch}) both set the same budget: give one and set the other to null"
            )
        values[step_field] = derived
    resolved = dataclasses.replace(config, **values)
    return with_step_defaults(resolved, flag_prefix)


def with_step_defaults(config: TrainerConfig, flag_prefix: str = "--trainer.") -> TrainerConfig:
    """``config`` with unset step settings at their defaults (no warm-up, validate at the end, checkpoint
    every 50 steps); epoch settings are not looked at (see :func:`resolve_budget`).

    Raises:
        UserError: there is no step budget, or it is below 1.
    """
    if config.max_steps is None:
        raise UserError(f"{flag_prefix}max_steps: no training budget; set it or {flag_prefix}max_epochs")
    if config.max_steps < 1:
        raise UserError(f"{flag_prefix}max_steps: must be >= 1, got {config.max_steps}")
    defaults = {"warmup_steps": 0, "validate_every": 0, "checkpoint_every": 50}
    return dataclasses.replace(
        config, **{name: value for name, value in defaults.items() if getattr(config, name) is None}
    )


def parameter_groups(model: nn.Module, weight_decay: float, decay_all: bool = False) -> list[dict[str, Any]]:
    """Optimizer groups: decay on weight matrices; none on biases, norms, embeddings' gains and temperatures
    (``decay_all``: decay on every trainable parameter)."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        exempt = not decay_all and (
            parameter.ndim < 2 or "logit_scale" in name or "logit_bias" in name or ".bn" in name
        )
        (no_decay if exempt else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


OPTIMIZERS = ("adamw", "adam", "sgd")


def build_optimizer(parameters: nn.Module | Iterable[Any], config: TrainerConfig) -> torch.optim.Optimizer:
    """The optimizer ``config.optimizer`` names, at ``config.lr``.

    Given a module, weight decay applies to its weight matrices only, or to every parameter with
    ``config.decay_all_parameters`` (:func:`parameter_groups`); given parameters or groups, to what the caller
    passes. ``"adamw"`` decays decoupled from the gradient,
    ``"adam"`` and ``"sgd"`` add ``weight_decay × w`` to the gradient (coupled L2).
    """
    groups = (
        parameter_groups(parameters, config.weight_decay, config.decay_all_parameters)
        if isinstance(parameters, nn.Module)
        else parameters
    )
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas), eps=config.eps)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr, betas=tuple(config.betas), eps=config.eps)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr)
    raise UserError(f"--trainer.optimizer: must be one of {', '.join(OPTIMIZERS)}, got {config.optimizer!r}")


def check_trainer_config(config: TrainerConfig, flag_prefix: str = "--trainer.") -> None:
    """Refuse settings the trainer cannot run, naming the flag (commands call it before creating a run folder).

    Raises:
        UserError: an unknown optimizer, mode or schedule, a stopping metric without its mode, or a bad count.
    """
    if config.optimizer not in OPTIMIZERS:
        raise UserError(f"{flag_prefix}optimizer: must be one of {', '.join(OPTIMIZERS)}, got {config.optimizer!r}")
    for name, allowed in (("select_mode", ("max", "min")), ("stop_mode", ("max", "min", None))):
        if getattr(config, name) not in allowed:
            raise UserError(f"{flag_prefix}{name}: must be 'max' or 'min', got {getattr(config, name)!r}")
    if config.stop_metric is not None and config.stop_mode is None:
        raise UserError(f"{flag_prefix}stop_mode: required with {flag_prefix}stop_metric ('max' or 'min')")
    if config.schedule not in ("cosine", "constant", "plateau"):
        raise UserError(f"{flag_prefix}schedule: must be 'cosine', 'constant' or 'plateau', got {config.schedule!r}")
    for name in ("accum_steps", "log_every", "keep_last"):
        if getattr(config, name) < 1:
            raise UserError(f"{flag_prefix}{name}: must be >= 1, got {getattr(config, name)}")
    if not config.lr > 0 or not math.isfinite(config.lr):
        raise UserError(f"{flag_prefix}lr: must be a positive number, got {config.lr}")
    if config.warmup_start_factor is not None and not 0 < config.warmup_start_factor <= 1:
        raise UserError(f"{flag_prefix}warmup_start_factor: must be in (0, 1], got {config.warmup_start_factor}")


class BestValue:
    """The best value of a metric seen so far, for model selection and early stopping.

    ``update(value)`` returns whether ``value`` improves on the best (and records it). ``value`` may be a
    float or a tensor of independent values (e.g. one per replica of a batched fit): then the result is an
    element-wise mask and each element keeps its own best.
    """

    def __init__(self, mode: str, best: float | torch.Tensor | None = None) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.mode = mode
        self.best = best

    def improves(self, value: float | torch.Tensor) -> bool | torch.Tensor:
        """Whether ``value`` is better than the best so far (element-wise for tensors); records nothing."""
        if self.best is None:
            return torch.ones_like(value, dtype=torch.bool) if isinstance(value, torch.Tensor) else True
        better = value > self.best if self.mode == "max" else value < self.best
        return better if isinstance(better, torch.Tensor) else bool(better)

    def update(self, value: float | torch.Tensor) -> bool | torch.Tensor:
        """Record ``value`` where it improves; returns the improvement (mask for tensors)."""
        better = self.improves(value)
        if isinstance(value, torch.Tensor):
            self.best = value.clone() if self.best is None else torch.where(better, value, self.best)
        elif better:
            self.best = value
        return better


class NonFiniteGuard:
    """Counts consecutive non-finite steps (each is skipped); past ``max_consecutive`` the run has diverged.

    Args:
        max_consecutive: consecutive non-finite steps tolerated (0: the first one stops the run).
    """

    def __init__(self, max_consecutive: int) -> None:
        self.max_consecutive = max_consecutive
        self.in_a_row = 0
        self.total = 0

    def record(self, finite: bool, step: int, where: str = "") -> None:
        """Record one step's outcome.

        Raises:
            TrainingDiverged: more than ``max_consecutive`` non-finite steps in a row; ``where`` (e.g. the
                last good checkpoint) is added to the message.
        """
        if finite:
            self.in_a_row = 0
            return
        self.in_a_row += 1
        self.total += 1
        if self.in_a_row > self.max_consecutive:
            raise TrainingDiverged(
                f"{self.in_a_row} consecutive non-finite steps at step {step}{'; ' + where if where else ''}. "
                "Lower the learning rate or check the data."
            )


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))  # noqa: NPY002 - seeds code that uses the global RNG
    torch.manual_seed(seed)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def batch_size_of(batch: Any) -> int:
    """Number of samples in a batch (first tensor's leading dimension, or first list's length)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0])
    if isinstance(batch, dict):
        for value in batch.values():
            size = batch_size_of(value)
            if size:
                return size
    if isinstance(batch, (list, tuple)) and batch:
        return batch_size_of(batch[0]) if isinstance(batch[0], (torch.Tensor, dict)) else len(batch)
    return 0


class _StopSignals:
    """Turns the first SIGINT/SIGTERM into a flag checked between steps; a second SIGINT aborts at once."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        if threading_is_main():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum
        print(f"\nReceived {signal.Signals(signum).name}: finishing this step, then saving a checkpoint.", flush=True)


def threading_is_main() -> bool:
    """Signal handlers can only be installed from the main thread."""
    import threading

    return threading.current_thread() is threading.main_thread()


class Trainer:
    """Runs optimizer steps over batches from ``make_batches`` and writes the run folder.

    Args:
        model: returns ``{"loss": ...}`` from ``forward(batch)``; may define ``loss_from_features`` and
            accept ``forward(batch, features_only=True)`` for the accumulation feature cache, and
            ``after_optimizer_step()`` (e.g. temperature clamping).
        config: :class:`TrainerConfig`.
        run_dir: ``runs/<domain>/<run-name>``.
    """

    def __init__(self, model: nn.Module, config: TrainerConfig, run_dir: str | Path) -> None:
        # Epoch settings were turned into steps by the command (resolve_budget) before it saved the config.
        config = with_step_defaults(config)
        check_trainer_config(config)
        if not isinstance(model, TrainableModel):
            raise TypeError(f"{type(model).__name__} is not a TrainableModel (forward(batch) -> {{'loss': ...}})")
        self.config = config
        self.run_dir = Path(run_dir)
        self.context: DistributedContext = init_distributed()
        self.device = pick_device(config.device)
        self.precision = resolve_precision(self.device, config.precision)
        seed_everything(config.seed + self.context.rank)
        if config.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
        self.model = model.to(self.device)
        self.wrapped: nn.Module = self.model
        if self.context.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            # DDP cannot broadcast sparse (COO/CSR) tensors (e.g. a graph's adjacency buffer): they are built the same way
            # on every rank, so DDP leaves them alone.
            sparse = [name for name, tensor in [*self.model.named_parameters(), *self.model.named_buffers()]
                      if tensor.layout != torch.strided]  # fmt: skip
            if sparse:
                nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self.model, sparse)
            if self.device.type == "cuda":
                # Batch statistics over the global batch, as with one process (SyncBatchNorm needs CUDA; on CPU
                # each rank normalises by its own micro-batch).
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            self.wrapped = nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)
        self.optimizer = build_optimizer(self.model, config)
        self.stop_metric = config.stop_metric or config.select_metric
        self.stop_mode = config.stop_mode or config.select_mode
        self.schedule = LearningRateSchedule(
            config.lr,
            config.max_steps,
            config.warmup_steps,
            config.schedule,
            config.min_lr_ratio,
            config.plateau_patience,
            config.plateau_decay,
            self.stop_mode,
            config.warmup_start_factor,
        )
        self.checkpoints = CheckpointManager(self.run_dir / "checkpoints", config.keep_last)
        self.metrics = MetricsLog(self.run_dir, self.context.is_main, config.tensorboard)
        self.uses_feature_cache = isinstance(self.model, ContrastiveTrainable)
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.nonfinite = NonFiniteGuard(config.max_nonfinite_steps)
        self.selection = BestValue(config.select_mode)
        self.stopping = BestValue(self.stop_mode)
        self.validations_without_improvement = 0
        self.history: list[dict[str, float]] = []

    # ----------------------------------------------------------------------------------------- state
    def training_state(self) -> dict[str, Any]:
        """Everything besides the weights needed to continue exactly where the run is."""
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "rng": capture_rng_state(),
            "nonfinite_total": self.nonfinite.total,
            "best_metric": self.selection.best,
            "best_stop_metric": self.stopping.best,
            "validations_without_improvement": self.validations_without_improvement,
            "world_size": self.context.world_size,
        }

    def resume_from(self, path: Path) -> None:
        """Load weights, optimizer, schedule, counters and RNG states from a checkpoint."""
        state = load_training_state(path)
        load_weights(self.model, path.with_suffix(".safetensors"))
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.nonfinite.total = int(state["nonfinite_total"])
        self.selection.best = state["best_metric"]
        self.stopping.best = state.get("best_stop_metric", state["best_metric"])
        self.validations_without_improvement = int(state["validations_without_improvement"])
        # Each rank saved rank 0's RNG; offset keeps ranks' streams distinct as at a fresh start.
        restore_rng_state(state["rng"])
        if self.context.rank:
            torch.manual_seed(torch.initial_seed() + self.context.rank)
        self.metrics.truncate_after(self.step)
        self._print(f"Resumed from {path} at step {self.step} (epoch {self.epoch}, batch {self.batch_in_epoch}).")

    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint on the main rank (all ranks wait for it)."""
        path = None
        if self.context.is_main:
            path = self.checkpoints.save(self.step, self.model, self.training_state())
        if self.context.enabled:
            dist.barrier()
        return path

    # ------------------------------------------------------------------------------------------ steps
    def _forward(self, batch: Any, features_only: bool = False) -> Any:
        with autocast_for(self.device, self.precision):
            if features_only:
                return self.wrapped(batch, features_only=True)
            return self.wrapped(batch)

    def _no_sync(self, last: bool) -> contextlib.AbstractContextManager:
        if self.context.enabled and not last:
            return self.wrapped.no_sync()  # type: ignore[operator]
        return contextlib.nullcontext()

    def _accumulate_with_feature_cache(self, micro_batches: list[Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        count = len(micro_batches)
        with torch.no_grad():
            cached = [self._forward(batch, features_only=True) for batch in micro_batches]
        output: dict[str, Any] = {}
        loss_value = torch.zeros((), device=self.device)
        for index, batch in enumerate(micro_batches):
            last = index == count - 1
            with self._no_sync(last):
                fresh = self._forward(batch, features_only=True)
                spliced = {
                    modality: torch.cat(
                        [fresh[modality] if i == index else cached[i][modality] for i in range(count)], dim=0
                    )
                    for modality in fresh
                }
                with autocast_for(self.device, self.precision):
                    # Temperatures get their gradient once per step (in the synchronized last pass).
                    output = self.model.loss_from_features(spliced, loss_params_grad=last)
                output["loss"].backward()
                loss_value = output["loss"].detach()
        return loss_value, output

    def _accumulate_plain(self, micro_batches: list[Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        count = len(micro_batches)
        total = torch.zeros((), device=self.device)
        output: dict[str, Any] = {}
        for index, batch in enumerate(micro_batches):
            with self._no_sync(index == count - 1):
                output = self._forward(batch)
                (output["loss"] / count).backward()
                total = total + output["loss"].detach() / count
        return total, output

    def accumulate_gradients(self, micro_batches: list[Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """Zero the gradients, then run forward/backward over ``micro_batches`` as one effective batch.

        Contrastive models (with ``loss_from_features``) use the feature cache, so the loss and gradients
        equal those of one batch holding all micro-batches; other models average the micro-batch losses.
        Returns the effective batch's loss (detached) and the last output dict.
        """
        self.wrapped.train()
        micro_batches = [move_to_device(batch, self.device) for batch in micro_batches]
        self.optimizer.zero_grad(set_to_none=True)
        if self.uses_feature_cache and len(micro_batches) > 1:
            return self._accumulate_with_feature_cache(micro_batches)
        return self._accumulate_plain(micro_batches)

    def _optimizer_step(self, micro_batches: list[Any]) -> dict[str, float]:
        for group in self.optimizer.param_groups:
            group["lr"] = self.schedule.lr_at(self.step)
        loss, output = self.accumulate_gradients(micro_batches)
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        max_norm = self.config.grad_clip_norm if self.config.grad_clip_norm else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm) if parameters else torch.zeros(())
        finite = torch.isfinite(loss) & torch.isfinite(grad_norm)
        if self.context.enabled:
            flag = finite.to(torch.float32).reshape(1)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            finite = flag[0] > 0
        if not bool(finite):
            self.optimizer.zero_grad(set_to_none=True)
            return {"loss": float(loss), "nonfinite": 1.0}
        self.optimizer.step()
        values = {"loss": float(loss), "grad_norm": float(grad_norm), "lr": self.schedule.lr_at(self.step)}
        for name, term in (output.get("loss_terms") or {}).items():
            values[f"loss_{name}"] = float(term.detach())
        if self.uses_feature_cache:  # a ContrastiveTrainable: its loss owns the temperatures
            self.model.after_optimizer_step()
            for name, log_scale in self.model.loss.logit_scales.items():
                values[f"logit_scale_{name}"] = float(log_scale.detach().exp())
        return values

    # ----------------------------------------------------------------------------------- validation
    def _validate(self, validate: Validate) -> bool:
        """Run validation; returns True when training should stop early."""
        self.model.eval()

        def run_validation() -> dict[str, float]:
            with torch.no_grad(), autocast_for(self.device, self.precision):
                return {name: float(value) for name, value in validate(self.model).items()}

        # Once, on rank 0 over the whole validation data; every rank gets the same numbers (and decisions).
        results = on_main_process(run_validation, "validation")
        self.model.train()
        self.metrics.write(self.step, self.epoch, "val", results)
        self.history.append({"step": float(self.step), **results})
        self._print(f"validation at step {self.step}: " + ", ".join(f"{k}={v:.4g}" for k, v in results.items()))
        for metric in {self.config.select_metric, self.stop_metric} - {None}:
            if metric not in results:
                raise KeyError(f"metric {metric!r} not among validation results {sorted(results)}")
        if self.config.select_metric is not None:
            if self.selection.update(results[self.config.select_metric]) and self.context.is_main:
                save_weights_atomically(self.model, self.checkpoints.directory / "best.safetensors")
        if self.stop_metric is None:
            return False
        value = results[self.stop_metric]
        self.schedule.on_validation(value)
        if self.stopping.update(value):
            self.validations_without_improvement = 0
            return False
        self.validations_without_improvement += 1
        patience = self.config.early_stopping_patience
        return patience > 0 and self.validations_without_improvement >= patience

    # ----------------------------------------------------------------------------------------- loop
    def _mean_over_ranks(self, value: float) -> float:
        """The mean of ``value`` over ranks: the logged loss is the global batch's, as with one process.

        (Every rank logs at the same steps, so this collective lines up.)
        """
        if not self.context.enabled:
            return value
        total = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return float(total[0]) / self.context.world_size

    def _print(self, message: str) -> None:
        if self.context.is_main:
            print(message, flush=True)

    def _resume_hint(self) -> str:
        argv = [arg for arg in sys.orig_argv]
        if self.config.resume_flag in argv:
            index = argv.index(self.config.resume_flag)
            del argv[index : index + 2]
        return shlex.join([*argv, self.config.resume_flag, "latest"])

    def _batches(self, make_batches: MakeBatches) -> Iterator[Any]:
        """Micro-batches forever, advancing epochs; tracks the position for exact resume."""
        while True:
            produced = False
            for batch in make_batches(self.epoch, self.batch_in_epoch):
                produced = True
                self.batch_in_epoch += 1
                yield batch
            if not produced and self.batch_in_epoch == 0:
                raise RuntimeError(f"the data produced no batch in epoch {self.epoch}: is the dataset empty?")
            self.epoch += 1
            self.batch_in_epoch = 0

    def fit(self, make_batches: MakeBatches, validate: Validate | None = None) -> TrainResult:
        """Train until ``max_steps``, early stopping, divergence or a stop signal.

        Args:
            make_batches: ``make_batches(epoch, start_batch)`` yielding this rank's batches of ``epoch``
                from batch index ``start_batch`` on, the same way on every call.
            validate: ``validate(model) -> {metric: value}``, run under ``no_grad`` in eval mode, once on rank 0
                (which reads the whole data: shard streams do not split there); every rank gets its results.
        """
        config = self.config
        if self.context.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            RunFolder(self.run_dir).clear_finished()
        if config.resume:
            self.resume_from(self.checkpoints.resolve(config.resume))
        stop_reason = "max_steps"
        last_good = self.checkpoints.latest() if self.context.is_main else None
        progress = tqdm(
            total=config.max_steps,
            initial=self.step,
            disable=not (self.context.is_main and config.progress_bar),
            unit="step",
            dynamic_ncols=True,
        )
        started = time.perf_counter()
        samples_since_log = 0
        stream = self._batches(make_batches)
        with _StopSignals() as signals:
            while self.step < config.max_steps:
                micro_batches = []
                epoch_before = self.epoch
                for _ in range(config.accum_steps):
                    micro_batches.append(next(stream))
                    if self.epoch != epoch_before:
                        break
                if self.epoch != epoch_before and len(micro_batches) < config.accum_steps:
                    # An incomplete accumulation group at an epoch's end is dropped (like drop_last).
                    continue
                samples = sum(batch_size_of(batch) for batch in micro_batches) * self.context.world_size
                values = self._optimizer_step(micro_batches)
                finite = not values.pop("nonfinite", 0.0)
                if not finite:
                    self._print(f"step {self.step}: non-finite loss or gradient, step skipped")
                where = f"the last good checkpoint is {last_good}" if last_good else "no checkpoint was written"
                try:
                    self.nonfinite.record(finite, self.step, where)
                except TrainingDiverged:
                    progress.close()
                    raise
                if not finite:
                    continue
                self.step += 1
                samples_since_log += samples
                progress.update(1)
                if self.step % config.log_every == 0 or self.step == config.max_steps:
                    values["loss"] = self._mean_over_ranks(values["loss"])
                    elapsed = max(time.perf_counter() - started, 1e-9)
                    values["samples_per_s"] = samples_since_log / elapsed
                    values["skipped_nonfinite"] = float(self.nonfinite.total)
                    self.metrics.write(self.step, self.epoch, "train", values)
                    progress.set_postfix(loss=f"{values['loss']:.4f}", sps=f"{values['samples_per_s']:.1f}")
                    if progress.disable and self.context.is_main:
                        print(
                            f"step {self.step}/{config.max_steps} loss {values['loss']:.4f} "
                            f"lr {values['lr']:.3g} {values['samples_per_s']:.1f} samples/s",
                            flush=True,
                        )
                    started = time.perf_counter()
                    samples_since_log = 0
                stop_early = False
                if validate is not None and config.validate_every and self.step % config.validate_every == 0:
                    stop_early = self._validate(validate)
                if self.step % config.checkpoint_every == 0:
                    last_good = self.save_checkpoint()
                if stop_early:
                    stop_reason = "early_stopping"
                    break
                if signals.received is not None:
                    break
            progress.close()
            if signals.received is not None:
                self.save_checkpoint()
                self._print(f"Stopped at step {self.step}. Resume with:\n  {self._resume_hint()}")
                raise TrainingInterrupted(128 + signals.received)
        if validate is not None and (not config.validate_every or self.step % config.validate_every != 0):
            if stop_reason != "early_stopping":
                self._validate(validate)
        if self.step % config.checkpoint_every != 0:
            self.save_checkpoint()
        if self.context.enabled:
            dist.barrier()  # best.safetensors is written by the main rank
        best_path = self.checkpoints.directory / "best.safetensors"
        if config.select_metric is not None and best_path.is_file():
            load_weights(self.model, best_path)
        model_path = self.run_dir / "model.safetensors"
        if self.context.is_main:
            save_weights_atomically(self.model, model_path)
        self.metrics.close()
        return TrainResult(
            step=self.step,
            stop_reason=stop_reason,
            model_path=model_path,
            best_metric=self.selection.best,
            history=self.history,
            nonfinite_skipped=self.nonfinite.total,
        )
