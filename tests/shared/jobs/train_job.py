"""A tiny contrastive training job used by the trainer tests (plain process, torchrun or accelerate launch).

Usage: ``train_job.py RUN_DIR [key=value ...]`` with keys max_steps, accum_steps, batch_size, resume,
checkpoint_every, sleep (seconds per batch, to give a signal time to land), crash_after_batches.
Writes ``RUN_DIR/rank<r>_weights.pt`` (all parameters) and ``RUN_DIR/rank<r>_first_loss.txt``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from shared.contrastive_loss import ContrastiveLoss
from shared.contrastive_model import ContrastiveModel
from shared.data_iteration import TensorDictDataset, batches_from_dataset
from shared.distributed import current_context
from shared.towers import create_tower
from shared.trainer import Trainer, TrainerConfig


class SimulatedCrash(RuntimeError):
    """Stands in for a killed process."""


def build_model(dropout: float = 0.1) -> ContrastiveModel:
    torch.manual_seed(1234)
    towers = {
        "a": create_tower("mlp", in_features=12, hidden=(32, 32), dropout=dropout),
        "b": create_tower("mlp", in_features=10, hidden=(32,), dropout=dropout),
    }
    return ContrastiveModel(towers, embed_dim=16, loss=ContrastiveLoss([("a", "b")], logit_scale_init=10.0))


def build_dataset(size: int = 192) -> TensorDictDataset:
    generator = torch.Generator().manual_seed(7)
    shared_factor = torch.randn(size, 6, generator=generator)
    a = torch.cat([shared_factor, torch.randn(size, 6, generator=generator)], dim=1)
    b = torch.cat(
        [shared_factor @ torch.randn(6, 6, generator=generator), torch.randn(size, 4, generator=generator)], 1
    )
    return TensorDictDataset({"a": a, "b": b})


def main() -> None:
    run_dir = Path(sys.argv[1])
    options = dict(arg.split("=", 1) for arg in sys.argv[2:])
    batch_size = int(options.get("batch_size", 16))
    sleep = float(options.get("sleep", 0))
    crash_after = int(options.get("crash_after_batches", 0))
    config = TrainerConfig(
        max_steps=int(options.get("max_steps", 20)),
        lr=1e-2,
        warmup_steps=3,
        accum_steps=int(options.get("accum_steps", 1)),
        checkpoint_every=int(options.get("checkpoint_every", 4)),
        keep_last=2,
        resume=options.get("resume") or None,
        log_every=1,
        seed=3,
        grad_clip_norm=1.0,
        progress_bar=False,
    )
    model = build_model(float(options.get("dropout", 0.1)))
    trainer = Trainer(model, config, run_dir)
    base = batches_from_dataset(build_dataset(), batch_size, seed=5)
    served = {"count": 0}

    def make_batches(epoch: int, start_batch: int):
        for batch in base(epoch, start_batch):
            served["count"] += 1
            if crash_after and served["count"] > crash_after:
                raise SimulatedCrash("simulated crash")
            if sleep:
                time.sleep(sleep)
            yield batch

    rank = current_context().rank
    first_losses: list[float] = []
    original_step = trainer.accumulate_gradients

    def recording_step(micro_batches):
        loss, output = original_step(micro_batches)
        first_losses.append(float(loss))
        return loss, output

    trainer.accumulate_gradients = recording_step
    try:
        result = trainer.fit(make_batches)
    except SimulatedCrash:
        sys.exit(3)
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, run_dir / f"rank{rank}_weights.pt")
    (run_dir / f"rank{rank}_first_loss.txt").write_text(repr(first_losses[0]))
    print(f"finished at step {result.step}")


if __name__ == "__main__":
    main()
