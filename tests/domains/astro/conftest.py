"""Fixtures of the astro model tests: a tiny synthetic ingest folder (shards + splits, written through the
data half's own writers), a tiny model config, and one torch thread.

Three classes whose photometry, spectra and catalogue features each carry the class (plus noise), so a
few optimizer steps are enough to beat chance in every modality.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from domains.astro.ingest_pipeline import write_splits
from domains.astro.model import AstroModelConfig, MetadataTowerConfig, PhotometryTowerConfig, SpectraTowerConfig
from domains.astro.shard_samples import IngestedObject, encode_shard_sample
from shared.cli import field_docstrings
from shared.shards import ShardWriter

CLASSES = ["EW", "SR", "RRAB"]
SEQ_LEN = 32


def tiny_model_config() -> AstroModelConfig:
    """~50k-parameter AstroM3 for 32-step windows (CPU tests)."""
    return AstroModelConfig(
        photometry=PhotometryTowerConfig(seq_len=SEQ_LEN, d_model=8, n_layers=1, n_heads=2, d_ff=16, dropout=0.0),
        spectra=SpectraTowerConfig(channels=[4, 4, 2, 2], dropout=0.0),
        metadata=MetadataTowerConfig(hidden_dim=16, dropout=0.0),
        embed_dim=16,
    )


def synthetic_object(index: int, rng: np.random.Generator) -> IngestedObject:
    """One object of class ``index % 3`` with a class-dependent signal in every modality."""
    label = index % len(CLASSES)
    n_points = int(rng.integers(20, 60))
    t = np.sort(rng.uniform(0, 1, n_points))
    period = (0.05, 0.2, 0.5)[label]
    flux = np.sin(2 * np.pi * t / period) * (1 + label) + rng.normal(0, 0.2, n_points)
    photometry = np.stack([t, flux, np.full(n_points, 0.1)], axis=1).astype(np.float32)
    wavelength = np.linspace(0, 1, 2575)
    spectrum = np.stack(
        [
            np.sin(2 * np.pi * (label + 1) * wavelength) + rng.normal(0, 0.3, 2575),
            np.full(2575, 0.1),
            np.full(2575, float(label)),
        ]
    ).astype(np.float32)
    features = rng.normal(0, 1, 38)
    features[:8] += 3.0 * label
    return IngestedObject(
        sample_id=str(10_000_000 + index),
        label=CLASSES[label],
        photometry=photometry,
        log10_mad_flux=float(rng.normal()),
        delta_t_years=float(rng.uniform(1, 5)),
        spectrum=spectrum,
        features=features,
    )


def write_synthetic_ingest(root: Path, n_objects: int = 120, seeds: tuple[int, ...] = (1, 2)) -> Path:
    """Write ``root/shards`` and ``root/splits/{full,sub50}/{seed}`` like ``domains.astro.ingest``."""
    rng = np.random.default_rng(0)
    objects = [synthetic_object(i, rng) for i in range(n_objects)]
    with ShardWriter(root / "shards", prefix="astro", max_samples=50) as writer:
        for obj in objects:
            writer.write(encode_shard_sample(obj))
    ingested = pd.DataFrame({"sample_id": [o.sample_id for o in objects], "label": [o.label for o in objects]})
    write_splits(
        ingested["sample_id"],
        ingested,
        {o.sample_id: o.features for o in objects},
        CLASSES,
        list(seeds),
        ["full", "sub50"],
        root / "splits",
    )
    return root


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine they lose ~50x."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_astro_config() -> Callable[[], AstroModelConfig]:
    """Factory of the tiny model config (a fresh object per call)."""
    return tiny_model_config


@pytest.fixture(scope="session")
def write_astro_ingest() -> Callable[..., Path]:
    """:func:`write_synthetic_ingest`, for tests that need an ingest folder."""
    return write_synthetic_ingest


def check_help_documents_every_option(config_cls: type, text: str) -> None:
    """Every field of ``config_cls`` (recursively through astro's own nested dataclasses) has a docstring,
    its flag is in the ``--help`` text, and so are the first words of its docstring."""
    squeezed = "".join(text.split())  # argparse wraps lines (also at hyphens)

    def check(cls: type, prefix: str) -> None:
        docs = field_docstrings(cls)
        hints = typing.get_type_hints(cls)
        for item in dataclasses.fields(cls):
            flag = f"--{prefix}{item.name}"
            assert docs[item.name], f"{flag} ({cls.__name__}.{item.name}) has no docstring"
            assert flag in text, f"{flag} missing from --help"
            first_words = "".join(docs[item.name].split()[:4]).rstrip(".,;:")  # group titles end in ":"
            assert first_words in squeezed, f"{flag}: {docs[item.name][:40]!r} missing from --help"
            nested = hints[item.name]
            if dataclasses.is_dataclass(nested) and nested.__module__.startswith("domains.astro"):
                check(nested, f"{prefix}{item.name}.")

    check(config_cls, "")


@pytest.fixture(scope="session")
def help_text() -> Callable[[Callable[[list[str]], object], pytest.CaptureFixture[str]], str]:
    """Run a command's ``main(["--help"])`` and return what it printed (it must exit 0)."""

    def run(main: Callable[[list[str]], object], capsys: pytest.CaptureFixture[str]) -> str:
        with pytest.raises(SystemExit) as exited:
            main(["--help"])
        assert exited.value.code == 0
        return capsys.readouterr().out

    return run


@pytest.fixture(scope="session")
def assert_help_documents_every_option() -> Callable[..., None]:
    """:func:`check_help_documents_every_option`, for the per-command help tests."""
    return check_help_documents_every_option
