"""Embedding every object of a pretraining run's splits into the DuckDB embedding store, with anomaly
scores and label-error flags (the work of ``python -m domains.astro.embed``).

Four modalities per object (``photometry``, ``spectra``, ``metadata`` and ``fused`` = the normalised mean
of the three) for the train, val and test splits of the run's (subset, seed), each vector with its model
identity (``model_name``, ``model_version`` = the run name, the checkpoint's SHA-256; the store's run id is
the run folder's ``astro/<name>``) and a ``meta`` JSON (split, class, scores). The per-object table
``samples_astro`` gets the class, split, IsolationForest and LOF anomaly scores on the fused embedding,
the distance to the own-class centroid per modality (centroids from the training split) and the
misclassification flags (top-k farthest per modality; ``label_error_candidate`` when flagged by at least
``min_modalities``) and a 2-D map of the fused embedding (``map_x``, ``map_y``: UMAP with the cosine metric
by default, PCA when asked).

``input`` embeds another ingest folder with the pretrained model, e.g. a scientist's own light curves
ingested photometry-only (``python -m domains.astro.ingest --objects ...``): only the modalities that folder
holds are embedded, and ``fused`` is their normalised mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch.utils.data import ConcatDataset, Subset

from domains.astro.clip_pretraining import load_pretrained_clip
from domains.astro.datasets import ingest_modalities, load_astro_splits, map_batches
from domains.astro.downstream import (
    anomaly_scores,
    embedding_map_2d,
    fused_embeddings,
    misclassification_candidates,
)
from domains.astro.ingest_pipeline import resolve_ingest_dir
from domains.astro.model import MODALITIES
from shared.device import pick_device
from shared.distributed import current_context, ensure_process_group, on_main_process, rows_across_ranks
from shared.run_folder import RunFolder, sha256_of
from shared.store import EmbeddingStore
from shared.user_errors import NothingProduced, UserError


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
    input: str | None = None
    """Ingest folder to embed (empty: the pretraining run's own); e.g. your light curves ingested with
    --objects, photometry only. Its full split of the run's seed is used (or its first seed)."""
    map_method: str = "umap"
    """2-D map of the fused embeddings in samples_astro (map_x, map_y): umap (cosine, as the paper), pca or
    none."""
    map_neighbors: int = 22
    """UMAP neighbourhood size (paper: 22 or 45)."""


@dataclass
class EmbedResult:
    """What an embed run wrote."""

    store: Path
    model_version: str
    n_objects: int
    samples: pd.DataFrame
    modalities: list[str]
    encoding_processes: int = 1
    """Processes that shared the encoding (the torchrun world size)."""


EMBEDDED_SPLITS = ("train", "val", "test")


def embed_splits(
    model: Any, splits: Any, batch_size: int, device: Any, modalities: tuple[str, ...] = MODALITIES
) -> tuple[pd.DataFrame, dict[str, np.ndarray]] | None:
    """Embeddings of ``modalities`` for train, val and test, in that order, with a per-object frame.

    Under torchrun (all ranks call this) each rank encodes a contiguous share of the objects; rank 0 gets
    every vector in object order and the other ranks get None, so that rank 0 alone scores and writes.
    """
    model = model.to(device).eval()
    datasets = [getattr(splits, name) for name in EMBEDDED_SPLITS]
    frame = pd.DataFrame(
        {
            "sample_id": [obj.sample_id for dataset in datasets for obj in dataset.objects],
            "split": [name for name, dataset in zip(EMBEDDED_SPLITS, datasets) for _ in range(len(dataset))],
            "label_index": np.concatenate([dataset.labels for dataset in datasets]).astype(np.int64),
        }
    )
    if not len(frame):
        raise NothingProduced("the run's train, val and test splits hold no object to embed")
    every_object = ConcatDataset([dataset for dataset in datasets if len(dataset)])

    def encode_rows(rows: range) -> dict[str, np.ndarray]:
        return map_batches(
            lambda batch: {m: model.encode(m, batch[m]) for m in modalities},
            Subset(every_object, rows),
            batch_size,
            device,
        )

    vectors = rows_across_ranks(len(frame), encode_rows)
    if vectors is None:
        return None
    frame["label"] = [splits.classes[i] for i in frame["label_index"]]
    return frame, {modality: vectors[modality] for modality in modalities}


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
    if config.map_method not in ("umap", "pca", "none"):
        raise UserError(f"--map_method: umap, pca or none, got {config.map_method!r}")
    if config.map_neighbors < 2:
        raise UserError(f"--map_neighbors: must be >= 2, got {config.map_neighbors}")
    if Path(config.store).is_dir():
        raise UserError(f"--store {config.store}: is a folder, expected a DuckDB file")


def run_embed(config: EmbedConfig) -> EmbedResult:
    """Embed, score and write; see the module docstring.

    Under torchrun every rank encodes its share of the objects, and rank 0 alone computes the scores and the
    2-D map from all vectors and writes each vector once; every rank returns rank 0's result.
    """
    _check_config(config)
    ensure_process_group()  # before picking the device: under torchrun on CUDA, each rank its own GPU
    device = pick_device(config.device)
    folder = RunFolder(Path(config.run))
    model, values = load_pretrained_clip(folder.path, flag="--run")
    seq_len = values["model"]["photometry"]["seq_len"]
    if config.input:
        ingest_dir = resolve_ingest_dir(config.input)
        seeds = sorted(p.name for p in (ingest_dir / "splits" / "full").glob("*") if (p / "info.json").is_file())
        seed = str(values["seed"]) if str(values["seed"]) in seeds else (seeds[0] if seeds else None)
        if seed is None:
            raise UserError(f"--input {ingest_dir}: no full split to embed (re-run the ingest with --subsets [full])")
        splits = load_astro_splits(ingest_dir, "full", int(seed), seq_len)
    else:
        ingest_dir = resolve_ingest_dir(
            values["input"], values.get("runs_root", "runs"), values.get("demo_stars", 2000)
        )
        splits = load_astro_splits(ingest_dir, values["subset"], values["seed"], seq_len)
    modalities = tuple(m for m in MODALITIES if m in ingest_modalities(ingest_dir))
    embedded = embed_splits(model, splits, config.batch_size, device, modalities)
    # On rank 0 (the only rank with the vectors): scores, map and store; the other ranks wait for the result.
    processes = current_context().world_size
    return on_main_process(
        lambda: _score_and_write(config, folder, values, splits.classes, modalities, *embedded, processes),
        "embedding",
    )


def _score_and_write(
    config: EmbedConfig,
    folder: RunFolder,
    values: dict[str, Any],
    classes: list[str],
    modalities: tuple[str, ...],
    frame: pd.DataFrame,
    vectors: dict[str, np.ndarray],
    encoding_processes: int,
) -> EmbedResult:
    """Anomaly scores, label-error flags and the 2-D map from all objects' vectors, written to the store."""
    vectors["fused"] = fused_embeddings(vectors, modalities)

    frame["anomaly_isolation_forest"] = anomaly_scores(vectors["fused"], "isolation_forest")
    frame["anomaly_lof"] = anomaly_scores(vectors["fused"], "lof", n_neighbors=config.lof_neighbors)
    train = (frame["split"] == "train").to_numpy()
    labels = frame["label_index"].to_numpy()
    flags = misclassification_candidates(
        {m: vectors[m] for m in modalities},
        labels,
        reference_embeddings={m: vectors[m][train] for m in modalities},
        reference_labels=labels[train],
        n_classes=len(classes),
        top_k=config.top_k,
        min_modalities=min(config.min_modalities, len(modalities)),
    )
    for modality in modalities:
        frame[f"centroid_distance_{modality}"] = flags[f"distance_{modality}"].to_numpy()
    frame["misclassification_flags"] = flags["n_flags"].to_numpy()
    frame["label_error_candidate"] = flags["candidate"].to_numpy()
    if config.map_method != "none":
        method = config.map_method if len(frame) >= 4 else "pca"
        coordinates, _ = embedding_map_2d(vectors["fused"], method, n_neighbors=config.map_neighbors)
        frame["map_x"], frame["map_y"] = coordinates[:, 0], coordinates[:, 1]
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
    return EmbedResult(Path(config.store), model_version, len(frame), frame, [*modalities, "fused"], encoding_processes)
