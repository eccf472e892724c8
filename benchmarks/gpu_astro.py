"""Paper-size AstroM3 (15.9M parameters) CLIP training at batch 512 on a CUDA GPU: samples/s and memory.

Trains the full trimodal model (Informer with ProbSparse attention, GalSpecNet, metadata MLP, three CLIP
terms) on random inputs of the documented shapes in bf16 autocast through the shared device helpers, and
the same model with full attention as the peer, alternating steps. Prints one JSON line:
``ours``/``peer`` = training samples per second, ``peak_gpu_mem_gb`` = peak allocated memory of ours.

    python -m benchmarks.gpu_astro                      # on a CUDA machine (called by gpu_check.sh)
    python -m benchmarks.gpu_astro --device cpu --batch-size 8 --steps 1   # smoke run anywhere
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from domains.astro.model import AstroModelConfig, PhotometryTowerConfig, build_astrom3_model
from shared.device import autocast_for, move_to_device, pick_device


def random_batch(batch_size: int, device: torch.device, n_valid: int = 150) -> dict:
    """Inputs of the documented shapes; light curves padded after ``n_valid`` of 200 steps."""
    mask = torch.zeros(batch_size, 200, dtype=torch.bool)
    mask[:, :n_valid] = True
    batch = {
        "photometry": {"values": torch.randn(batch_size, 200, 9) * mask[..., None], "mask": mask},
        "spectra": torch.randn(batch_size, 3, 2575),
        "metadata": torch.randn(batch_size, 34),
    }
    return move_to_device(batch, device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and print the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=512, help="objects per CLIP batch (paper: 512)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per model (after 3 warm-up steps)")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA when available) or a torch device")
    parser.add_argument("--padding-mask", action="store_true", help="use the padding-aware attention mask")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    torch.manual_seed(0)
    models = {}
    for name, attention in (("ours", "prob"), ("peer", "full")):
        config = AstroModelConfig(
            photometry=PhotometryTowerConfig(attention=attention, use_padding_mask=args.padding_mask)
        )
        model = build_astrom3_model(config).to(device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.0039210, betas=(0.92619, 0.999))
        models[name] = (model, optimizer)
    batch = random_batch(args.batch_size, device)
    seconds: dict[str, list[float]] = {"ours": [], "peer": []}
    peak_bytes = 0
    for step in range(args.steps + 3):
        for name, (model, optimizer) in models.items():
            if device.type == "cuda" and name == "ours":
                torch.cuda.reset_peak_memory_stats(device)
            synchronize(device)
            started = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            with autocast_for(device):
                loss = model(batch)["loss"]
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 45.0)
            optimizer.step()
            model.after_optimizer_step()
            synchronize(device)
            if step >= 3:
                seconds[name].append(time.perf_counter() - started)
            if name == "ours":
                final_loss = float(loss.detach())
            if device.type == "cuda" and name == "ours":
                peak_bytes = max(peak_bytes, torch.cuda.max_memory_allocated(device))
            if not torch.isfinite(loss):
                raise RuntimeError(f"{name}: non-finite loss at step {step}")
    rates = {name: args.batch_size * len(times) / sum(times) for name, times in seconds.items()}
    n_parameters = sum(p.numel() for p in models["ours"][0].parameters())
    result = {
        "name": "astro_astrom3_paper_size_clip_training",
        "metric": "samples_per_s",
        "ours": round(rates["ours"], 1),
        "peer": round(rates["peer"], 1),
        "ratio": round(rates["ours"] / rates["peer"], 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_gpu_mem_gb": round(peak_bytes / 2**30, 2),
        "peer_name": "same AstroM3 with full attention instead of ProbSparse",
        "parameters_m": round(n_parameters / 1e6, 2),
        "batch_size": args.batch_size,
        "padding_mask": args.padding_mask,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
        "precision": "bf16 autocast" if device.type == "cuda" else "fp32",
        "final_loss_ours": round(final_loss, 4),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
