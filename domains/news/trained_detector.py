"""A trained FND-CLIP detector as a run folder: save it after training, load it for inference.

The run folder written by ``domains.news.train`` holds ``detector.json`` (encoder and head settings, input
widths), ``checkpoints/best.safetensors`` (the validation-selected trainable model), ``model.safetensors``
(the weights the trainer kept at the end) and, for the offline stand-in CLIP, ``clip_alignment.safetensors``
(its fitted projections). :func:`load_detector` rebuilds a :class:`LoadedDetector` from them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from domains.news.frozen_encoders import EncoderConfig, NewsEncoders
from domains.news.model import FEATURE_KEYS, FNDCLIPDims, FNDCLIPModel, HeadConfig, build_model
from shared.atomic_files import write_json_atomically
from shared.run_folder import RunFolder
from shared.user_errors import UserError

DETECTOR_FILE = "detector.json"
WEIGHTS = ("best", "last")
"""Which weights of a run to use: ``best`` (validation-selected) or ``last`` (``model.safetensors``)."""


def check_weights(weights: str, flag: str = "--weights") -> str:
    """``weights`` if it is one of :data:`WEIGHTS`.

    Raises:
        UserError: any other value, naming the flag.
    """
    if weights not in WEIGHTS:
        raise UserError(f"{flag}: must be one of {'|'.join(WEIGHTS)}, got {weights!r}")
    return weights


def weights_file(run_dir: str | Path, weights: str) -> Path:
    """The file holding a run's ``best`` or ``last`` weights."""
    run_dir = Path(run_dir)
    return run_dir / "checkpoints" / "best.safetensors" if weights == "best" else run_dir / "model.safetensors"


def save_detector(run_dir: Path, encoders: NewsEncoders, head: HeadConfig) -> Path:
    """Write ``detector.json`` (and the stand-in CLIP's projections) into ``run_dir``; returns its path."""
    encoders.save_alignment(run_dir)
    description = {
        "encoders": dataclasses.asdict(encoders.config),
        "head": dataclasses.asdict(head),
        "dims": dataclasses.asdict(encoders.dims),
        "labels": ["real", "fake"],
    }
    return write_json_atomically(run_dir / DETECTOR_FILE, description)


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


def open_detector_run(run_dir: str | Path, flag: str = "--run") -> RunFolder:
    """The run folder of a trained detector given by ``flag``.

    Raises:
        UserError: the folder does not exist or holds no ``detector.json``.
    """
    folder = RunFolder.open(run_dir, flag=flag)
    if not (folder.path / DETECTOR_FILE).is_file():
        raise UserError(f"{flag} {run_dir}: no {DETECTOR_FILE}; is it a run of python -m domains.news.train?")
    return folder


def load_detector(
    run_dir: str | Path, weights: str = "best", device: torch.device | None = None, flag: str = "--run"
) -> LoadedDetector:
    """Rebuild a trained detector from its run folder.

    Args:
        run_dir: ``runs/news/<run-name>``.
        weights: ``best`` (validation-selected) or ``last`` (``model.safetensors``).
        device: where to run (default CPU).
        flag: the flag that named ``run_dir`` (for messages).

    Raises:
        UserError: ``weights`` is not best|last, or a file of the run folder is missing (named).
    """
    from shared.checkpoints import load_weights

    check_weights(weights)
    run_dir = open_detector_run(run_dir, flag).path
    description = json.loads((run_dir / DETECTOR_FILE).read_text(encoding="utf-8"))
    encoders = NewsEncoders(EncoderConfig(**description["encoders"]), device=device)
    encoders.load_alignment(run_dir)
    head = HeadConfig(**description["head"])
    model = build_model(FNDCLIPDims(**description["dims"]), head, image_tower=encoders.trainable_image_tower)
    path = weights_file(run_dir, weights)
    if not path.is_file():
        other = "last" if weights == "best" else "best"
        raise UserError(f"{path}: missing; train the run to the end or choose --weights {other}")
    load_weights(model, path)
    model.to(encoders.device).eval()
    return LoadedDetector(encoders, model, head, run_dir)
