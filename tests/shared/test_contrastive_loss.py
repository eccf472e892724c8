"""The contrastive loss equals open_clip's ClipLoss / SigLipLoss for one pair, and behaves for n pairs."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss, SigLipLoss

from shared.contrastive_loss import ContrastiveLoss

HERE = Path(__file__).parent


def unit_features(seed: int, n: int = 16, d: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    image = F.normalize(torch.randn(n, d, generator=generator, dtype=torch.float64), dim=-1)
    text = F.normalize(image + 0.5 * torch.randn(n, d, generator=generator, dtype=torch.float64), dim=-1)
    return image.requires_grad_(), text.requires_grad_()


@pytest.mark.parametrize("scale", [1.0, 1 / 0.07, 100.0])
def test_clip_loss_equals_open_clip_value_and_gradients(scale: float) -> None:
    image, text = unit_features(0)
    ours = ContrastiveLoss([("image", "text")], kind="clip", logit_scale_init=scale).double()
    loss = ours({"image": image, "text": text})["loss"]
    grads = torch.autograd.grad(loss, [image, text])

    image_ref, text_ref = (t.detach().clone().requires_grad_() for t in (image, text))
    reference = ClipLoss()(image_ref, text_ref, torch.tensor(scale, dtype=torch.float64))
    grads_ref = torch.autograd.grad(reference, [image_ref, text_ref])

    assert abs(loss.item() - reference.item()) < 1e-6
    for mine, theirs in zip(grads, grads_ref):
        assert torch.allclose(mine, theirs, atol=1e-8)


def test_siglip_loss_equals_open_clip() -> None:
    image, text = unit_features(1)
    ours = ContrastiveLoss([("image", "text")], kind="siglip", logit_scale_init=10.0, logit_bias_init=-10.0).double()
    loss = ours({"image": image, "text": text})["loss"]
    reference = SigLipLoss()(
        image.detach(), text.detach(), torch.tensor(10.0, dtype=torch.float64), torch.tensor(-10.0, dtype=torch.float64)
    )
    assert abs(loss.item() - reference.item()) < 1e-6


def test_independent_clip_formula_for_three_pairs_with_weights() -> None:
    generator = torch.Generator().manual_seed(2)
    embeddings = {m: F.normalize(torch.randn(8, 16, generator=generator), dim=-1) for m in ("p", "s", "m")}
    pairs = [("p", "s"), ("p", "m"), ("s", "m")]
    weights = [1.0, 0.5, 2.0]
    loss = ContrastiveLoss(pairs, logit_scale_init=20.0, pair_weights=weights)(embeddings)
    expected = 0.0
    for (a, b), weight in zip(pairs, weights):
        logits = 20.0 * embeddings[a] @ embeddings[b].T
        # Hand-written cross entropy: −log softmax of the diagonal, both directions.
        row = -(logits.diag() - torch.logsumexp(logits, dim=1)).mean()
        col = -(logits.diag() - torch.logsumexp(logits, dim=0)).mean()
        expected += weight * (row + col) / 2
    assert torch.allclose(loss["loss"], torch.as_tensor(expected), atol=1e-5)
    assert set(loss["terms"]) == {"p-s", "p-m", "s-m"}


def test_temperatures_are_learnable_per_pair_and_clamped() -> None:
    loss = ContrastiveLoss([("a", "b"), ("a", "c")], logit_scale_init=50.0, logit_scale_min=1.0, logit_scale_max=100.0)
    assert len(list(loss.parameters())) == 2
    with torch.no_grad():
        loss.logit_scales["a-b"].fill_(math.log(1000.0))
        loss.logit_scales["a-c"].fill_(math.log(0.01))
    loss.clamp_logit_scales()
    assert loss.scale(("a", "b")).item() == pytest.approx(100.0)
    assert loss.scale(("a", "c")).item() == pytest.approx(1.0)


def test_bad_configurations_are_rejected() -> None:
    with pytest.raises(ValueError, match="two different modalities"):
        ContrastiveLoss([("a", "a")])
    with pytest.raises(ValueError, match="clamp range"):
        ContrastiveLoss([("a", "b")], logit_scale_init=500.0)
    with pytest.raises(KeyError, match="lack modalities"):
        ContrastiveLoss([("a", "b")])({"a": torch.zeros(2, 3)})


@pytest.mark.slow
def test_two_process_gloo_matches_open_clip_and_single_process(tmp_path: Path) -> None:
    """torchrun with 2 CPU processes: per-rank equality with open_clip and global equality with 1 process."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(HERE / "jobs" / "loss_job.py"),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for rank in ranks:
        for kind in ("clip_local", "clip_global", "siglip"):
            assert abs(rank[f"{kind}_ours"] - rank[f"{kind}_open_clip"]) < 1e-6, (kind, rank)
        assert rank["grad_max_abs_difference"] < 1e-8
    # With local loss, the mean of the ranks' losses is the loss over the global batch in one process.
    mean_local = (ranks[0]["clip_local_ours"] + ranks[1]["clip_local_ours"]) / 2
    assert abs(mean_local - ranks[0]["single_process_clip"]) < 1e-6
    assert abs(ranks[0]["clip_global_ours"] - ranks[0]["single_process_clip"]) < 1e-6
    siglip_total = ranks[0]["siglip_ours"] + ranks[1]["siglip_ours"]
    assert abs(siglip_total / 2 - ranks[0]["single_process_siglip"]) < 1e-6
