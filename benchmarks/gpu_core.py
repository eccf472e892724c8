"""GPU check for the core: a real-size CLIP (ViT-B/16 + text transformer) training step in bf16.

Prints samples/s and peak GPU memory for the shared Trainer's step. Exits with a message where no CUDA
device is present (CI and the development machines have none).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import torch

from benchmarks._report import print_result
from shared.contrastive_model import ContrastiveModel
from shared.towers import create_tower
from shared.trainer import Trainer, TrainerConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_core: no CUDA device here; run benchmarks/gpu_check.sh on a GPU machine")
        sys.exit(0)
    towers = {
        "image": create_tower("open_clip_vision", model_name="ViT-B-16"),
        "text": create_tower("open_clip_text", model_name="ViT-B-16"),
    }
    model = ContrastiveModel(towers, 512, projection="none")
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(model, TrainerConfig(precision="bf16", progress_bar=False), run_dir)
        batch = {
            "image": torch.randn(args.batch_size, 3, 224, 224),
            "text": torch.randint(1, 49407, (args.batch_size, 77)),
        }
        for _ in range(3):
            trainer._optimizer_step([batch])
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for _ in range(args.steps):
            trainer._optimizer_step([batch])
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    samples_per_s = args.batch_size * args.steps / elapsed
    peak_gib = torch.cuda.max_memory_allocated() / 2**30
    print(f"core ViT-B/16 CLIP bf16: {samples_per_s:.1f} samples/s, peak GPU memory {peak_gib:.1f} GiB")
    print_result("gpu_core_vit_b16", "samples_per_s", samples_per_s, 0.0, 0.0, peak_gpu_gib=round(peak_gib, 2))


if __name__ == "__main__":
    main()
