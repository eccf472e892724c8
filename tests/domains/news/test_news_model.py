"""FND-CLIP's equations checked against independent computations, on random features and a tiny BERT."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from domains.news.model import (
    FNDCLIPDims,
    FNDCLIPModel,
    LayerMix,
    ModalityAttention,
    build_layer_mixed_cls_text,
)
from shared.towers import create_tower, list_towers

DIMS = FNDCLIPDims(text_dim=12, num_text_states=3, image_dim=10, clip_dim=8)


def random_batch(n: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "text_layers": torch.randn(n, 3, 12, generator=g),
        "image_features": torch.randn(n, 10, generator=g),
        "clip_text": torch.randn(n, 8, generator=g),
        "clip_image": torch.randn(n, 8, generator=g),
        "label": torch.tensor([0, 1] * (n // 2)),
    }


def test_layer_mix_is_softmax_weighted_sum() -> None:
    mix = LayerMix(3)
    with torch.no_grad():
        mix.logits.copy_(torch.tensor([0.0, 1.0, -2.0]))
    stack = torch.randn(4, 3, 5)
    weights = torch.exp(torch.tensor([0.0, 1.0, -2.0]))
    weights = weights / weights.sum()
    expected = sum(weights[s] * stack[:, s] for s in range(3))
    torch.testing.assert_close(mix(stack), expected)


def test_modality_attention_equation() -> None:
    attention = ModalityAttention(3)
    stacked = torch.randn(5, 3, 64)
    mlp = attention.mlp
    expected = torch.sigmoid(mlp(stacked.mean(-1)) + mlp(stacked.max(-1).values))
    torch.testing.assert_close(attention(stacked), expected)


def test_forward_fuses_weighted_branches_and_uses_cross_entropy() -> None:
    torch.manual_seed(0)
    model = FNDCLIPModel(DIMS).eval()
    batch = random_batch()
    out = model(batch)
    assert out["logits"].shape == (6, 2) and out["attention"].shape == (6, 3)
    torch.testing.assert_close(out["loss"], F.cross_entropy(out["logits"], batch["label"]))
    torch.testing.assert_close(out["similarity"], F.cosine_similarity(batch["clip_text"], batch["clip_image"]))
    # Recompute the three branch features and the fusion by hand.
    mixed = model.text_mix(batch["text_layers"])
    text = model.heads["text"](torch.cat([mixed, batch["clip_text"]], -1))
    image = model.heads["image"](torch.cat([batch["image_features"], batch["clip_image"]], -1))
    cross = model.heads["cross"](torch.cat([batch["clip_text"], batch["clip_image"]], -1))
    scale = model.similarity_scale * out["similarity"] + model.similarity_offset
    stacked = torch.stack([text, image, cross * scale[:, None]], 1)
    weights = model.attention(stacked)
    torch.testing.assert_close(out["attention"], weights)
    torch.testing.assert_close(out["fused"], (stacked * weights[..., None]).sum(1))


def test_similarity_modes_change_only_the_cross_branch_scaling() -> None:
    torch.manual_seed(0)
    affine = FNDCLIPModel(DIMS, similarity="affine").eval()
    with torch.no_grad():
        affine.similarity_scale.fill_(2.0)
        affine.similarity_offset.fill_(0.5)
    s = torch.tensor([0.1, -0.3])
    torch.testing.assert_close(affine.scaled_similarity(s), 2.0 * s + 0.5)
    assert torch.equal(FNDCLIPModel(DIMS, similarity="none").scaled_similarity(s), torch.ones(2))
    standardized = FNDCLIPModel(DIMS, similarity="standardized").train()
    values = torch.tensor([0.2, 0.4, 0.9, -0.1])
    expected = (values - values.mean()) / torch.sqrt(values.var(unbiased=False) + 1e-5)
    torch.testing.assert_close(standardized.scaled_similarity(values), expected)


def test_ablations_drop_branches_and_clip_inputs() -> None:
    text_only = FNDCLIPModel(DIMS, branches=["text"], use_clip_in_unimodal=False)
    assert text_only.branches == ("text",)
    assert text_only.heads["text"].net[0].in_features == 12
    batch = random_batch()
    batch["clip_text"] = batch["clip_text"] * 0 + 123.0  # unused without CLIP: output must not change
    base = random_batch()
    text_only.eval()
    torch.testing.assert_close(text_only(batch)["logits"], text_only(base)["logits"])
    with pytest.raises(ValueError, match="subset"):
        FNDCLIPModel(DIMS, branches=["audio"])
    with pytest.raises(ValueError, match="similarity"):
        FNDCLIPModel(DIMS, similarity="cosine")


def test_learned_scale_and_offset_receive_gradients() -> None:
    model = FNDCLIPModel(DIMS).train()
    model(random_batch(8))["loss"].backward()
    assert model.similarity_scale.grad is not None and model.similarity_scale.grad.abs() > 0
    assert model.text_mix.logits.grad is not None and model.text_mix.logits.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from shared.towers.hf_text import minilm_model_dir

    folder = tmp_path_factory.mktemp("tiny_bert")
    tokenizer = BertTokenizerFast(vocab_file=str(minilm_model_dir() / "vocab.txt"))
    tokenizer.save_pretrained(folder)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return folder


def test_layer_mixed_text_tower_takes_cls_of_every_hidden_state(tiny_bert_dir: Path) -> None:
    assert "layer_mixed_cls_text" in list_towers() and "torchvision_resnet" in list_towers()
    tower = create_tower("layer_mixed_cls_text", path=str(tiny_bert_dir), max_length=16)
    assert tower.output_dim == 16 and tower.num_states == 3
    assert not any(p.requires_grad for p in tower.encoder.parameters())
    tokens = tower.preprocess(["breaking news", "a cat"])
    stack = tower.hidden_cls(tokens)
    hidden = tower.encoder(**tokens, output_hidden_states=True).hidden_states
    torch.testing.assert_close(stack, torch.stack([h[:, 0] for h in hidden], 1))
    torch.testing.assert_close(tower(tokens), stack.mean(1))  # uniform weights at start


def test_resnet_tower_loads_a_state_dict_and_keeps_the_imagenet_fc(tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval()
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    tower = create_tower("torchvision_resnet", depth=18, weights_path=str(tmp_path / "resnet18.pth")).eval()
    assert tower.output_dim == 1000
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(tower(x), reference(x))
    assert build_layer_mixed_cls_text is not None
