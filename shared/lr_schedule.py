"""Learning-rate schedules: linear warm-up, then cosine decay, constant, or reduce-on-plateau."""

from __future__ import annotations

import math
from typing import Any


class LearningRateSchedule:
    """LR as a function of the optimizer step, with a plateau factor driven by validation.

    ``lr(step) = base_lr × warmup(step) × decay(step) × plateau_factor`` where warm-up is linear over
    ``warmup_steps`` (from ``warmup_start_factor × base_lr`` at step 0, or one step's share without it),
    decay is cosine to ``min_lr_ratio × base_lr`` at ``total_steps`` (``"cosine"``) or 1
    (``"constant"``/``"plateau"``), and ``plateau_factor`` is multiplied by ``plateau_decay`` each time
    ``plateau_patience`` validations pass without improvement (``"plateau"`` only, as ReduceLROnPlateau).
    Kept as one small object so that its whole state goes into checkpoints for exact resume.
    """

    def __init__(
        self,
        base_lr: float,
        total_steps: int,
        warmup_steps: int = 0,
        kind: str = "cosine",
        min_lr_ratio: float = 0.0,
        plateau_patience: int = 5,
        plateau_decay: float = 0.5,
        select_mode: str = "max",
        warmup_start_factor: float | None = None,
    ) -> None:
        if kind not in ("cosine", "constant", "plateau"):
            raise ValueError(f"schedule must be 'cosine', 'constant' or 'plateau', got {kind!r}")
        self.base_lr = base_lr
        self.total_steps = max(1, total_steps)
        self.warmup_steps = warmup_steps
        self.warmup_start_factor = warmup_start_factor
        self.kind = kind
        self.min_lr_ratio = min_lr_ratio
        self.plateau_patience = plateau_patience
        self.plateau_decay = plateau_decay
        self.select_mode = select_mode
        self.plateau_factor = 1.0
        self.best: float | None = None
        self.bad_validations = 0

    def lr_at(self, step: int) -> float:
        """Learning rate for optimizer step ``step`` (0-based)."""
        if self.warmup_steps > 0 and step < self.warmup_steps:
            if self.warmup_start_factor is not None:
                start = self.warmup_start_factor
                return self.base_lr * (start + (1 - start) * step / self.warmup_steps) * self.plateau_factor
            return self.base_lr * (step + 1) / self.warmup_steps * self.plateau_factor
        if self.kind == "cosine":
            progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
            ratio = self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
            return self.base_lr * ratio * self.plateau_factor
        return self.base_lr * self.plateau_factor

    def on_validation(self, value: float) -> None:
        """Feed a validation metric (plateau schedules lower the LR after ``plateau_patience`` misses)."""
        if self.kind != "plateau":
            return
        improved = self.best is None or (value > self.best if self.select_mode == "max" else value < self.best)
        if improved:
            self.best = value
            self.bad_validations = 0
            return
        self.bad_validations += 1
        if self.bad_validations >= self.plateau_patience:
            self.plateau_factor *= self.plateau_decay
            self.bad_validations = 0

    def state_dict(self) -> dict[str, Any]:
        """Plain values for checkpoints."""
        return {"plateau_factor": self.plateau_factor, "best": self.best, "bad_validations": self.bad_validations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` values."""
        self.plateau_factor = state["plateau_factor"]
        self.best = state["best"]
        self.bad_validations = state["bad_validations"]
