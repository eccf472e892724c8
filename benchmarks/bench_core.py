"""Our training step vs open_clip's on the same tiny CLIP, same batches, interleaved in one run.

Ours: ContrastiveModel (open_clip vision + text towers from the registry) + ContrastiveLoss, one optimizer
step of the shared Trainer (forward, loss, backward, gradient-norm and finiteness checks, AdamW, clamp).
Peer: ``open_clip.create_model`` with the same towers, its forward, ``ClipLoss``, backward, AdamW.
Ratio = our samples/s ÷ open_clip's samples/s (goal ≥ 0.95).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import open_clip
import torch
from open_clip.loss import ClipLoss

from benchmarks._report import print_result
from shared.contrastive_model import ContrastiveModel
from shared.towers import create_tower
from shared.trainer import Trainer, TrainerConfig

VISION = {"image_size": 64, "width": 128, "layers": 4, "patch_size": 16, "head_width": 32}
TEXT = {"context_length": 32, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 4}
EMBED_DIM = 128


def build_ours(run_dir: str) -> Trainer:
    towers = {
        "image": create_tower("open_clip_vision", output_dim=EMBED_DIM, vision_cfg=VISION),
        "text": create_tower("open_clip_text", output_dim=EMBED_DIM, text_cfg=TEXT),
    }
    model = ContrastiveModel(towers, EMBED_DIM, projection="none")
    config = TrainerConfig(lr=1e-4, weight_decay=0.2, progress_bar=False, precision="fp32", device="cpu")
    return Trainer(model, config, run_dir)


def build_peer() -> tuple[torch.nn.Module, torch.optim.Optimizer, ClipLoss]:
    model = open_clip.CLIP(EMBED_DIM, VISION, TEXT)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2)
    return model, optimizer, ClipLoss()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=15, help="timed steps per side (after 3 warm-up steps)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = torch.randn(args.batch_size, 3, 64, 64)
    tokens = torch.randint(1, 49407, (args.batch_size, 32))
    batch = {"image": images, "text": tokens}

    with tempfile.TemporaryDirectory() as run_dir:
        ours = build_ours(run_dir)
        peer_model, peer_optimizer, peer_loss = build_peer()
        peer_model.train()

        def our_step() -> None:
            ours._optimizer_step([batch])

        def peer_step() -> None:
            peer_optimizer.zero_grad(set_to_none=True)
            image_features, text_features, logit_scale = peer_model(images, tokens)
            loss = peer_loss(image_features, text_features, logit_scale)
            loss.backward()
            peer_optimizer.step()
            with torch.no_grad():
                peer_model.logit_scale.clamp_(0, 4.6052)

        for _ in range(3):
            our_step()
            peer_step()
        our_times, peer_times = [], []
        for _ in range(args.steps):  # interleaved so that machine noise hits both sides alike
            start = time.perf_counter()
            our_step()
            our_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            peer_step()
            peer_times.append(time.perf_counter() - start)

    ours_sps = args.batch_size / statistics.median(our_times)
    peer_sps = args.batch_size / statistics.median(peer_times)
    print(f"ours {ours_sps:.1f} samples/s, open_clip {peer_sps:.1f} samples/s (median of {args.steps} steps)")
    print_result("core_train_step", "samples_per_s", ours_sps, peer_sps, ours_sps / peer_sps, peer_name="open_clip")


if __name__ == "__main__":
    main()
