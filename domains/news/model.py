"""FND-CLIP (Zhou et al., ICME 2023) as the official code builds it, on towers from the core registry.

Branches, each ending in a 64-d feature (Linear→256, BN, ReLU, Dropout 0.5, Linear→64, BN, ReLU):

* text: ``[layer-mixed [CLS] ‖ CLIP text]`` — the [CLS] vector of every hidden state of a frozen BERT-style
  encoder (embeddings + each layer), mixed with batch-dependent softmax weights (:class:`LayerMix`);
* image: ``[image tower ‖ CLIP image]`` — the image tower is trainable in the paper (ResNet-101 with its
  1000-way ImageNet fc kept);
* cross-modal: ``[CLIP text ‖ CLIP image]`` scaled by ``s' = w·cos(CLIP text, CLIP image) + b`` with learned
  scalars (``similarity="affine"``, the official code), or by the batch-standardised similarity
  ``γ·(s − μ)/σ + β`` with running statistics (``"standardized"``, the paper's wording), or unscaled (``"none"``).

Modality attention (squeeze-and-excitation over branches): the (B, N, 64) stack is average- and max-pooled over
the 64 features, both N-vectors pass one shared MLP (Linear(N,N), GELU, Linear(N,N)), ``a = σ(mlp(avg) +
mlp(max))``; the fused feature ``Σ_n a_n · f_n`` goes to the classifier (64→64 BN ReLU →64 BN ReLU →2) and a
plain cross-entropy loss. CLIP is frozen: a feature extractor and similarity gauge only.

The frozen parts (text encoder, CLIP pair, and the image tower when not trained) are kept out of
:class:`FNDCLIPModel`, the module the trainer optimises, so their features can be computed once and cached.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from shared.towers import create_tower, lock_tower, register_tower
from shared.user_errors import UserError

BRANCHES = ("text", "image", "cross")
SIMILARITY_MODES = ("affine", "standardized", "none")
FEATURE_KEYS = ("text_layers", "image_features", "image_pixels", "clip_text", "clip_image")
"""Model inputs a feature dict may hold (``image_pixels`` instead of ``image_features`` for a trained image tower)."""


# ------------------------------------------------------------------------------------------------ towers
def tokenize_to_longest(preprocess: Any, texts: Sequence[str]) -> dict[str, torch.Tensor]:
    """Tokenize with the tower's tokenizer, padding to the batch's longest text instead of ``max_length``.

    The core's HF tokenizer pads every text to ``max_length``; with attention masks the features are the
    same, and short posts (captions, headlines) encode several times faster.
    """
    encoded = preprocess.tokenizer(
        list(texts), padding=True, truncation=True, max_length=preprocess.max_length, return_tensors="pt"
    )
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


class LayerMix(nn.Module):
    """FND-CLIP's batch-dependent mix of S stacked [CLS] vectors (B, S, H) into (B, H), as the official code.

    With a learned weight ``w_s`` per hidden state (initialised uniformly in [0, 1) by ``torch.rand`` as in
    the official ``network.py``, ``self.weights = nn.Parameter(torch.rand(13, 1))``)::

        a_s = w_s · Σ_{b,h} x[b, s, h]          (the state summed over the whole batch and hidden dimension)
        α   = softmax_s(a)                       (one weight vector shared by every post of the batch)
        out[b] = Σ_s α_s · x[b, s]

    The weights therefore depend on the batch the post is in (and on its size), exactly as published;
    a single post scored alone gets the softmax of its own sums.
    """

    def __init__(self, num_states: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.rand(num_states, 1))

    def state_weights(self, stack: torch.Tensor) -> torch.Tensor:
        """(B, S, H) → (S,) softmax weights of this batch."""
        summed = stack.sum(dim=(0, 2))
        return torch.softmax(summed * self.weights.view(-1).to(stack.dtype), dim=0)

    def forward(self, stack: torch.Tensor) -> torch.Tensor:
        """(B, S, H) → (B, H)."""
        return torch.einsum("bsh,s->bh", stack, self.state_weights(stack))


class LayerMixedClsText(nn.Module):
    """A frozen transformers encoder whose [CLS] vectors of all hidden states are mixed by learned weights.

    ``hidden_cls`` (frozen, cacheable) returns the (B, S, H) stack, S = layers + 1; ``mix`` (trainable) turns
    a stack into (B, H); ``forward`` does both.

    Attributes:
        output_dim: hidden size H.
        num_states: S, the number of hidden states (embedding output + one per layer).
        preprocess: the tokenizer (list of strings → ``input_ids``/``attention_mask``).
    """

    def __init__(self, path: str, max_length: int = 300) -> None:
        super().__init__()
        encoder_tower = create_tower("hf_text", path=path, pooling="cls", max_length=max_length)
        self.encoder = lock_tower(encoder_tower).encoder
        self.preprocess = encoder_tower.preprocess
        self.output_dim = int(self.encoder.config.hidden_size)
        self.num_states = int(self.encoder.config.num_hidden_layers) + 1
        self.mixer = LayerMix(self.num_states)

    @torch.no_grad()
    def hidden_cls(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, S, H) [CLS] vectors of every hidden state of the frozen encoder."""
        self.encoder.eval()
        output = self.encoder(
            input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"], output_hidden_states=True
        )
        return torch.stack([state[:, 0] for state in output.hidden_states], dim=1)

    def forward(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """Tokenized batch → (B, H) layer-mixed [CLS] feature."""
        return self.mixer(self.hidden_cls(tokens))


@register_tower("layer_mixed_cls_text")
def build_layer_mixed_cls_text(path: str | None = None, max_length: int = 300) -> LayerMixedClsText:
    """FND-CLIP's text tower: frozen BERT-style encoder, [CLS] of all hidden states mixed by learned weights.

    Args:
        path: a transformers model directory (e.g. a local ``bert-base-chinese``); default: offline MiniLM.
        max_length: tokenizer length in tokens (the official code pads to 300).
    """
    from shared.towers.hf_text import minilm_model_dir

    return LayerMixedClsText(path or str(minilm_model_dir()), max_length=max_length)


CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESNET_INPUTS = ("clip", "imagenet")


class TorchvisionResNetTower(nn.Module):
    """A torchvision ResNet as FND-CLIP's image tower; the 1000-way ImageNet fc is kept as the official code does.

    The official code feeds the ResNet-101 the tensor OpenAI CLIP's ``preprocess`` made (224 px, bicubic
    resize of the short side, centre crop, CLIP mean/std) and uses its 1000-way output (``self.resnet101(
    image_raw)`` in ``network.py``) as the image branch feature: ``input_transform="clip"`` does the same;
    ``"imagenet"`` is torchvision's own recipe (resize 256, crop 224, ImageNet mean/std).
    """

    def __init__(
        self, depth: int = 101, weights_path: str | None = None, keep_fc: bool = True, input_transform: str = "clip"
    ) -> None:
        super().__init__()
        import torchvision
        from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize, ToTensor

        builders = {18: torchvision.models.resnet18, 50: torchvision.models.resnet50}
        builders[101] = torchvision.models.resnet101
        if depth not in builders:
            raise ValueError(f"ResNet depth must be one of {sorted(builders)}, got {depth}")
        if input_transform not in RESNET_INPUTS:
            raise ValueError(f"input_transform must be one of {RESNET_INPUTS}, got {input_transform!r}")
        self.net = builders[depth](weights=None)  # the architecture only: builds offline, weights come by path
        if weights_path is not None:
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
            self.net.load_state_dict(state)
        pooled_dim = self.net.fc.in_features
        if not keep_fc:
            self.net.fc = nn.Identity()
        self.output_dim = 1000 if keep_fc else pooled_dim
        if input_transform == "clip":
            steps = [Resize(224, interpolation=InterpolationMode.BICUBIC), CenterCrop(224)]
            steps += [ToTensor(), Normalize(CLIP_MEAN, CLIP_STD)]
        else:
            steps = [Resize(256), CenterCrop(224), ToTensor(), Normalize(IMAGENET_MEAN, IMAGENET_STD)]
        self.preprocess = Compose(steps)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, 224, 224) normalised images → (B, output_dim) (the ImageNet logits with ``keep_fc``)."""
        return self.net(images)


@register_tower("torchvision_resnet")
def build_torchvision_resnet(
    depth: int = 101, weights_path: str | None = None, keep_fc: bool = True, input_transform: str = "clip"
) -> nn.Module:
    """A torchvision ResNet with weights loaded from a local ``state_dict`` file (no download).

    Args:
        depth: 18, 50 or 101 (the paper uses 101).
        weights_path: a torchvision ``resnet*.pth`` state dict; ``None`` = random initialisation.
        keep_fc: keep the 1000-way ImageNet classifier as the feature (official code) instead of pooled features.
        input_transform: ``clip`` (the CLIP-preprocessed tensor, as the official code) or ``imagenet``.
    """
    return TorchvisionResNetTower(depth, weights_path, keep_fc, input_transform)


def bert_base_chinese_config() -> Any:
    """The architecture of ``bert-base-chinese`` (the paper's text encoder): 12 layers → 13 hidden states, 768-d.

    Builds offline (no weights): the paper preset loads the real weights from ``--encoders.text_encoder_path``.
    """
    from transformers import BertConfig

    return BertConfig(vocab_size=21128, hidden_size=768, num_hidden_layers=12, num_attention_heads=12)


# --------------------------------------------------------------------------------------------- CLIP pairs
class ClipPair(nn.Module):
    """A frozen image–text pair with a shared embedding space: FND-CLIP's similarity gauge."""

    output_dim: int

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """(B, output_dim) text features (not normalised)."""
        raise NotImplementedError

    def encode_image(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """(B, output_dim) image features (not normalised)."""
        raise NotImplementedError


class OpenClipPair(ClipPair):
    """Any open_clip model: a registry name with a pretrained tag or checkpoint path, or ``local-dir:DIR``."""

    def __init__(self, model_name: str, pretrained: str | None = None) -> None:
        super().__init__()
        import open_clip

        kwargs: dict[str, Any] = {}
        if model_name.startswith("local-dir:"):
            kwargs["pretrained_text"] = False
        self.model, _, self.image_transform = open_clip.create_model_and_transforms(
            model_name, pretrained=pretrained, **kwargs
        )
        self.tokenizer = open_clip.get_tokenizer(model_name)
        lock_tower(self.model)
        self.model.eval()
        self.output_dim = int(self.model.text_projection.shape[-1]) if hasattr(self.model, "text_projection") else 0
        if not self.output_dim:
            with torch.no_grad():
                self.output_dim = int(self.model.encode_text(self.tokenizer(["x"])).shape[-1])

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        return self.model.encode_text(self.tokenizer(list(texts)).to(device)).float()

    @torch.no_grad()
    def encode_image(self, images: Sequence[Image.Image]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        pixels = torch.stack([self.image_transform(image) for image in images]).to(device)
        return self.model.encode_image(pixels).float()


class FeatureTower(nn.Module):
    """Identity tower over precomputed features, so the core's ContrastiveModel can align cached features."""

    def __init__(self, output_dim: int) -> None:
        super().__init__()
        self.output_dim = output_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Return the (B, output_dim) features unchanged."""
        return features


class AlignedTowerPair(ClipPair):
    """A stand-in CLIP for offline use: frozen MiniLM text + EfficientNet-Lite0 image towers with linear
    projections fitted contrastively (the core's CLIP loss) on image–caption pairs: a LiT-style pair.

    No CLIP weights install offline; this pair is honest about being small and trained on little data.
    """

    def __init__(self, embed_dim: int = 256, text_tower: nn.Module | None = None, image_tower: nn.Module | None = None):
        super().__init__()
        from shared.contrastive_loss import ContrastiveLoss
        from shared.contrastive_model import ContrastiveModel

        self.text_tower = lock_tower(text_tower if text_tower is not None else create_tower("minilm_text"))
        self.image_tower = lock_tower(image_tower if image_tower is not None else create_tower("efficientnet_lite0"))
        self.aligner = ContrastiveModel(
            towers={
                "text": FeatureTower(self.text_tower.output_dim),
                "image": FeatureTower(self.image_tower.output_dim),
            },
            embed_dim=embed_dim,
            pairs=[("text", "image")],
            loss=ContrastiveLoss([("text", "image")]),
            projection="linear",
        )
        self.output_dim = embed_dim

    @torch.no_grad()
    def text_tower_features(self, texts: Sequence[str]) -> torch.Tensor:
        """Frozen MiniLM sentence features (B, 384) — what the projections are fitted on."""
        device = next(self.text_tower.parameters()).device
        tokens = {k: v.to(device) for k, v in tokenize_to_longest(self.text_tower.preprocess, texts).items()}
        return self.text_tower(tokens).float()

    @torch.no_grad()
    def image_tower_features(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Frozen EfficientNet-Lite0 features (B, 1280)."""
        device = next(self.image_tower.parameters()).device
        pixels = torch.stack([self.image_tower.preprocess(image) for image in images]).to(device)
        return self.image_tower(pixels).float()

    def project_text(self, features: torch.Tensor) -> torch.Tensor:
        """Projected text embedding (not normalised) of tower features."""
        return self.aligner.encode("text", features, normalize=False)

    def project_image(self, features: torch.Tensor) -> torch.Tensor:
        """Projected image embedding (not normalised) of tower features."""
        return self.aligner.encode("image", features, normalize=False)

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        return self.project_text(self.text_tower_features(texts))

    @torch.no_grad()
    def encode_image(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return self.project_image(self.image_tower_features(images))


# ------------------------------------------------------------------------------------------- FND-CLIP head
class BranchHead(nn.Module):
    """FND-CLIP's per-branch block: Linear→hidden, BN, ReLU, Dropout, Linear→out, BN, ReLU."""

    def __init__(self, in_dim: int, hidden_dim: int = 256, out_dim: int = 64, dropout: float = 0.5) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, out_dim),
            nn.BatchNorm1d(out_dim),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) → (B, out_dim)."""
        return self.net(x)


class ModalityAttention(nn.Module):
    """Squeeze-and-excitation over N branch features: ``a = σ(mlp(avgpool f) + mlp(maxpool f))``, f: (B, N, D)."""

    def __init__(self, num_branches: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(num_branches, num_branches), nn.GELU(), nn.Linear(num_branches, num_branches)
        )

    def forward(self, stacked: torch.Tensor) -> torch.Tensor:
        """(B, N, D) → (B, N) weights in (0, 1)."""
        return torch.sigmoid(self.mlp(stacked.mean(dim=-1)) + self.mlp(stacked.amax(dim=-1)))


@dataclass
class FNDCLIPDims:
    """Input widths of the head.

    Attributes:
        text_dim: width of the layer-mixed text feature.
        num_text_states: hidden states mixed by the text tower.
        image_dim: width of the image tower feature.
        clip_dim: width of the CLIP embeddings.
    """

    text_dim: int
    num_text_states: int
    image_dim: int
    clip_dim: int


class FNDCLIPModel(nn.Module):
    """The trainable part of FND-CLIP: text layer mix, optional image tower, branch heads, attention, classifier.

    ``forward(batch)`` takes ``text_layers`` (B, S, H), ``image_features`` (B, Di) or ``image_pixels`` (when an
    image tower is attached), ``clip_text`` and ``clip_image`` (B, Dc), and optionally ``label`` (B,);
    returns ``loss`` (when labels are given), ``logits``, ``probs``, ``attention`` (B, N), ``similarity`` (B,)
    (raw CLIP cosine) and ``fused`` (B, 64).

    Args:
        dims: input widths.
        branches: subset of ``("text", "image", "cross")`` (ablations drop some).
        use_clip_in_unimodal: concatenate CLIP features into the text and image branches (official) or not.
        similarity: ``"affine"`` (official learned w·s+b), ``"standardized"`` (running mean/std + affine) or
            ``"none"``.
        hidden_dim: first width of every branch head (256).
        feature_dim: branch feature width (64).
        dropout: dropout probability in the branch heads (0.5).
        image_tower: a trainable image tower to run on ``image_pixels`` (the paper trains its ResNet).
    """

    def __init__(
        self,
        dims: FNDCLIPDims,
        branches: Sequence[str] = BRANCHES,
        use_clip_in_unimodal: bool = True,
        similarity: str = "affine",
        hidden_dim: int = 256,
        feature_dim: int = 64,
        dropout: float = 0.5,
        image_tower: nn.Module | None = None,
    ) -> None:
        super().__init__()
        unknown = set(branches) - set(BRANCHES)
        if unknown or not branches:
            raise ValueError(f"branches must be a non-empty subset of {BRANCHES}, got {list(branches)}")
        if similarity not in SIMILARITY_MODES:
            raise ValueError(f"similarity must be one of {SIMILARITY_MODES}, got {similarity!r}")
        self.branches = tuple(b for b in BRANCHES if b in branches)
        self.use_clip_in_unimodal = use_clip_in_unimodal
        self.similarity_mode = similarity
        self.image_tower = image_tower
        self.text_mix = LayerMix(dims.num_text_states)
        clip_extra = dims.clip_dim if use_clip_in_unimodal else 0
        heads = {
            "text": lambda: BranchHead(dims.text_dim + clip_extra, hidden_dim, feature_dim, dropout),
            "image": lambda: BranchHead(dims.image_dim + clip_extra, hidden_dim, feature_dim, dropout),
            "cross": lambda: BranchHead(2 * dims.clip_dim, hidden_dim, feature_dim, dropout),
        }
        self.heads = nn.ModuleDict({name: heads[name]() for name in self.branches})
        # As the official code: w and b drawn uniformly in [0, 1) (torch.rand(1) each), from the run's seed.
        self.similarity_scale = nn.Parameter(torch.rand(()))
        self.similarity_offset = nn.Parameter(torch.rand(()))
        self.similarity_norm = nn.BatchNorm1d(1) if similarity == "standardized" else None
        self.attention = ModalityAttention(len(self.branches))
        self.classifier = nn.Sequential(
            nn.Linear(feature_dim, feature_dim),
            nn.BatchNorm1d(feature_dim),
            nn.ReLU(),
            nn.Linear(feature_dim, feature_dim),
            nn.BatchNorm1d(feature_dim),
            nn.ReLU(),
            nn.Linear(feature_dim, 2),
        )

    def scaled_similarity(self, similarity: torch.Tensor) -> torch.Tensor:
        """The factor multiplying the cross-modal feature, from the raw cosine similarity (B,)."""
        if self.similarity_mode == "none":
            return torch.ones_like(similarity)
        if self.similarity_mode == "standardized":
            return self.similarity_norm(similarity.unsqueeze(1)).squeeze(1)
        return self.similarity_scale * similarity + self.similarity_offset

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Classify a batch of posts from their (cached or live) features; see the class docstring."""
        clip_text = batch["clip_text"].float()
        clip_image = batch["clip_image"].float()
        similarity = F.cosine_similarity(clip_text, clip_image, dim=-1)
        features = []
        for name in self.branches:
            if name == "text":
                parts = [self.text_mix(batch["text_layers"].float())]
                parts += [clip_text] if self.use_clip_in_unimodal else []
            elif name == "image":
                image = (
                    self.image_tower(batch["image_pixels"].float())
                    if self.image_tower is not None and "image_pixels" in batch
                    else batch["image_features"]
                )
                parts = [image.float()] + ([clip_image] if self.use_clip_in_unimodal else [])
            else:
                parts = [clip_text, clip_image]
            feature = self.heads[name](torch.cat(parts, dim=-1))
            if name == "cross":
                feature = feature * self.scaled_similarity(similarity).unsqueeze(1)
            features.append(feature)
        stacked = torch.stack(features, dim=1)
        attention = self.attention(stacked)
        fused = (stacked * attention.unsqueeze(-1)).sum(dim=1)
        logits = self.classifier(fused)
        output = {
            "logits": logits,
            "probs": torch.softmax(logits.float(), dim=-1),
            "attention": attention,
            "similarity": similarity,
            "fused": fused,
        }
        if "label" in batch:
            output["loss"] = F.cross_entropy(logits.float(), batch["label"].long())
        return output


@dataclass
class HeadConfig:
    """FND-CLIP head settings (defaults = the official code)."""

    branches: list[str] = field(default_factory=lambda: list(BRANCHES))
    """Branches used: any of text, image, cross."""
    use_clip_in_unimodal: bool = True
    """Concatenate CLIP features into the text and image branches."""
    similarity: str = "affine"
    """Cross-feature scaling: affine (official learned w·s+b), standardized (running mean/std), none."""
    hidden_dim: int = 256
    """First width of every branch head."""
    feature_dim: int = 64
    """Branch feature width."""
    dropout: float = 0.5
    """Dropout in the branch heads."""

    def check(self, flag_prefix: str = "--head.") -> None:
        """Refuse settings the model cannot build, naming the flag.

        Raises:
            UserError: unknown or no branches, an unknown similarity mode, a non-positive width, a dropout
                outside [0, 1).
        """
        if not self.branches or set(self.branches) - set(BRANCHES):
            raise UserError(
                f"{flag_prefix}branches: must be a non-empty subset of {list(BRANCHES)}, got {self.branches}"
            )
        if self.similarity not in SIMILARITY_MODES:
            raise UserError(
                f"{flag_prefix}similarity: must be one of {list(SIMILARITY_MODES)}, got {self.similarity!r}"
            )
        for name in ("hidden_dim", "feature_dim"):
            if getattr(self, name) < 1:
                raise UserError(f"{flag_prefix}{name}: must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"{flag_prefix}dropout: must be in [0, 1), got {self.dropout}")


def build_model(dims: FNDCLIPDims, head: HeadConfig, image_tower: nn.Module | None = None) -> FNDCLIPModel:
    """The trainable FND-CLIP model for given input widths and head settings (and a tower to fine-tune)."""
    return FNDCLIPModel(
        dims,
        branches=head.branches,
        use_clip_in_unimodal=head.use_clip_in_unimodal,
        similarity=head.similarity,
        hidden_dim=head.hidden_dim,
        feature_dim=head.feature_dim,
        dropout=head.dropout,
        image_tower=image_tower,
    )
