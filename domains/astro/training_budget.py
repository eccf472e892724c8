"""Training budgets in epochs for the astro commands, resolved into trainer steps before a config is saved.

AstroM3 counts its budgets in passes over the training split: the presets set the trainer's
``max_epochs``/``warmup_epochs``/``validate_every_epochs``/``checkpoint_every_epochs`` (and ``max_steps:
null``). :func:`resolve_epoch_budget` turns them into steps with :func:`shared.trainer.resolve_budget`,
which refuses a step setting that contradicts its epoch setting, naming both flags.
"""

from __future__ import annotations

import dataclasses

from shared.distributed import launched_world_size
from shared.trainer import TrainerConfig, resolve_budget
from shared.user_errors import UserError


def with_epoch_budget(
    trainer: TrainerConfig, max_epochs: float, warmup_epochs: float = 0.0, evaluate_every_epochs: float = 1.0
) -> TrainerConfig:
    """A copy of ``trainer`` budgeted in epochs: validation and checkpoints every ``evaluate_every_epochs``.

    The step settings the epochs replace are set to null, so that :func:`resolve_epoch_budget` fills them.
    """
    return dataclasses.replace(
        trainer,
        max_steps=None,
        max_epochs=max_epochs,
        warmup_steps=None,
        warmup_epochs=warmup_epochs,
        validate_every=None,
        validate_every_epochs=evaluate_every_epochs,
        checkpoint_every=None,
        checkpoint_every_epochs=evaluate_every_epochs,
    )


def steps_per_epoch(n_train: int, batch_size: int, accum_steps: int = 1) -> int:
    """Optimizer steps in one pass over ``n_train`` objects (incomplete batches are dropped).

    Raises:
        UserError: the batch size is not positive, or the split holds less than one optimizer step.
    """
    if batch_size < 1:
        raise UserError(f"--batch_size: must be >= 1, got {batch_size}")
    steps = n_train // (batch_size * accum_steps)
    if steps < 1:
        raise UserError(
            f"--batch_size {batch_size}: the training split has {n_train} objects, fewer than one batch of "
            f"{batch_size} x {accum_steps} (--trainer.accum_steps); lower --batch_size"
        )
    return steps


def resolve_epoch_budget(
    trainer: TrainerConfig, n_train: int, batch_size: int, min_steps: int = 0, flag_prefix: str = "--trainer."
) -> TrainerConfig:
    """``trainer`` with its epoch settings turned into steps for a split of ``n_train`` objects.

    Args:
        trainer: The trainer settings as given.
        n_train: Objects in the training split.
        batch_size: Objects per micro-batch.
        min_steps: Floor on the steps an epoch budget (``max_epochs``) gives; when the epochs give fewer,
            the budget becomes ``min_steps`` steps (``max_steps: min_steps``, ``max_epochs: null`` in the
            resolved config). A budget given in steps is never changed.
        flag_prefix: How the command spells the trainer's flags, for messages.

    Raises:
        UserError: a step setting contradicts its epoch setting, or the split holds less than one step.
    """
    # batch_size is per process: under torchrun an epoch takes batch_size x world size objects per step.
    per_epoch = steps_per_epoch(n_train, batch_size * launched_world_size(), trainer.accum_steps)
    resolved = resolve_budget(trainer, per_epoch, flag_prefix=flag_prefix)
    if trainer.max_epochs is not None and resolved.max_steps is not None and resolved.max_steps < min_steps:
        resolved = dataclasses.replace(resolved, max_steps=min_steps, max_epochs=None)
    return resolved
