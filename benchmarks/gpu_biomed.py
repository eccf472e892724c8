"""Full-size BiomedCLIP training step on a GPU: bf16, batch 256, local loss, gradient checkpointing.

Ours: the suite's path (``BiomedClipModel`` = open_clip model + the core ``ContrastiveLoss``,
``shared.device.autocast_for``). Peer: open_clip's own path on the same model (``model(image, text)``
+ ``open_clip.ClipLoss(local_loss=True, gather_with_grad=True)``), same batch, same optimizer. Prints
samples/s, peak GPU memory and MFU (model FLOPs = 3 × forward FLOPs counted by
``torch.utils.flop_counter``, recomputation not counted), then one JSON line. Needs CUDA; exits with a
message otherwise. Runs offline: the architecture comes from ``configs/biomedclip_model.json`` and the
bundled BiomedBERT config (random weights; speed does not depend on them).

    python -m benchmarks.gpu_biomed [--batch-size 256] [--steps 10] [--peak-tflops 989]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

#: Dense bf16 tensor-core peaks in TFLOP/s (vendor data sheets, SXM parts).
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


def peak_tflops(name: str, override: float | None) -> float | None:
    if override:
        return override
    return next((value for key, value in PEAK_BF16_TFLOPS.items() if key in name), None)


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_memory_gib() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")


def reset_peak_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def time_steps(step, steps: int) -> float:
    for _ in range(3):
        step()
    synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256, help="samples per step (default 256)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per side (default 10)")
    parser.add_argument("--context", type=int, default=256, help="tokens per caption (default 256, BiomedCLIP's)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="GPU bf16 dense peak for MFU")
    parser.add_argument("--dry-run-cpu", action="store_true",
                        help="check the script without a GPU: the tiny config on the CPU in fp32, batch 4")  # fmt: skip
    args = parser.parse_args()
    dry = args.dry_run_cpu
    if dry:
        args.batch_size, args.steps, args.context = 4, 1, 16
    elif not torch.cuda.is_available():
        print("gpu_biomed: no CUDA device here; this check runs only on a machine with an NVIDIA GPU.")
        sys.exit(0)

    import open_clip
    from torch.utils.flop_counter import FlopCounterMode

    from domains.biomed.model import build_training_model, load_open_clip_model
    from shared.device import autocast_for

    device = torch.device("cpu" if dry else "cuda")
    precision = "fp32" if dry else "bf16"
    torch.backends.cuda.matmul.allow_tf32 = True
    loaded = load_open_clip_model("tiny" if dry else "biomedclip", pretrained_towers=False, device=device)
    model = build_training_model(loaded, local_loss=True, gather_with_grad=True, grad_checkpointing=True).to(device)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-4,
                                  betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2, fused=not dry)  # fmt: skip
    generator = torch.Generator(device=device).manual_seed(0)
    side = int(loaded.config["model_cfg"]["vision_cfg"]["image_size"])
    images = torch.randn(args.batch_size, 3, side, side, device=device, generator=generator)
    vocab = loaded.model.text.config.vocab_size
    tokens = torch.randint(1000, vocab, (args.batch_size, args.context), device=device, generator=generator)
    batch = {"image": images, "text": tokens}

    def ours() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast_for(device, precision):
            loss = model(batch)["loss"]
        loss.backward()
        optimizer.step()
        model.after_optimizer_step()

    clip = loaded.model
    clip_loss = open_clip.ClipLoss(local_loss=True, gather_with_grad=True)
    clip.logit_scale.requires_grad_(True)

    def peer() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=not dry):
            image_features, text_features, scale = clip(images, tokens)
            loss = clip_loss(image_features, text_features, scale)
        loss.backward()
        optimizer.step()

    with torch.no_grad(), autocast_for(device, precision), FlopCounterMode(display=False) as counter:
        model.compute_features(batch)
    forward_flops = counter.get_total_flops()

    reset_peak_memory()
    ours_seconds = time_steps(ours, args.steps)
    ours_peak_gb = peak_memory_gib()
    reset_peak_memory()
    peer_seconds = time_steps(peer, args.steps)
    peer_peak_gb = peak_memory_gib()

    name = "CPU dry run" if dry else torch.cuda.get_device_name(device)
    peak = peak_tflops(name, args.peak_tflops)
    ours_sps, peer_sps = args.batch_size / ours_seconds, args.batch_size / peer_seconds
    mfu = 3 * forward_flops / ours_seconds / (peak * 1e12) if peak else None
    print(f"{name}: BiomedCLIP {sum(p.numel() for p in clip.parameters()) / 1e6:.1f}M params, batch {args.batch_size}, "
          f"context {args.context}, bf16, grad checkpointing, local loss")  # fmt: skip
    print(
        f"  suite (core loss): {ours_sps:.1f} samples/s, {ours_seconds * 1e3:.0f} ms/step, peak {ours_peak_gb:.1f} GiB"
    )
    print(
        f"  open_clip ClipLoss: {peer_sps:.1f} samples/s, {peer_seconds * 1e3:.0f} ms/step, peak {peer_peak_gb:.1f} GiB"
    )
    print(
        f"  forward {forward_flops / 1e12:.2f} TFLOP/step; MFU "
        + (f"{mfu:.1%} of {peak:.0f} TFLOP/s" if mfu else "n/a (pass --peak-tflops)")
    )
    print(json.dumps({"name": "gpu_biomed", "metric": "samples_per_s", "ours": round(ours_sps, 1),
                      "peer": round(peer_sps, 1), "ratio": round(ours_sps / peer_sps, 3),
                      "peak_gpu_gib": None if ours_peak_gb != ours_peak_gb else round(ours_peak_gb, 2), "mfu": None if mfu is None else round(mfu, 4),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))  # fmt: skip


if __name__ == "__main__":
    main()
