"""Embedding every object of a pretraining run's splits into the DuckDB embedding store, with anomaly
scores and label-error flags (the work of ``python -m domains.astro.embed``).

Four modalities per object (``photometry``, ``spectra``, ``metadata`` and ``fused`` = the normalised mean
of the three) for the train, val and test splits of the run's (subset, seed), each vector with its model
identity (``model_name``, ``model_version`` = the run name, the checkpoint's SHA-256; the store's run id is
the run folder's ``astro/<name>``) and a ``meta`` JSON (split, class, scores). The per-object table
``samples_astro`` gets the class, split, IsolationForest and LOF anomaly scores on the fused embedding,
the distance to the own-class centroid per modality (centroids from the training split) and the
misclassification flags (top-k farthest per modality; ``label_error_candidate`` when flagged by at least
``min_modalities``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from domains.astro.clip_pretraining import load_pretrained_clip
from domains.astro.datasets import load_astro_splits, map_batches
from domains.astro.downstream import anomaly_scores, fused_embeddings, misclassification_candidates
from domains.astro.ingest_pipeline import resolve_ingest_dir
from domains.astro.model import MODALITIES
from shared.device import pick_device
from shared.run_folder import RunFolder, sha256_of
from shared.store import EmbeddingStore
from shared.user_errors import UserError


@dataclass
class EmbedConfig:
    """Embed all objects of a pretraining run's splits into the embedding store."""

    run: str = "runs/astro/pretrain-demo"
    """Pretraining run folder (python -m domains.astro.pretrain)."""
    store: str = "runs/embeddings.duckdb"
    """DuckDB embedding store file (created if missing)."""
    model_name: str = "astrom3-clip"
    """Model name recorded with every vector."""
    batch_size: int = 256
    """Objects per inference batch."""
    top_k: int = 20
    """Objects flagged per modality as farthest from their class centroid (paper: 20)."""
    min_modalities: int = 3
    """Flags needed to call an object a label-error candidate (paper: all three)."""
    lof_neighbors: int = 20
    """LocalOutlierFactor neighbourhood size."""
    device: str = "auto"
    """'auto' (CUDA when available) or a torch device string."""


@dataclass
class EmbedResult:
    """What an embed run wrote."""

    store: Path
    model_version: str
    n_objects: int
    samples: pd.DataFrame


def embed_splits(model: Any, splits: Any, batch_size: int, device: Any) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Embeddings of every modality for train, val and test, in that order, with a per-object frame."""
    model = model.to(device).eval()
    frames, vectors = [], {modality: [] for modality in MODALITIES}
    for split_name in ("train", "val", "test"):
        dataset = getattr(splits, split_name)
        if not len(dataset):
            continue
        outputs = map_batches(
            lambda batch: {m: model.encode(m, batch[m]) for m in MODALITIES} | {"label": batch["label"]},
            dataset,
            batch_size,
            device,
        )
        for modality in MODALITIES:
            vectors[modality].append(outputs[modality])
        frames.append(
            pd.DataFrame(
                {
                    "sample_id": [obj.sample_id for obj in dataset.objects],
                    "split": split_name,
                    "label_index": outputs["label"].astype(np.int64),
                }
            )
        )
    frame = pd.concat(frames, ignore_index=True)
    frame["label"] = [splits.classes[i] for i in frame["label_index"]]
    return frame, {modality: np.concatenate(parts) for modality, parts in vectors.items()}


def _check_config(config: EmbedConfig) -> None:
    for flag, value, low in (
        ("--batch_size", config.batch_size, 1),
        ("--top_k", config.top_k, 1),
        ("--lof_neighbors", config.lof_neighbors, 1),
    ):
        if value < low:
            raise UserError(f"{flag}: must be >= {low}, got {value}")
    if not 1 <= config.min_modalities <= len(MODALITIES):
        raise UserError(f"--min_modalities: must be between 1 and {len(MODALITIES)}, got {config.min_modalities}")
    if Path(config.store).is_dir():
        raise UserError(f"--store {config.store}: is a folder, expected a DuckDB file")


def run_embed(config: EmbedConfig) -> EmbedResult:
    """Embed, score and write; see the module docstring."""
    _check_config(config)
    device = pick_device(config.device)
    folder = RunFolder(Path(config.run))
    model, values = load_pretrained_clip(folder.path, flag="--run")
    ingest_dir = resolve_ingest_dir(values["input"], values.get("runs_root", "runs"), values.get("demo_stars", 2000))
    splits = load_astro_splits(ingest_dir, values["subset"], values["seed"], values["model"]["photometry"]["seq_len"])
    frame, vectors = embed_splits(model, splits, config.batch_size, device)
    vectors["fused"] = fused_embeddings(vectors, MODALITIES)

    frame["anomaly_isolation_forest"] = anomaly_scores(vectors["fused"], "isolation_forest")
    frame["anomaly_lof"] = anomaly_scores(vectors["fused"], "lof", n_neighbors=config.lof_neighbors)
    train = (frame["split"] == "train").to_numpy()
    labels = frame["label_index"].to_numpy()
    flags = misclassification_candidates(
        {m: vectors[m] for m in MODALITIES},
        labels,
        reference_embeddings={m: vectors[m][train] for m in MODALITIES},
        reference_labels=labels[train],
        n_classes=len(splits.classes),
        top_k=config.top_k,
        min_modalities=config.min_modalities,
    )
    for modality in MODALITIES:
        frame[f"centroid_distance_{modality}"] = flags[f"distance_{modality}"].to_numpy()
    frame["misclassification_flags"] = flags["n_flags"].to_numpy()
    frame["label_error_candidate"] = flags["candidate"].to_numpy()
    model_version = folder.name
    frame["embedded_by_run"] = model_version

    store = EmbeddingStore(config.store)
    ids = frame["sample_id"].tolist()
    meta = frame[["split", "label", "anomaly_isolation_forest", "anomaly_lof", "label_error_candidate"]]
    meta_rows = [
        {key: (bool(v) if isinstance(v, np.bool_) else v) for key, v in row.items()}
        for row in meta.to_dict(orient="records")
    ]
    with store.writing() as writer:
        writer.register_run(
            folder.run_id,
            "astro",
            config.model_name,
            model_version,
            config=values,
            checkpoint_sha256=sha256_of(folder.path / "model.safetensors"),
        )
        for modality, matrix in vectors.items():
            writer.write_embeddings(
                domain="astro",
                modality=modality,
                model_name=config.model_name,
                model_version=model_version,
                run_id=folder.run_id,
                sample_ids=ids,
                vectors=matrix,
                metadata=meta_rows,
            )
        writer.upsert_samples("astro", frame.drop(columns=["label_index"]))
    return EmbedResult(Path(config.store), model_version, len(frame), frame)
