"""The FND-CLIP detector as a system: frozen encoders, cached features, the trainable model, save and load.

:class:`NewsEncoders` builds the frozen parts from typed settings (:class:`EncoderConfig`) and turns posts
into the feature dict :class:`~domains.news.model.FNDCLIPModel` reads. Features of a shard folder are
computed once and cached (``<cache_dir>/<fingerprint>.pt``, the fingerprint covering the data and the
encoder settings), so training, ablations and evaluation on CPU only run the small heads.

A trained detector is a run folder: ``detector.json`` (encoder and head settings, input widths),
``checkpoints/best.safetensors`` (the trainable model) and, for the offline stand-in CLIP,
``clip_alignment.safetensors`` (its fitted projections).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from domains.news.data import NewsFormatError, image_as_rgb
from domains.news.model import (
    BRANCHES,
    AlignedTowerPair,
    ClipPair,
    FNDCLIPDims,
    FNDCLIPModel,
    OpenClipPair,
    build_layer_mixed_cls_text,
    tokenize_to_longest,
)
from shared.towers import create_tower, lock_tower

ALIGNED_CLIP = "aligned-minilm-efficientnet"
DETECTOR_FILE = "detector.json"
ALIGNMENT_FILE = "clip_alignment.safetensors"
FEATURE_KEYS = ("text_layers", "image_features", "image_pixels", "clip_text", "clip_image")
"""Model inputs a feature dict may hold (``image_pixels`` instead of ``image_features`` for a trained image tower)."""


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


def build_model(dims: FNDCLIPDims, head: HeadConfig, image_tower: torch.nn.Module | None = None) -> FNDCLIPModel:
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
        Trainer(aligner, config, run_dir).fit(batches_from_dataset(dataset, min(256, len(dataset)), seed=seed))
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
        fit_rows = torch.as_tensor(train_rows[genuine[train_rows]])
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
                raise FileNotFoundError(f"{path}: the stand-in CLIP's fitted projections are missing")
            load_weights(self.clip.aligner, path)
            self.clip.aligner.to(self.device).eval()


# ------------------------------------------------------------------------------------------ dataset features
@dataclass
class PostTable:
    """All posts of a shard folder with their frozen base features (row-aligned)."""

    keys: list[str]
    texts: list[str]
    labels: np.ndarray
    splits: list[str | None]
    base: dict[str, torch.Tensor]
    meta: list[dict[str, Any]]

    def rows(self, split: str) -> np.ndarray:
        """Row indices of one split."""
        return np.array([i for i, s in enumerate(self.splits) if s == split], dtype=np.int64)


def _decode_for_features(sample: dict[str, Any]) -> dict[str, Any]:
    """Shard sample → strings and numbers only (the core stream collates them): image bytes as hex."""
    from domains.news.data import decode_news_sample

    decoded = decode_news_sample(sample)
    image_bytes = sample.get("jpg") or sample.get("png")
    return {
        "key": decoded["key"],
        "text": decoded["text"],
        "text_en": decoded["text_en"] or "",
        "label": decoded["label"],
        "split": decoded["split"] or "",
        "meta_json": json.dumps(decoded["meta"], ensure_ascii=False),
        "image_sha": hashlib.sha256(image_bytes).hexdigest(),
        "image_hex": image_bytes.hex(),
    }


def _iterate_samples(shard_dir: Path) -> tuple[Iterator[dict[str, Any]], Any]:
    from shared.shard_stream import ShardStream

    stream = ShardStream(str(shard_dir), _decode_for_features, batch_size=1, shuffle_buffer=0)

    def one_by_one() -> Iterator[dict[str, Any]]:
        for batch in stream.batches(0):
            yield {k: (v[0].item() if isinstance(v, torch.Tensor) else v[0]) for k, v in batch.items()}

    return one_by_one(), stream


def dataset_fingerprint(shard_dir: Path, encoders: NewsEncoders) -> str:
    """sha256 over the shard manifest and the encoder settings."""
    from shared.shards import read_manifest

    manifest = read_manifest(shard_dir)
    shards = [{k: v for k, v in s.items() if k in ("name", "sha256", "samples")} for s in manifest.get("shards", [])]
    payload = json.dumps({"shards": shards, **encoders.identity()}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def load_post_table(shard_dir: str | Path, encoders: NewsEncoders, cache_dir: str | Path | None) -> PostTable:
    """Decode every post of a shard folder and compute (or load cached) frozen features.

    Each distinct image and each distinct text is encoded once (posts share their features). Corrupt
    samples are skipped by the core stream and reported.

    Raises:
        NewsFormatError: the folder yields no decodable post.
    """
    shard_dir = Path(shard_dir)
    cache_path = None
    if cache_dir is not None:
        cache_path = Path(cache_dir) / f"{dataset_fingerprint(shard_dir, encoders)}.pt"
        if cache_path.is_file():
            cached = torch.load(cache_path, map_location="cpu", weights_only=True)
            return PostTable(
                keys=cached["keys"],
                texts=cached["texts"],
                labels=np.asarray(cached["labels"], dtype=np.int64),
                splits=[s or None for s in cached["splits"]],
                base=cached["base"],
                meta=[json.loads(m) for m in cached["meta"]],
            )
    samples, stream = _iterate_samples(shard_dir)
    keys, texts, labels, splits, metas = [], [], [], [], []
    image_index: dict[str, int] = {}
    row_image: list[int] = []
    text_index: dict[tuple[str, str], int] = {}
    row_text: list[int] = []
    pending_images: list[Image.Image] = []
    pending_texts: list[tuple[str, str]] = []
    text_chunks: list[dict[str, torch.Tensor]] = []
    image_chunks: list[dict[str, torch.Tensor]] = []
    use_en = encoders.config.clip_text_field == "text_en"

    def flush_texts() -> None:
        if pending_texts:
            text_chunks.append(encoders.text_base([t for t, _ in pending_texts], [c for _, c in pending_texts]))
            pending_texts.clear()

    def flush_images() -> None:
        if pending_images:
            image_chunks.append(encoders.image_base(pending_images))
            pending_images.clear()

    for sample in samples:
        clip_text = sample["text_en"] if use_en and sample["text_en"] else sample["text"]
        keys.append(sample["key"])
        texts.append(sample["text"])
        labels.append(int(sample["label"]))
        splits.append(sample["split"] or None)
        metas.append(sample["meta_json"])
        if (sample["text"], clip_text) not in text_index:
            text_index[(sample["text"], clip_text)] = len(text_index)
            pending_texts.append((sample["text"], clip_text))
        row_text.append(text_index[(sample["text"], clip_text)])
        if sample["image_sha"] not in image_index:
            image_index[sample["image_sha"]] = len(image_index)
            pending_images.append(image_as_rgb(Image.open(io.BytesIO(bytes.fromhex(sample["image_hex"])))))
        row_image.append(image_index[sample["image_sha"]])
        if len(pending_texts) >= encoders.config.batch_size:
            flush_texts()
        if len(pending_images) >= encoders.config.batch_size:
            flush_images()
    flush_texts()
    flush_images()
    if not keys:
        raise NewsFormatError(f"{shard_dir}: no decodable post (stream report: {stream.report()})")
    failed = stream.report().get("samples_failed", 0)
    if failed:
        print(f"{shard_dir}: skipped {failed} corrupt sample(s): {stream.report().get('failures_by_reason')}")
    gather_text, gather_image = torch.as_tensor(row_text), torch.as_tensor(row_image)
    base = {k: torch.cat([c[k] for c in text_chunks])[gather_text] for k in text_chunks[0]}
    base |= {k: torch.cat([c[k] for c in image_chunks])[gather_image] for k in image_chunks[0]}
    table = PostTable(keys, texts, np.asarray(labels, dtype=np.int64), splits, base, [json.loads(m) for m in metas])
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_name(f".{cache_path.name}.{os.getpid()}.tmp")
        payload = {"keys": keys, "texts": texts, "labels": labels, "splits": [s or "" for s in splits]}
        torch.save(payload | {"base": base, "meta": metas}, tmp)
        os.replace(tmp, cache_path)
    return table


# ----------------------------------------------------------------------------------------------- save/load
def save_detector(run_dir: Path, encoders: NewsEncoders, head: HeadConfig) -> Path:
    """Write ``detector.json`` (and the stand-in CLIP's projections) into ``run_dir``."""
    from shared.cli import write_text_atomically

    encoders.save_alignment(run_dir)
    description = {
        "encoders": dataclasses.asdict(encoders.config),
        "head": dataclasses.asdict(head),
        "dims": dataclasses.asdict(encoders.dims),
        "labels": ["real", "fake"],
    }
    path = run_dir / DETECTOR_FILE
    write_text_atomically(path, json.dumps(description, indent=2))
    return path


@dataclass
class LoadedDetector:
    """A trained detector ready for inference."""

    encoders: NewsEncoders
    model: FNDCLIPModel
    head: HeadConfig
    run_dir: Path

    @torch.no_grad()
    def predict(
        self, texts: Sequence[str], images: Sequence[Image.Image], clip_texts: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """``prob_fake`` (N,), ``label`` (N,) (1 = fake), ``similarity`` (N,), ``attention`` (N, branches)."""
        features = self.encoders.features_for_posts(texts, images, clip_texts)
        return self.predict_from_features(features)

    @torch.no_grad()
    def predict_from_features(self, features: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """Same as :meth:`predict` from precomputed model inputs."""
        self.model.eval()
        device = self.encoders.device
        output = self.model({k: v.to(device) for k, v in features.items() if k in FEATURE_KEYS})
        prob_fake = output["probs"][:, 1].float().cpu().numpy()
        return {
            "prob_fake": prob_fake,
            "label": (prob_fake >= 0.5).astype(np.int64),
            "similarity": output["similarity"].float().cpu().numpy(),
            "attention": output["attention"].float().cpu().numpy(),
            "fused": output["fused"].float().cpu().numpy(),
        }


def load_detector(run_dir: str | Path, weights: str = "best", device: torch.device | None = None) -> LoadedDetector:
    """Rebuild a trained detector from its run folder.

    Args:
        run_dir: ``runs/news/<run-name>``.
        weights: ``best`` (validation-selected) or ``last`` (``model.safetensors``).
        device: where to run (default CPU).

    Raises:
        FileNotFoundError: naming the missing file of the run folder.
    """
    from shared.checkpoints import load_weights

    run_dir = Path(run_dir)
    description_path = run_dir / DETECTOR_FILE
    if not description_path.is_file():
        raise FileNotFoundError(f"{description_path} not found: is {run_dir} a news training run?")
    description = json.loads(description_path.read_text(encoding="utf-8"))
    encoders = NewsEncoders(EncoderConfig(**description["encoders"]), device=device)
    encoders.load_alignment(run_dir)
    head = HeadConfig(**description["head"])
    model = build_model(FNDCLIPDims(**description["dims"]), head, image_tower=encoders.trainable_image_tower)
    weights_path = run_dir / "checkpoints" / "best.safetensors" if weights == "best" else run_dir / "model.safetensors"
    if not weights_path.is_file():
        raise FileNotFoundError(f"{weights_path} not found (train first, or choose --weights last)")
    load_weights(model, weights_path)
    model.to(encoders.device).eval()
    return LoadedDetector(encoders, model, head, run_dir)
