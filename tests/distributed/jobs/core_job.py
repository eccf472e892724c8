"""Run under torchrun (2 processes, gloo): the core's distributed patterns, one JSON report per rank.

Usage: ``core_job.py OUT_DIR SHARD_DIR``. Writes ``OUT_DIR/rank<r>.json``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from shared.distributed import (
    MainProcessFailed,
    current_context,
    encode_across_ranks,
    ensure_process_group,
    main_process_first,
    on_main_process,
)
from shared.shard_stream import ShardStream


def decode(sample: dict) -> dict:
    return {"index": int(sample["txt"].decode())}


def main() -> None:
    out_dir, shard_dir = Path(sys.argv[1]), sys.argv[2]
    context = ensure_process_group()
    report: dict = {"rank": context.rank, "world_size": context.world_size}

    # main_process_first: rank 0 writes a file (slowly); rank 1 runs the block afterwards and finds it.
    marker = out_dir / "prepared.txt"
    with main_process_first("test preparation"):
        if not marker.exists():
            time.sleep(0.5)
            marker.write_text(f"made by rank {context.rank}")
    report["prepared_by"] = marker.read_text()

    # A failure on rank 0 stops the other ranks with a message instead of a hang.
    try:
        with main_process_first("a failing preparation"):
            if context.rank == 0:
                raise ValueError("disk full")
        report["failure"] = "none"
    except MainProcessFailed as error:
        report["failure"] = f"MainProcessFailed: {error}"
    except ValueError as error:
        report["failure"] = f"ValueError: {error}"

    # on_main_process: computed once, alone (world size 1 inside), the same result everywhere.
    calls = []

    def evaluate() -> dict:
        calls.append(1)
        return {"world_inside": current_context().world_size, "value": 0.25}

    report["evaluated"] = on_main_process(evaluate)
    report["evaluate_calls"] = len(calls)

    # encode_across_ranks: each item encoded by exactly one rank; rank 0 gets all results in order.
    items = list(range(11))
    encoded_here: list[int] = []

    def encode(part: list[int]) -> list[torch.Tensor]:
        encoded_here.extend(part)
        return [torch.tensor([float(item), float(item) ** 2]) for item in part]

    results = encode_across_ranks(items, encode)
    report["encoded_here"] = encoded_here
    report["results"] = None if results is None else [result.tolist() for result in results]

    # A one-shard stream under two ranks: split by sample; training (drop_last) and single-pass views.
    train = ShardStream(shard_dir, decode, batch_size=4, seed=3, shuffle_buffer=8, drop_last=True)
    report["train_batches"] = [batch["index"].tolist() for batch in train.batches(0)]
    single_pass = ShardStream(shard_dir, decode, batch_size=4, shuffle_buffer=0, drop_last=False)
    report["single_pass"] = [i for batch in single_pass.batches(0) for i in batch["index"].tolist()]
    everything = ShardStream(shard_dir, decode, batch_size=4, shuffle_buffer=0, node_split="none")
    report["everything"] = [i for batch in everything.batches(0) for i in batch["index"].tolist()]
    (out_dir / f"rank{context.rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
