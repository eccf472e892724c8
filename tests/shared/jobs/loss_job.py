"""Run under torchrun (2 processes, gloo): compare our loss with open_clip's on each rank's slice."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from open_clip.loss import ClipLoss, SigLipLoss

from shared.contrastive_loss import ContrastiveLoss
from shared.distributed import init_distributed


def main() -> None:
    out_dir = Path(sys.argv[1])
    context = init_distributed("gloo")
    generator = torch.Generator().manual_seed(0)
    n_local, dim = 8, 16
    image_all = F.normalize(torch.randn(n_local * 2, dim, generator=generator, dtype=torch.float64), dim=-1)
    text_all = F.normalize(image_all + torch.randn(n_local * 2, dim, generator=generator, dtype=torch.float64), dim=-1)
    rows = slice(context.rank * n_local, (context.rank + 1) * n_local)
    scale = 1 / 0.07
    result: dict[str, float] = {}
    for name, local_loss in (("clip_local", True), ("clip_global", False)):
        image = image_all[rows].clone().requires_grad_()
        text = text_all[rows].clone().requires_grad_()
        ours = ContrastiveLoss([("image", "text")], logit_scale_init=scale, local_loss=local_loss).double()
        loss = ours({"image": image, "text": text})["loss"]
        ours_grads = torch.autograd.grad(loss, [image, text])
        image_ref = image_all[rows].clone().requires_grad_()
        text_ref = text_all[rows].clone().requires_grad_()
        reference_loss = ClipLoss(
            local_loss=local_loss, gather_with_grad=True, rank=context.rank, world_size=context.world_size
        )
        reference = reference_loss(image_ref, text_ref, torch.tensor(scale, dtype=torch.float64))
        reference_grads = torch.autograd.grad(reference, [image_ref, text_ref])
        result[f"{name}_ours"] = loss.item()
        result[f"{name}_open_clip"] = reference.item()
        difference = max((a - b).abs().max().item() for a, b in zip(ours_grads, reference_grads))
        result["grad_max_abs_difference"] = max(result.get("grad_max_abs_difference", 0.0), difference)

    siglip = ContrastiveLoss([("image", "text")], kind="siglip", logit_scale_init=10.0).double()
    result["siglip_ours"] = siglip({"image": image_all[rows], "text": text_all[rows]})["loss"].item()
    reference_siglip = SigLipLoss(rank=context.rank, world_size=context.world_size, dist_impl="gather")
    result["siglip_open_clip"] = reference_siglip(
        image_all[rows],
        text_all[rows],
        torch.tensor(10.0, dtype=torch.float64),
        torch.tensor(-10.0, dtype=torch.float64),
    ).item()

    dist.barrier()
    dist.destroy_process_group()
    # Single-process references over the same global batch (no process group any more).
    single = ContrastiveLoss([("image", "text")], logit_scale_init=scale).double()
    result["single_process_clip"] = single({"image": image_all, "text": text_all})["loss"].item()
    single_siglip = ContrastiveLoss([("image", "text")], kind="siglip", logit_scale_init=10.0).double()
    # SigLIP normalizes by the local batch: the global loss equals the mean of the per-rank losses.
    result["single_process_siglip"] = single_siglip({"image": image_all, "text": text_all})["loss"].item()
    (out_dir / f"rank{context.rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
