"""The core's distributed patterns under torchrun (2 CPU processes) and their single-process arithmetic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from shared.distributed import DistributedContext, rank_slice
from shared.shard_stream import ShardStream, _nth_of_each_group
from shared.shards import ShardWriter

JOB = Path(__file__).parent / "jobs" / "core_job.py"
SAMPLES = 23  # one shard: fewer shards than ranks, and not a multiple of the world size


def write_one_shard(folder: Path) -> Path:
    with ShardWriter(folder, prefix="n", max_samples=100) as writer:
        for index in range(SAMPLES):
            writer.write({"__key__": f"s{index:03d}", "txt": str(index)})
    return folder


def decode(sample: dict) -> dict:
    return {"index": int(sample["txt"].decode())}


def test_rank_slices_cover_every_item_once_in_order() -> None:
    for count in (0, 1, 5, 11):
        for world in (1, 2, 3, 4):
            parts = [rank_slice(count, DistributedContext(rank, world)) for rank in range(world)]
            assert [i for part in parts for i in part] == list(range(count))
            assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 1


def test_sample_split_groups() -> None:
    samples = list(range(7))
    assert list(_nth_of_each_group(samples, 2, 0, complete_only=True)) == [0, 2, 4]
    assert list(_nth_of_each_group(samples, 2, 1, complete_only=True)) == [1, 3, 5]
    assert list(_nth_of_each_group(samples, 2, 0, complete_only=False)) == [0, 2, 4, 6]
    assert list(_nth_of_each_group(samples, 2, 1, complete_only=False)) == [1, 3, 5]


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_core_patterns_under_a_launcher(tmp_path: Path, dist: types.ModuleType, launcher: str) -> None:
    shards = write_one_shard(tmp_path / "shards")
    out = tmp_path / "out"
    out.mkdir()
    if launcher == "torchrun":
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--rdzv_backend", "c10d",
                   "--rdzv_endpoint", f"127.0.0.1:{dist.free_port()}", str(JOB), str(out), str(shards)]  # fmt: skip
    else:  # the config file the README names, with no other flag than a free port
        command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(dist.ACCELERATE_CPU_CONFIG),
                   "--main_process_port", str(dist.free_port()), str(JOB), str(out), str(shards)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(dist.REPO_ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    rank0, rank1 = (json.loads((out / f"rank{rank}.json").read_text()) for rank in (0, 1))

    assert rank0["prepared_by"] == rank1["prepared_by"] == "made by rank 0"
    assert rank0["failure"] == "ValueError: disk full"
    assert rank1["failure"].startswith("MainProcessFailed: rank 0 failed during a failing preparation")
    assert rank0["evaluated"] == rank1["evaluated"] == {"world_inside": 1, "value": 0.25}
    assert (rank0["evaluate_calls"], rank1["evaluate_calls"]) == (1, 0)

    assert sorted(rank0["encoded_here"] + rank1["encoded_here"]) == list(range(11))  # each item once
    assert not set(rank0["encoded_here"]) & set(rank1["encoded_here"])
    assert rank0["results"] == [[float(i), float(i) ** 2] for i in range(11)] and rank1["results"] is None

    # One process with batch 8 sees, batch for batch, the union of the two ranks' batches of 4.
    single = ShardStream(str(shards), decode, batch_size=8, seed=3, shuffle_buffer=8, drop_last=True)
    single_batches = [batch["index"].tolist() for batch in single.batches(0)]
    assert len(rank0["train_batches"]) == len(rank1["train_batches"]) == len(single_batches) == 2
    for mine, theirs, whole in zip(rank0["train_batches"], rank1["train_batches"], single_batches):
        assert sorted(mine + theirs) == sorted(whole)
    # A single pass (evaluation, embedding) splits every sample exactly once; node_split="none" reads all.
    assert sorted(rank0["single_pass"] + rank1["single_pass"]) == list(range(SAMPLES))
    assert sorted(rank0["everything"]) == sorted(rank1["everything"]) == list(range(SAMPLES))
