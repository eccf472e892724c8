"""The frozen encoders that feed FND-CLIP: the layer-mixed text tower, the image tower and the CLIP pair.

:class:`NewsEncoders` builds them from typed settings (:class:`EncoderConfig`) and turns posts into the
feature dict :class:`~domains.news.model.FNDCLIPModel` reads. With the offline stand-in CLIP it also fits
that CLIP's projections on the training split's genuine pairs (and cross-fits the training posts' CLIP
features), and saves/loads those projections (``clip_alignment.safetensors`` in a run folder).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from domains.news.model import (
    AlignedTowerPair,
    ClipPair,
    FNDCLIPDims,
    OpenClipPair,
    build_layer_mixed_cls_text,
    tokenize_to_longest,
)
from shared.towers import create_tower, lock_tower
from shared.user_errors import UserError

ALIGNED_CLIP = "aligned-minilm-efficientnet"
ALIGNMENT_FILE = "clip_alignment.safetensors"


@dataclass
class EncoderConfig:
    """The frozen encoders that feed FND-CLIP."""

    text_encoder_path: str | None = None
    """transformers directory of the layer-mixed text tower (e.g. a local bert-base-chinese); None = offline MiniLM."""
    text_max_length: int = 64
    """Text tower context in tokens (the official code uses 300 for Weibo posts)."""
    image_tower: str = "efficientnet_lite0"
    """Image tower name in the core registry (``torchvision_resnet`` with ``weights_path`` for the paper's ResNet-101)."""
    image_tower_args: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the image tower builder, e.g. ``{"depth": 101, "weights_path": "resnet101.pth"}``."""
    train_image_tower: bool = False
    """Fine-tune the image tower as the paper does (images kept in memory as float16 tensors; slow on CPU)."""
    clip: str = ALIGNED_CLIP
    """CLIP pair: ``aligned-minilm-efficientnet`` (offline stand-in), an open_clip name (``ViT-B-32``) or ``local-dir:DIR``."""
    clip_pretrained: str | None = None
    """open_clip ``pretrained`` tag or checkpoint path (ignored for the stand-in and ``local-dir:``)."""
    clip_text_field: str = "text"
    """Which text CLIP reads: ``text`` or ``text_en`` (FND-CLIP feeds English translations to English CLIP)."""
    aligned_embed_dim: int = 256
    """Embedding width of the stand-in CLIP's projections."""
    aligned_steps: int = 300
    """Optimizer steps fitting the stand-in CLIP's projections on the training split's genuine pairs."""
    alignment_folds: int = 3
    """Cross-fitting folds for the stand-in CLIP's features of training posts (1 = fit once, use in-sample)."""
    batch_size: int = 64
    """Posts per forward pass when computing features."""

    def check(self, flag_prefix: str = "--encoders.") -> None:
        """Refuse settings the encoders cannot be built with, naming the flag (before any model is loaded).

        Raises:
            UserError: an unknown image tower or CLIP text field, or a count below 1.
        """
        from shared.towers import list_towers

        if self.image_tower not in list_towers():
            raise UserError(f"{flag_prefix}image_tower: unknown tower {self.image_tower!r}; one of {list_towers()}")
        if self.clip_text_field not in ("text", "text_en"):
            raise UserError(f"{flag_prefix}clip_text_field: must be text or text_en, got {self.clip_text_field!r}")
        for name in ("text_max_length", "aligned_embed_dim", "aligned_steps", "alignment_folds", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"{flag_prefix}{name}: must be >= 1, got {getattr(self, name)}")


def alignment_fit_rows(train_rows: np.ndarray, genuine: np.ndarray) -> np.ndarray:
    """The posts the stand-in CLIP pair is fitted on: the genuine (real) pairs of the training split only.

    Nothing of the validation or test posts (caption, image) enters the fit; with the built-in set, whose
    splits share no caption and no image, the fitted pairs are disjoint from every test post.
    """
    return train_rows[genuine[train_rows]]


class NewsEncoders:
    """The frozen encoders: layer-mixed text tower (its [CLS] stack), image tower, CLIP pair.

    With the stand-in CLIP and ``efficientnet_lite0`` as image tower, one EfficientNet instance (and one
    forward pass) serves both the image branch and the stand-in CLIP's image side.
    """

    def __init__(self, config: EncoderConfig, device: torch.device | None = None) -> None:
        self.config = config
        self.device = device or torch.device("cpu")
        self.text_tower = build_layer_mixed_cls_text(config.text_encoder_path, config.text_max_length)
        self.image_tower = create_tower(config.image_tower, **config.image_tower_args).eval()
        if not config.train_image_tower:
            lock_tower(self.image_tower)
        if config.clip == ALIGNED_CLIP:
            # CLIP stays frozen: it can share the image tower only when that tower is frozen too.
            can_share = config.image_tower == "efficientnet_lite0" and not config.train_image_tower
            shared_image = self.image_tower if can_share else None
            self.clip: ClipPair = AlignedTowerPair(config.aligned_embed_dim, image_tower=shared_image)
        else:
            self.clip = OpenClipPair(config.clip, config.clip_pretrained)
        # The stand-in CLIP's untrained projections, the start of every cross-fitting fold.
        self.initial_aligner = copy.deepcopy(self.clip.aligner) if isinstance(self.clip, AlignedTowerPair) else None
        for module in (self.text_tower, self.image_tower, self.clip):
            module.to(self.device).eval()
        self.dims = FNDCLIPDims(
            text_dim=self.text_tower.output_dim,
            num_text_states=self.text_tower.num_states,
            image_dim=self.image_tower.output_dim,
            clip_dim=self.clip.output_dim,
        )

    @property
    def trainable_image_tower(self) -> torch.nn.Module | None:
        """The image tower to fine-tune inside the model, or None when its features are cached."""
        return self.image_tower if self.config.train_image_tower else None

    @property
    def aligned(self) -> bool:
        """Whether the CLIP pair is the offline stand-in (needs fitting)."""
        return isinstance(self.clip, AlignedTowerPair)

    def identity(self) -> dict[str, Any]:
        """What the features depend on (goes into the cache fingerprint)."""
        ignored = {"batch_size": None, "aligned_steps": None, "alignment_folds": None, "aligned_embed_dim": None}
        return {"encoders": dataclasses.asdict(self.config) | ignored}

    @torch.no_grad()
    def text_base(self, texts: Sequence[str], clip_texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Frozen text features of one batch: ``text_layers`` and ``clip_text`` (or, for the stand-in CLIP,
        ``clip_text_base``: MiniLM features before the fitted projection)."""
        tokens = {k: v.to(self.device) for k, v in tokenize_to_longest(self.text_tower.preprocess, texts).items()}
        out = {"text_layers": self.text_tower.hidden_cls(tokens).float().cpu()}
        if isinstance(self.clip, AlignedTowerPair):
            out["clip_text_base"] = self.clip.text_tower_features(clip_texts).cpu()
        else:
            out["clip_text"] = self.clip.encode_text(clip_texts).cpu()
        return out

    @torch.no_grad()
    def image_base(self, images: Sequence[Image.Image]) -> dict[str, torch.Tensor]:
        """Image inputs of one batch: ``image_features`` (frozen tower) or ``image_pixels`` (float16, tower
        fine-tuned), and ``clip_image`` (or ``clip_image_base``)."""
        pixels = torch.stack([self.image_tower.preprocess(image) for image in images]).to(self.device)
        if self.config.train_image_tower:
            out = {"image_pixels": pixels.half().cpu()}
            image_features = None
        else:
            image_features = self.image_tower(pixels).float()
            out = {"image_features": image_features.cpu()}
        if isinstance(self.clip, AlignedTowerPair):
            shared = self.clip.image_tower is self.image_tower
            out["clip_image_base"] = (image_features if shared else self.clip.image_tower_features(images)).cpu()
        else:
            out["clip_image"] = self.clip.encode_image(images).cpu()
        return out

    @torch.no_grad()
    def finish(self, base: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Model inputs from base features (applies the stand-in CLIP's fitted projections)."""
        out = {k: base[k] for k in ("text_layers", "image_features", "image_pixels") if k in base}
        if "clip_text" in base:
            out["clip_text"], out["clip_image"] = base["clip_text"], base["clip_image"]
        else:
            self.clip.eval()
            out["clip_text"] = self.clip.project_text(base["clip_text_base"].to(self.device)).float().cpu()
            out["clip_image"] = self.clip.project_image(base["clip_image_base"].to(self.device)).float().cpu()
        return out

    def features_for_posts(
        self, texts: Sequence[str], images: Sequence[Image.Image], clip_texts: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Model inputs for a list of posts (inference path)."""
        clip_texts = list(texts) if clip_texts is None else list(clip_texts)
        batches = []
        for start in range(0, len(texts), self.config.batch_size):
            stop = start + self.config.batch_size
            batches.append(
                self.text_base(texts[start:stop], clip_texts[start:stop]) | self.image_base(images[start:stop])
            )
        base = {k: torch.cat([b[k] for b in batches]) for k in batches[0]}
        return self.finish(base)

    def _fit_aligner(
        self, aligner: torch.nn.Module, text: torch.Tensor, image: torch.Tensor, run_dir: Path, seed: int
    ) -> None:
        """Fit projections contrastively (core ContrastiveModel + Trainer, CLIP loss) on genuine pairs."""
        from shared.data_iteration import TensorDictDataset, batches_from_dataset
        from shared.distributed import per_rank_batch_size
        from shared.trainer import Trainer, TrainerConfig

        dataset = TensorDictDataset({"text": text, "image": image})
        config = TrainerConfig(
            max_steps=self.config.aligned_steps,
            lr=2e-3,
            weight_decay=0.0,
            warmup_steps=20,
            checkpoint_every=10**9,
            keep_last=1,
            log_every=max(1, self.config.aligned_steps // 3),
            seed=seed,
            progress_bar=False,
        )
        # 256 pairs (or all) per global batch, whatever the number of processes.
        batch_size = per_rank_batch_size(min(256, len(dataset)))
        Trainer(aligner, config, run_dir).fit(batches_from_dataset(dataset, batch_size, seed=seed))
        aligner.to(self.device).eval()

    def fit_alignment(
        self,
        base: dict[str, torch.Tensor],
        train_rows: np.ndarray,
        genuine: np.ndarray,
        groups: Sequence[str],
        run_dir: Path,
        seed: int,
    ) -> dict[str, torch.Tensor] | None:
        """Fit the stand-in CLIP on the genuine training pairs; cross-fit the training posts' CLIP features.

        The final projections (used for validation, test and inference) see every genuine training pair.
        With ``alignment_folds`` > 1, each training post instead gets CLIP features from projections fitted
        without its fold (folds by ``groups``, so a caption's real and fake posts share one), so its
        similarity is as (un)reliable as an unseen post's and the head cannot learn to trust an overfit gauge.

        Args:
            base: base features of all posts (``clip_text_base``, ``clip_image_base``).
            train_rows: rows of the training split.
            genuine: (N,) bool, True for real posts (only those are image–caption pairs to align).
            groups: (N,) group name per post (pair id).
            run_dir: the run folder (alignment runs are written under ``clip_alignment/``).
            seed: seed of the fits.

        Returns:
            ``{"rows", "clip_text", "clip_image"}`` out-of-fold features of the training rows, or None (no
            stand-in CLIP, or cross-fitting off).
        """
        if not isinstance(self.clip, AlignedTowerPair):
            return None
        text, image = base["clip_text_base"], base["clip_image_base"]
        fit_rows = torch.as_tensor(alignment_fit_rows(train_rows, genuine))
        self._fit_aligner(self.clip.aligner, text[fit_rows], image[fit_rows], run_dir / "clip_alignment", seed)
        folds = self.config.alignment_folds
        if folds <= 1:
            return None
        fold_of = np.array([int(hashlib.sha256(str(groups[i]).encode()).hexdigest(), 16) % folds for i in train_rows])
        out_text = torch.empty(len(train_rows), self.clip.output_dim)
        out_image = torch.empty(len(train_rows), self.clip.output_dim)
        for fold in range(folds):
            held = fold_of == fold
            fitted = train_rows[~held & genuine[train_rows]]
            aligner = copy.deepcopy(self.initial_aligner)
            self._fit_aligner(aligner, text[fitted], image[fitted], run_dir / "clip_alignment" / f"fold-{fold}", seed)
            rows = torch.as_tensor(train_rows[held])
            with torch.no_grad():
                out_text[torch.as_tensor(held)] = (
                    aligner.encode("text", text[rows].to(self.device), normalize=False).float().cpu()
                )
                out_image[torch.as_tensor(held)] = (
                    aligner.encode("image", image[rows].to(self.device), normalize=False).float().cpu()
                )
        return {"rows": torch.as_tensor(train_rows), "clip_text": out_text, "clip_image": out_image}

    def save_alignment(self, run_dir: Path) -> None:
        """Write the stand-in CLIP's projections (no-op for a real CLIP)."""
        from shared.checkpoints import save_weights_atomically

        if isinstance(self.clip, AlignedTowerPair):
            save_weights_atomically(self.clip.aligner, run_dir / ALIGNMENT_FILE)

    def load_alignment(self, run_dir: Path) -> None:
        """Read the stand-in CLIP's projections written by :meth:`save_alignment`."""
        from shared.checkpoints import load_weights

        if isinstance(self.clip, AlignedTowerPair):
            path = run_dir / ALIGNMENT_FILE
            if not path.is_file():
                raise UserError(f"{path}: the stand-in CLIP's fitted projections are missing")
            load_weights(self.clip.aligner, path)
            self.clip.aligner.to(self.device).eval()
