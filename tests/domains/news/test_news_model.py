"""FND-CLIP's equations checked against independent computations, on random features and a tiny BERT."""

from __future__ import annotations

import math
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


def official_layer_mix(all_hidden_states: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """The official network.py lines, on a list of S hidden states (B, L, H) each, as the paper's code does."""
    s, (b, _, h) = len(all_hidden_states), all_hidden_states[0].shape
    ht_cls = torch.cat(all_hidden_states)[:, :1, :].view(s, b, 1, h)
    atten = torch.sum(ht_cls * weights.view(s, 1, 1, 1), dim=[1, 3])
    atten = F.softmax(atten.view(-1), dim=0)
    return torch.sum(ht_cls * atten.view(s, 1, 1, 1), dim=[0, 2])


def test_layer_mix_weights_depend_on_the_batch_by_hand() -> None:
    mix = LayerMix(2)
    with torch.no_grad():
        mix.weights.copy_(torch.tensor([[0.5], [0.25]]))
    # two posts, two states, H = 2: state sums over batch and hidden = 1+2+3+4 = 10 and 0+1+0+1 = 2
    stack = torch.tensor([[[1.0, 2.0], [0.0, 1.0]], [[3.0, 4.0], [0.0, 1.0]]])
    # a = (0.5·10, 0.25·2) = (5, 0.5); softmax → e^5/(e^5+e^0.5), e^0.5/(e^5+e^0.5)
    first = math.exp(5.0) / (math.exp(5.0) + math.exp(0.5))
    expected = torch.tensor([[first * 1 + (1 - first) * 0, first * 2 + (1 - first) * 1]])
    expected = torch.cat([expected, torch.tensor([[first * 3, first * 4 + (1 - first) * 1]])])
    torch.testing.assert_close(mix(stack), expected)
    # the same post scored alone gets other weights: the mix depends on the batch, as published
    alone = mix(stack[:1])
    a = torch.tensor([0.5 * 3.0, 0.25 * 1.0]).softmax(0)
    torch.testing.assert_close(alone, (a[0] * stack[0, 0] + a[1] * stack[0, 1])[None])
    assert not torch.allclose(alone, mix(stack)[:1])


def test_layer_mix_equals_the_official_code_on_13_states() -> None:
    torch.manual_seed(0)
    mix = LayerMix(13)
    assert mix.weights.shape == (13, 1) and bool(((mix.weights >= 0) & (mix.weights < 1)).all())
    hidden = [torch.randn(4, 7, 16) * 0.1 for _ in range(13)]
    stack = torch.stack([h[:, 0] for h in hidden], dim=1)
    torch.testing.assert_close(mix(stack), official_layer_mix(hidden, mix.weights.detach()))


def test_similarity_affine_starts_uniform_in_unit_interval_like_the_official_code() -> None:
    starts = []
    for seed in range(3):
        torch.manual_seed(seed)
        model = FNDCLIPModel(DIMS)
        w, b = model.similarity_scale.item(), model.similarity_offset.item()
        assert 0.0 <= w < 1.0 and 0.0 <= b < 1.0
        starts.append((w, b))
    assert len(set(starts)) == 3  # drawn from the seed (torch.rand), not a fixed (1, 0)


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
    assert model.text_mix.weights.grad is not None and model.text_mix.weights.grad.abs().sum() > 0


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
    torch.testing.assert_close(tower(tokens), tower.mixer(stack))


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


def test_paper_image_tower_is_a_trainable_resnet101_with_the_1000_way_output_on_clip_inputs() -> None:
    from PIL import Image

    from domains.news.model import CLIP_MEAN

    tower = create_tower("torchvision_resnet", depth=101)  # the architecture builds offline; weights by path
    assert tower.output_dim == 1000 and sum(p.numel() for p in tower.parameters()) > 44_000_000
    assert all(p.requires_grad for p in tower.parameters())
    pixels = tower.preprocess(Image.new("RGB", (300, 200), (255, 255, 255)))
    assert pixels.shape == (3, 224, 224)  # CLIP's preprocessing, as the official code feeds its ResNet
    torch.testing.assert_close(pixels[0, 0, 0], torch.tensor((1.0 - CLIP_MEAN[0]) / 0.26862954))


def test_paper_text_encoder_is_bert_base_with_13_states_of_768_over_300_tokens() -> None:
    import yaml
    from transformers import BertModel

    from domains.news.model import bert_base_chinese_config

    preset = yaml.safe_load(Path("domains/news/configs/paper.yaml").read_text())
    assert preset["encoders"]["text_max_length"] == 300 and preset["encoders"]["train_image_tower"] is True
    assert preset["encoders"]["image_tower_args"]["depth"] == 101
    torch.manual_seed(0)
    bert = BertModel(bert_base_chinese_config()).eval()  # builds offline; the preset loads weights by path
    with torch.no_grad():
        states = bert(input_ids=torch.ones(1, 300, dtype=torch.long), output_hidden_states=True).hidden_states
    assert len(states) == 13 and states[0].shape == (1, 300, 768)
