"""Ingested AstroM3 splits as model-ready datasets and batches (shared by the model commands).

An ingest folder (``python -m domains.astro.ingest``; layout in ``README_data.md``) holds the shards and
``splits/{subset}/{seed}/{train,val,test}.csv`` + ``info.json``. :func:`load_astro_splits` turns one
(subset, seed) into three :class:`~domains.astro.data.AstroTrimodalDataset` s (random 200-step windows for
training, centred ones for evaluation) and :func:`collate_astro_batch` batches samples into the input
contract of :mod:`domains.astro.model`. Without an ingest folder the built-in demo set is ingested once
into ``runs/astro/ingest-demo`` and reused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import default_collate

from domains.astro.data import AstroTrimodalDataset, IngestedObject, read_ingested_objects
from domains.astro.preprocessing import SplitInfo
from shared.device import autocast_for, move_to_device

SUBSETS: tuple[str, ...] = ("full", "sub50", "sub25", "sub10")
"""Label budgets: all labels, then about 1/2, 1/4 and 1/10 of them (class-balanced caps)."""

DEMO_INGEST_RUN = "ingest-demo"
"""Run name of the built-in demo ingest under ``runs/astro/``."""

_OBJECT_CACHE: dict[Path, list[IngestedObject]] = {}


@dataclass
class AstroSplits:
    """One (subset, seed) of an ingest folder, ready for training.

    Attributes:
        train: Training split (random windows, reseeded by ``set_epoch``).
        val: Validation split (centred windows).
        test: Test split (centred windows).
        info: Classes and train-only standardisation of this (subset, seed).
        ingest_dir: The ingest folder the splits come from.
    """

    train: AstroTrimodalDataset
    val: AstroTrimodalDataset
    test: AstroTrimodalDataset
    info: SplitInfo
    ingest_dir: Path

    @property
    def classes(self) -> list[str]:
        """Class names; a label is an index into this list."""
        return list(self.info.classes)


def resolve_ingest_dir(data: str | None, runs_root: str = "runs", demo_stars: int = 2000) -> Path:
    """The ingest folder to read: ``data`` when given, else the built-in demo ingest (made if missing).

    Raises:
        FileNotFoundError: ``data`` is not an ingest folder (no ``shards/`` and ``splits/``).
    """
    if data:
        folder = Path(data)
        if not (folder / "shards").is_dir() or not (folder / "splits").is_dir():
            raise FileNotFoundError(
                f"{folder}: not an astro ingest folder (expected shards/ and splits/ inside); "
                "create one with: python -m domains.astro.ingest"
            )
        return folder
    folder = Path(runs_root) / "astro" / (DEMO_INGEST_RUN if demo_stars == 2000 else f"{DEMO_INGEST_RUN}-{demo_stars}")
    if not (folder / "ingest_report.json").is_file():
        from domains.astro.ingest import IngestConfig, run_ingest

        print(f"Building the built-in demo set ({demo_stars} stars) into {folder} (once) ...", flush=True)
        run_ingest(IngestConfig(run_name=folder.name, runs_root=runs_root, demo_stars=demo_stars, overwrite=True))
    return folder


def ingested_objects(ingest_dir: Path) -> list[IngestedObject]:
    """All ingested objects of a folder, read once per process (the table command reuses them)."""
    key = ingest_dir.resolve()
    if key not in _OBJECT_CACHE:
        _OBJECT_CACHE[key] = read_ingested_objects(ingest_dir / "shards")
    return _OBJECT_CACHE[key]


def load_astro_splits(
    ingest_dir: Path, subset: str = "full", seed: int = 42, seq_len: int = 200, window_seed: int = 0
) -> AstroSplits:
    """Datasets of one (subset, seed) of an ingest folder.

    Args:
        ingest_dir: Folder written by ``domains.astro.ingest``.
        subset: One of :data:`SUBSETS`.
        seed: Split seed (use the same for pretraining and fine-tuning, else pretraining sees test rows).
        seq_len: Light-curve window length (the photometry tower's ``seq_len``).
        window_seed: Seed of the training split's random windows.

    Raises:
        FileNotFoundError: The (subset, seed) was not written by the ingest.
    """
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")
    split_dir = ingest_dir / "splits" / subset / str(seed)
    if not (split_dir / "info.json").is_file():
        available = sorted(p.name for p in (ingest_dir / "splits" / subset).glob("*")) if subset else []
        raise FileNotFoundError(f"{split_dir}: no such split (seeds ingested for {subset}: {available})")
    info = SplitInfo.load(split_dir / "info.json")
    objects = ingested_objects(ingest_dir)
    datasets = {}
    for name in ("train", "val", "test"):
        ids = pd.read_csv(split_dir / f"{name}.csv", dtype={"sample_id": str})["sample_id"].tolist()
        window = "random" if name == "train" else "centre"
        datasets[name] = AstroTrimodalDataset(objects, info, ids, window=window, seq_len=seq_len, seed=window_seed)
    return AstroSplits(datasets["train"], datasets["val"], datasets["test"], info, ingest_dir)


def collate_astro_batch(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch dataset samples into the model's input contract.

    Returns:
        ``{"photometry": {"values": (B, T, 9), "mask": (B, T)}, "spectra": (B, 3, L), "metadata": (B, 34),
        "label": (B,), "sample_id": list[str]}``.
    """
    batch = default_collate(list(samples))
    batch["photometry"] = {"values": batch["photometry"], "mask": batch.pop("photometry_mask")}
    return batch


def epoch_aware_batches(
    dataset: AstroTrimodalDataset, batch_size: int, seed: int, drop_last: bool = True
) -> Callable[[int, int], Iterator[dict[str, Any]]]:
    """The trainer's ``make_batches`` for a training split, reseeding its random windows every epoch."""
    from shared.data_iteration import batches_from_dataset

    inner = batches_from_dataset(
        dataset, batch_size, seed=seed, shuffle=True, drop_last=drop_last, collate=collate_astro_batch
    )

    def make_batches(epoch: int, start_batch: int = 0) -> Iterator[dict[str, Any]]:
        dataset.set_epoch(epoch)
        return inner(epoch, start_batch)

    return make_batches


def evaluation_batches(dataset: AstroTrimodalDataset, batch_size: int) -> Iterator[dict[str, Any]]:
    """All of ``dataset`` in order, in batches (the last one may be smaller)."""
    for start in range(0, len(dataset), batch_size):
        yield collate_astro_batch([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])


@torch.no_grad()
def map_batches(
    function: Callable[[dict[str, Any]], dict[str, torch.Tensor]],
    dataset: AstroTrimodalDataset,
    batch_size: int,
    device: torch.device,
    precision: str = "auto",
) -> dict[str, np.ndarray]:
    """Apply ``function`` to every batch of ``dataset`` (in order) and concatenate its outputs as float32."""
    outputs: dict[str, list[np.ndarray]] = {}
    for batch in evaluation_batches(dataset, batch_size):
        with autocast_for(device, precision):
            result = function(move_to_device(batch, device))
        for name, value in result.items():
            outputs.setdefault(name, []).append(value.float().cpu().numpy())
    if not outputs:
        raise ValueError("the dataset is empty")
    return {name: np.concatenate(parts) for name, parts in outputs.items()}
