"""Ingested AstroM3 objects as model-ready torch datasets and batches (shared by the model commands).

An ingest folder (``python -m domains.astro.ingest``; layout in ``README_data.md``) holds the shards and
``splits/{subset}/{seed}/{train,val,test}.csv`` + ``info.json``. :class:`AstroTrimodalDataset` turns
ingested objects into the samples the towers take; :func:`load_astro_splits` turns one (subset, seed) into
three of them (random 200-step windows for training, centred ones for evaluation) and
:func:`collate_astro_batch` batches samples into the input contract of :mod:`domains.astro.model`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch.utils.data import default_collate

from domains.astro.catalogue import META_COLUMNS
from domains.astro.input_errors import MissingAstroFolderError
from domains.astro.preprocessing import SplitInfo, photometry_channels, window_photometry
from domains.astro.shard_samples import IngestedObject, read_ingested_objects
from shared.data_iteration import batches_from_dataset
from shared.device import autocast_for, move_to_device


class AstroTrimodalDataset:
    """Map-style torch dataset of AstroM3 samples for one split.

    Each item is ``{"photometry": (T, 9) float32, "photometry_mask": (T,) bool, "spectra": (3, 2575)
    float32, "metadata": (34,) float32, "label": int64, "sample_id": str}`` as torch tensors (the
    sample id stays a string). The photometry channels are ``t, flux, flux_err, amplitude,
    log10(period), lksl_statistic, rfr_score, log10(MAD), delta_t`` (the 4 catalogue features
    standardized with the split's train statistics); padded steps are all zero with mask ``False``.

    Args:
        objects: Ingested objects (e.g. from :func:`read_ingested_objects`).
        info: The split's :class:`~domains.astro.preprocessing.SplitInfo` (classes and train mean/std).
        sample_ids: Ids in this split (order kept); ``None`` keeps every object whose label is a class.
        window: ``"random"`` (training: a random ``seq_len`` window, reseeded per epoch and index) or
            ``"centre"`` (evaluation: the centred window).
        seq_len: Steps per light curve (AstroM3: 200).
        seed: Seed of the random windows.
    """

    def __init__(
        self,
        objects: Sequence[IngestedObject],
        info: SplitInfo,
        sample_ids: Sequence[str] | None = None,
        window: Literal["random", "centre"] = "centre",
        seq_len: int = 200,
        seed: int = 0,
    ) -> None:
        by_id = {obj.sample_id: obj for obj in objects}
        if sample_ids is None:
            chosen = [obj for obj in objects if obj.label in info.classes]
        else:
            missing = [s for s in sample_ids if s not in by_id]
            if missing:
                raise KeyError(f"{len(missing)} split ids are not among the ingested objects, e.g. {missing[:3]}")
            chosen = [by_id[s] for s in sample_ids]
        if window not in ("random", "centre"):
            raise ValueError(f"window must be 'random' or 'centre', got {window!r}")
        self.objects = chosen
        self.info = info
        self.window = window
        self.seq_len = seq_len
        self.seed = seed
        self.epoch = 0
        self.class_to_index = {name: i for i, name in enumerate(info.classes)}
        self._scaled = info.standardize(np.stack([obj.features for obj in chosen])) if chosen else np.zeros((0, 38))

    def set_epoch(self, epoch: int) -> None:
        """Reseed the random windows for ``epoch`` (so a resumed run sees the same windows)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.objects)

    @property
    def standardized_features(self) -> np.ndarray:
        """``(N, 38)`` catalogue features standardised with the split's train statistics (34 metadata, then
        the 4 photometric ones), in item order."""
        return self._scaled

    @property
    def labels(self) -> np.ndarray:
        """Integer labels of all items, in order."""
        return np.array([self.class_to_index[obj.label] for obj in self.objects], dtype=np.int64)

    def __getitem__(self, index: int) -> dict[str, Any]:
        obj = self.objects[index]
        scaled = self._scaled[index]
        n_meta = len(META_COLUMNS)
        channels = photometry_channels(obj.photometry, scaled[n_meta:], obj.log10_mad_flux, obj.delta_t_years)
        rng = np.random.default_rng((self.seed, self.epoch, index)) if self.window == "random" else None
        values, mask = window_photometry(channels, self.seq_len, self.window, rng)
        return {
            "photometry": torch.from_numpy(values),
            "photometry_mask": torch.from_numpy(mask),
            "spectra": torch.from_numpy(np.asarray(obj.spectrum, dtype=np.float32)),
            "metadata": torch.from_numpy(scaled[:n_meta].astype(np.float32)),
            "label": torch.tensor(self.class_to_index[obj.label], dtype=torch.int64),
            "sample_id": obj.sample_id,
        }


def ingest_modalities(ingest_dir: Path) -> list[str]:
    """The modalities an ingest folder holds (``ingest_report.json``; all three for ASAS-SN ingests)."""
    import json

    report = Path(ingest_dir) / "ingest_report.json"
    if report.is_file():
        return list(json.loads(report.read_text(encoding="utf-8")).get("modalities", _ALL_MODALITIES))
    return list(_ALL_MODALITIES)


_ALL_MODALITIES = ("photometry", "spectra", "metadata")


def require_modalities(ingest_dir: Path, needed: Sequence[str], flag: str) -> None:
    """Refuse a step that reads a modality the ingest folder does not hold (e.g. a photometry-only ingest).

    Raises:
        UserError: naming ``flag``, the folder, what it holds and what the step needs.
    """
    from shared.user_errors import UserError

    held = ingest_modalities(ingest_dir)
    missing = [m for m in needed if m not in held]
    if missing:
        raise UserError(
            f"{flag}: needs {list(needed)} but {ingest_dir} holds only {held} (ingested with --modalities); "
            "a photometry-only ingest serves --mode photo fine-tuning and embedding with a pretrained model"
        )


SUBSETS: tuple[str, ...] = ("full", "sub50", "sub25", "sub10")
"""Label budgets: all labels, then about 1/2, 1/4 and 1/10 of them (class-balanced caps)."""

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
        MissingAstroFolderError: The (subset, seed) was not written by the ingest.
    """
    if subset not in SUBSETS:
        raise ValueError(f"--subset: must be one of {SUBSETS}, got {subset!r}")
    split_dir = ingest_dir / "splits" / subset / str(seed)
    if not (split_dir / "info.json").is_file():
        available = sorted(p.name for p in (ingest_dir / "splits" / subset).glob("*")) if subset else []
        raise MissingAstroFolderError(f"{split_dir}: no such split (seeds ingested for {subset}: {available})")
    info = SplitInfo.load(split_dir / "info.json")
    objects = ingested_objects(ingest_dir)
    datasets = {}
    for name in ("train", "val", "test"):
        ids = pd.read_csv(split_dir / f"{name}.csv", dtype={"sample_id": str})["sample_id"].tolist()
        window = "random" if name == "train" else "centre"
        datasets[name] = AstroTrimodalDataset(objects, info, ids, window=window, seq_len=seq_len, seed=window_seed)
    return AstroSplits(datasets["train"], datasets["val"], datasets["test"], info, ingest_dir)


def require_splits(ingest_dir: Path, subsets: Sequence[str], seeds: Sequence[int], seeds_flag: str = "--seeds") -> None:
    """Check that the ingest folder holds every (subset, seed) before any training starts.

    Raises:
        MissingAstroFolderError: naming the missing split, the flag and the seeds there are.
    """
    for subset in subsets:
        for seed in seeds:
            if not (ingest_dir / "splits" / subset / str(seed) / "info.json").is_file():
                available = sorted(p.name for p in (ingest_dir / "splits" / subset).glob("*"))
                raise MissingAstroFolderError(
                    f"{seeds_flag}: split seed {seed} of subset {subset} is not in {ingest_dir / 'splits'} "
                    f"(seeds ingested for {subset}: {available})"
                )


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
