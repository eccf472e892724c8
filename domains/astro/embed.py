"""Embed every object with a pretrained AstroM3 into the DuckDB embedding store, with anomaly scores and
label-error flags.

    python -m domains.astro.embed                                   # the demo pretraining run
    python -m domains.astro.embed --clip_run runs/astro/<run> --store runs/embeddings.duckdb

Writes four modalities per object (``photometry``, ``spectra``, ``metadata`` and ``fused`` = the
normalised mean of the three) for the train, val and test splits of the run's (subset, seed), each vector
with its model identity (``model_name``, ``model_version`` = the run name, the checkpoint's SHA-256) and a
``meta`` JSON (split, class, scores). The per-object table ``samples_astro`` gets the class, split,
IsolationForest and LOF anomaly scores on the fused embedding, the distance to the own-class centroid
per modality (centroids from the training split) and the misclassification flags (top-k farthest per
modality; ``label_error_candidate`` when flagged by at least ``min_modalities``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from domains.astro.downstream import anomaly_scores, fused_embeddings, misclassification_candidates
from domains.astro.model import MODALITIES
from domains.astro.pretrain import load_pretrained_clip
from domains.astro.training_data import load_astro_splits, map_batches, resolve_ingest_dir
from shared.cli import parse_config
from shared.device import pick_device
from shared.store import EmbeddingStore


@dataclass
class EmbedConfig:
    """Embed all objects of a pretraining run's splits into the embedding store."""

    clip_run: str = "runs/astro/pretrain-demo"
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


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def run_embed(config: EmbedConfig) -> EmbedResult:
    """Embed, score and write; see the module docstring."""
    clip_run = Path(config.clip_run)
    model, values = load_pretrained_clip(clip_run)
    ingest_dir = resolve_ingest_dir(values["data"], values.get("runs_root", "runs"), values.get("demo_stars", 2000))
    splits = load_astro_splits(ingest_dir, values["subset"], values["seed"], values["model"]["photometry"]["seq_len"])
    frame, vectors = embed_splits(model, splits, config.batch_size, pick_device(config.device))
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
    run_id = clip_run.name
    frame["embedded_by_run"] = run_id

    store = EmbeddingStore(config.store)
    ids = frame["sample_id"].tolist()
    meta = frame[["split", "label", "anomaly_isolation_forest", "anomaly_lof", "label_error_candidate"]]
    meta_rows = [
        {key: (bool(v) if isinstance(v, np.bool_) else v) for key, v in row.items()}
        for row in meta.to_dict(orient="records")
    ]
    with store.writing() as writer:
        writer.register_run(
            run_id,
            "astro",
            config.model_name,
            run_id,
            config=values,
            checkpoint_sha256=file_sha256(clip_run / "model.safetensors"),
        )
        for modality, matrix in vectors.items():
            writer.write_embeddings(
                domain="astro",
                modality=modality,
                model_name=config.model_name,
                model_version=run_id,
                run_id=run_id,
                sample_ids=ids,
                vectors=matrix,
                metadata=meta_rows,
            )
        writer.upsert_samples("astro", frame.drop(columns=["label_index"]))
    return EmbedResult(Path(config.store), run_id, len(frame), frame)


def main(argv: list[str] | None = None) -> EmbedResult:
    """Command-line entry point (``python -m domains.astro.embed --help``)."""
    config = parse_config(EmbedConfig, argv, prog="python -m domains.astro.embed", description=__doc__)
    result = run_embed(config)
    candidates = int(result.samples["label_error_candidate"].sum())
    print(
        f"embedded {result.n_objects} objects x 4 modalities (photometry, spectra, metadata, fused) as "
        f"{config.model_name}/{result.model_version}; {candidates} label-error candidates"
    )
    print(f"wrote {result.store} (embeddings_* tables, samples_astro with anomaly scores and flags)")
    print("next: open the store in the Streamlit explorer (apps/), or query table samples_astro with duckdb")
    return result


if __name__ == "__main__":
    main()
