"""AstroM3 towers, trimodal CLIP model and classifier heads, checked against independent computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from domains.astro.model import (
    CLIP_PAIRS,
    AstroClassifier,
    AstroModelConfig,
    GalSpecNetSpectraEncoder,
    InformerPhotometryEncoder,
    MetadataTowerConfig,
    PhotometryTowerConfig,
    ProbSparseSelfAttention,
    SpectraTowerConfig,
    build_astrom3_model,
    clip_matching_accuracy,
)
from shared.towers import create_tower, list_towers

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_config(**photometry: object) -> AstroModelConfig:
    return AstroModelConfig(
        photometry=PhotometryTowerConfig(
            seq_len=24, d_model=16, n_layers=2, n_heads=2, d_ff=32, dropout=0.0, **photometry
        ),
        spectra=SpectraTowerConfig(length=300, channels=[8, 8, 4], dropout=0.0),
        metadata=MetadataTowerConfig(hidden_dim=32, dropout=0.0),
        embed_dim=16,
    )


def tiny_batch(batch_size: int = 6, seq_len: int = 24, n_valid: int | None = None, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    mask = torch.ones(batch_size, seq_len, dtype=torch.bool)
    if n_valid is not None:
        mask[:, n_valid:] = False
    return {
        "photometry": {"values": torch.randn(batch_size, seq_len, 9, generator=generator), "mask": mask},
        "spectra": torch.randn(batch_size, 3, 300, generator=generator),
        "metadata": torch.randn(batch_size, 34, generator=generator),
        "label": torch.arange(batch_size) % 3,
    }


def reference_prob_sparse(
    attention: ProbSparseSelfAttention, x: torch.Tensor, sample_idx: torch.Tensor
) -> torch.Tensor:
    """Loop-by-loop ProbSparse self-attention written from the Informer paper's definitions."""
    batch, length, d_model = x.shape
    heads, head_dim = attention.n_heads, attention.head_dim
    q = attention.query(x).view(batch, length, heads, head_dim)
    k = attention.key(x).view(batch, length, heads, head_dim)
    v = attention.value(x).view(batch, length, heads, head_dim)
    n_active = attention.factor * math.ceil(math.log(length))
    out = torch.zeros(batch, length, heads, head_dim)
    for b in range(batch):
        for h in range(heads):
            full = q[b, :, h] @ k[b, :, h].T  # (L, L) unscaled dot products
            sampled = torch.stack([full[i, sample_idx[i]] for i in range(length)])
            measurement = sampled.max(-1).values - sampled.sum(-1) / length
            active = set(measurement.topk(n_active).indices.tolist())
            for i in range(length):
                if i in active:
                    weights = torch.softmax(full[i] / math.sqrt(head_dim), -1)
                    out[b, i, h] = weights @ v[b, :, h]
                else:
                    out[b, i, h] = v[b, :, h].mean(0)
    return attention.out(out.reshape(batch, length, d_model))


def test_prob_sparse_attention_matches_the_paper_definition() -> None:
    torch.manual_seed(0)
    attention = ProbSparseSelfAttention(d_model=8, n_heads=2, factor=1).eval()
    x = torch.randn(2, 30, 8)
    length = x.shape[1]
    n_sample = math.ceil(math.log(length))
    sample_idx = torch.randint(length, (length, n_sample), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = attention(x)
        expected = reference_prob_sparse(attention, x, sample_idx)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-4)
    # Only ceil(ln 30) = 4 queries per head attend: the output is not full attention.
    full = ProbSparseSelfAttention(d_model=8, n_heads=2, attention="full").eval()
    full.load_state_dict(attention.state_dict())
    with torch.no_grad():
        assert not torch.allclose(full(x), ours, atol=1e-3)


def test_full_attention_switch_equals_scaled_dot_product_attention() -> None:
    torch.manual_seed(1)
    attention = ProbSparseSelfAttention(d_model=8, n_heads=2, attention="full").eval()
    x = torch.randn(3, 10, 8)
    valid = torch.ones(3, 10, dtype=torch.bool)
    valid[1, 6:] = False

    def heads(t: torch.Tensor) -> torch.Tensor:
        return t.view(3, 10, 2, 4).transpose(1, 2)

    with torch.no_grad():
        q, k, v = heads(attention.query(x)), heads(attention.key(x)), heads(attention.value(x))
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=valid[:, None, None, :])
        expected = attention.out(context.transpose(1, 2).reshape(3, 10, 8))
        torch.testing.assert_close(attention(x, valid), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("attention", ["prob", "full"])
def test_padding_mask_makes_features_independent_of_padded_steps(attention: str) -> None:
    torch.manual_seed(2)
    encoder = InformerPhotometryEncoder(
        seq_len=24,
        d_model=16,
        n_layers=2,
        n_heads=2,
        d_ff=32,
        dropout=0.0,
        attention=attention,
        use_padding_mask=True,
        pooling="mean",
    ).eval()
    batch = tiny_batch(n_valid=15)["photometry"]
    garbage = {"values": batch["values"].clone(), "mask": batch["mask"]}
    garbage["values"][:, 15:] = 1e3 * torch.randn(6, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(encoder(batch), encoder(garbage), atol=1e-4, rtol=1e-4)


def test_paper_style_encoder_zeroes_padded_steps_and_lets_them_leak() -> None:
    torch.manual_seed(3)
    encoder = InformerPhotometryEncoder(seq_len=24, d_model=16, n_layers=2, n_heads=2, d_ff=32, dropout=0.0).eval()
    batch = tiny_batch(n_valid=15)["photometry"]
    with torch.no_grad():
        features = encoder(batch).view(6, 24, 16)
        assert torch.all(features[:, 15:] == 0)
        changed = {"values": batch["values"].clone(), "mask": batch["mask"]}
        changed["values"][:, 16:-1] += 5.0
        # Without the padding mask (the paper), padded content reaches the real steps through attention.
        assert not torch.allclose(encoder(changed).view(6, 24, 16)[:, :15], features[:, :15])


def test_paper_size_model_shapes_and_parameter_count() -> None:
    model = build_astrom3_model()
    assert model.towers["photometry"].output_dim == 200 * 128
    assert model.towers["spectra"].output_dim == 32 * 37  # the paper's hard-coded 1,184
    assert model.towers["metadata"].output_dim == 512
    total = sum(p.numel() for p in model.parameters())
    # Reference: ~15.9M parameters, ~13.1M of them in the photometry projection.
    assert 15.5e6 < total < 16.2e6
    assert model.projections["photometry"].weight.numel() == 25_600 * 512
    spectra = GalSpecNetSpectraEncoder()
    assert spectra(torch.zeros(2, 3, 2575)).shape == (2, 1184)


def test_towers_are_registered_in_the_core_registry() -> None:
    assert {"astro_informer", "astro_galspecnet"} <= set(list_towers())
    tower = create_tower("astro_informer", seq_len=8, d_model=8, n_layers=1, n_heads=2, d_ff=16, pooling="mean")
    assert tower.output_dim == 8


def test_clip_loss_is_the_unweighted_sum_of_three_symmetric_terms() -> None:
    torch.manual_seed(4)
    model = build_astrom3_model(tiny_config()).eval()
    with torch.no_grad():
        out = model(tiny_batch())
        embeddings = out["embeddings"]
        expected = 0.0
        for first, second in CLIP_PAIRS:
            logits = 100.0 * embeddings[first] @ embeddings[second].T
            targets = torch.arange(6)
            expected += F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)
        torch.testing.assert_close(out["loss"], torch.as_tensor(expected))
    for first, second in CLIP_PAIRS:
        assert model.loss.scale((first, second)).item() == pytest.approx(100.0)
    # Temperatures are clamped to [1, 100] after each optimizer step.
    with torch.no_grad():
        for parameter in model.loss.logit_scales.values():
            parameter.fill_(10.0)
    model.after_optimizer_step()
    assert all(model.loss.scale(pair).item() == pytest.approx(100.0) for pair in CLIP_PAIRS)


def test_wrong_input_shapes_give_clear_errors() -> None:
    model = build_astrom3_model(tiny_config())
    with pytest.raises(ValueError, match="exactly 24 steps"):
        model.towers["photometry"]({"values": torch.zeros(2, 20, 9), "mask": torch.ones(2, 20, dtype=torch.bool)})
    with pytest.raises(ValueError, match="spectra must be"):
        model.towers["spectra"](torch.zeros(2, 3, 299))
    with pytest.raises(ValueError, match="mask shape"):
        model.towers["photometry"]({"values": torch.zeros(2, 24, 9), "mask": torch.ones(2, 23, dtype=torch.bool)})


def test_clip_matching_accuracy_counts_self_matches() -> None:
    embeddings = F.normalize(torch.randn(20, 8, generator=torch.Generator().manual_seed(5)), dim=-1)
    same = {"photometry": embeddings, "spectra": embeddings, "metadata": embeddings}
    assert clip_matching_accuracy(same) == 1.0
    shifted = {"photometry": embeddings, "spectra": embeddings.roll(1, 0), "metadata": embeddings.roll(2, 0)}
    assert clip_matching_accuracy(shifted) < 0.5


@pytest.mark.parametrize("mode", ["photo", "spectra", "meta", "all"])
def test_classifier_initialised_from_clip_reuses_its_encoders(mode: str) -> None:
    torch.manual_seed(6)
    config = tiny_config()
    clip = build_astrom3_model(config).eval()
    classifier = AstroClassifier(mode, n_classes=3, model_config=config).eval()
    copied = classifier.load_clip_encoders(clip)
    assert copied
    batch = tiny_batch()
    with torch.no_grad():
        features = classifier.features(batch)
        if mode == "all":
            expected = torch.stack([clip.encode(m, batch[m]) for m in ("photometry", "spectra", "metadata")]).mean(0)
        else:
            modality = {"photo": "photometry", "spectra": "spectra", "meta": "metadata"}[mode]
            expected = clip.towers[modality](batch[modality])
        torch.testing.assert_close(features, expected)
        out = classifier(batch)
    assert out["logits"].shape == (6, 3)
    torch.testing.assert_close(out["loss"], F.cross_entropy(out["logits"], batch["label"]))


def test_classifier_learns_a_separable_toy_problem() -> None:
    torch.manual_seed(7)
    classifier = AstroClassifier("meta", n_classes=2, model_config=tiny_config())
    x = torch.randn(64, 34)
    labels = (x[:, 0] > 0).long()
    optimizer = torch.optim.Adam(classifier.parameters(), lr=1e-2)
    for _ in range(60):
        optimizer.zero_grad()
        classifier({"metadata": x, "label": labels})["loss"].backward()
        optimizer.step()
    accuracy = (classifier.eval()({"metadata": x})["logits"].argmax(-1) == labels).float().mean()
    assert accuracy > 0.95
