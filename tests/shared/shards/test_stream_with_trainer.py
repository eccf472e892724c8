"""ShardStream feeding the core Trainer: a run that crashes mid-shard and resumes sees each sample once,
in the same order, and ends with the same weights as an uninterrupted run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from shared.shard_stream import ShardStream
from shared.trainer import Trainer, TrainerConfig


class SimulatedCrash(RuntimeError):
    """Stands in for a killed process."""


def decode_regression_sample(sample: dict) -> dict:
    """Target = the sample's ``score``; features = its class one-hot (plus the key, for bookkeeping)."""
    metadata = json.loads(sample["json"])
    label = int(sample["cls"])
    return {
        "key": sample["__key__"],
        "x": torch.nn.functional.one_hot(torch.tensor(label), 3).float(),
        "y": torch.tensor(metadata["score"], dtype=torch.float32),
    }


class KeyRecordingRegressor(nn.Module):
    """A linear regressor whose forward returns ``{"loss"}`` and records the sample keys it trained on."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 1)
        self.seen: list[str] = []

    def forward(self, batch: dict) -> dict:
        self.seen.extend(batch["key"])
        prediction = self.linear(batch["x"]).squeeze(-1)
        return {"loss": torch.mean((prediction - batch["y"]) ** 2)}


def trainer_config(**overrides: object) -> TrainerConfig:
    values = dict(
        max_steps=12,
        lr=1e-2,
        warmup_steps=0,
        checkpoint_every=5,
        keep_last=2,
        log_every=1,
        seed=7,
        device="cpu",
        progress_bar=False,
    )
    values.update(overrides)
    return TrainerConfig(**values)


def train(run_dir: Path, shard_dir: Path, crash_after_batches: int = 0, **overrides: object):
    """Trains on a fresh stream; returns the model (weights + the keys it saw in this process)."""
    torch.manual_seed(0)
    model = KeyRecordingRegressor()
    stream = ShardStream(str(shard_dir), decode_regression_sample, batch_size=5, shuffle_buffer=8, seed=4)
    served = {"count": 0}

    def make_batches(epoch: int, start_batch: int):
        for batch in stream.batches(epoch, start_batch):
            served["count"] += 1
            if crash_after_batches and served["count"] > crash_after_batches:
                raise SimulatedCrash("simulated crash")
            yield batch

    Trainer(model, trainer_config(**overrides), run_dir).fit(make_batches)
    return model


def test_crash_mid_shard_and_resume_matches_an_uninterrupted_run(write_shards_fn, tmp_path):
    shard_dir = tmp_path / "shards"
    write_shards_fn(shard_dir, num_samples=38, per_shard=7, with_image=False)  # 8 batches per epoch

    straight = train(tmp_path / "straight", shard_dir)
    with pytest.raises(SimulatedCrash):
        # Crashes while taking batch 8 (samples 36-40 of epoch 0); the last checkpoint is step 5.
        train(tmp_path / "interrupted", shard_dir, crash_after_batches=7)
    resumed = train(tmp_path / "interrupted", shard_dir, resume="latest")

    # Steps 1-5 were checkpointed; the resumed process trains steps 6-12, starting mid-epoch.
    assert resumed.seen == straight.seen[5 * 5 :]
    # Epoch 0 is 7 batches of 5 and one of 3 (every sample once), then 4 batches of epoch 1.
    assert len(straight.seen) == 38 + 4 * 5
    assert sorted(straight.seen[:38]) == [f"sample{index:05d}" for index in range(38)]
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, rtol=0, atol=0)
