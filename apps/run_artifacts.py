"""Where the explorer finds the domains' run folders, and the trained models it loads from them.

Run folders live beside the store (``runs/<domain>/<run-name>/`` next to ``runs/embeddings.duckdb``, or
``$EXPLORER_RUNS``). Models are loaded through each domain's own loader and cached with
``st.cache_resource`` (one copy per server process, shared by sessions; inference only) on the device
:func:`shared.device.pick_device` chooses.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import streamlit as st

from apps.store_access import store_path

# The file that marks a finished run folder the explorer can use, per kind of run.
BIOMED_EXPORT_MARKER = "export/open_clip_config.json"
NEWS_RUN_MARKER = "detector.json"
RECSYS_RUN_MARKER = "recommender.json"
ASTRO_INGEST_MARKER = "ingest_report.json"


def runs_root() -> Path:
    """``$EXPLORER_RUNS``, else the folder that holds the store (``runs/``)."""
    configured = os.environ.get("EXPLORER_RUNS")
    return Path(configured) if configured else store_path().parent


def run_folders(domain: str, marker: str, prefer: list[str] | tuple[str, ...] = ()) -> list[Path]:
    """Run folders of ``domain`` (one level, plus ``<run>/base``) that contain ``marker``.

    Folders whose name occurs in one of ``prefer`` (e.g. the store's run ids for the chosen model) come
    first, then the rest, newest first.
    """
    base = runs_root() / domain
    if not base.is_dir():
        return []
    depth = marker.count("/")
    found = {path.parents[depth] for pattern in (f"*/{marker}", f"*/base/{marker}") for path in base.glob(pattern)}
    found = sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)
    return sorted(found, key=lambda p: not any(p.name in run_id for run_id in prefer))


def file_stamp(path: Path) -> int:
    """Modification time (ns) of ``path``, 0 if missing: part of a model cache key, so a retrained run reloads."""
    return path.stat().st_mtime_ns if path.exists() else 0


def biomed_encoder(export_dir: str) -> tuple[Any, Any]:
    """The exported open_clip ``local-dir:`` model of a biomed run, via biomed's inference loader.

    Returns:
        ``(BiomedClipModel, LoadedOpenClip)``: ``encode("image"|"text", x)`` and the run's
        ``preprocess_val`` / ``tokenizer``.
    """
    return _biomed_encoder(export_dir, file_stamp(Path(export_dir) / "open_clip_config.json"))


def news_detector(run_dir: str) -> Any:
    """A trained FND-CLIP detector (validation-selected weights) via news's ``load_detector``."""
    return _news_detector(run_dir, file_stamp(Path(run_dir) / "checkpoints" / "best.safetensors"))


def recsys_run(run_dir: str) -> Any:
    """A trained recommender and its data split via recsys's ``load_run``."""
    return _recsys_run(run_dir, file_stamp(Path(run_dir) / "model.safetensors"))


@st.cache_resource(show_spinner="Loading the biomed model …", max_entries=2)
def _biomed_encoder(export_dir: str, stamp: int) -> tuple[Any, Any]:
    """Cached :func:`biomed_encoder` (``stamp`` only keys the cache)."""
    from domains.biomed.model import load_model_for_inference
    from shared.device import pick_device

    return load_model_for_inference(f"local-dir:{export_dir}", pick_device())


@st.cache_resource(show_spinner="Loading the news detector …", max_entries=2)
def _news_detector(run_dir: str, stamp: int) -> Any:
    """Cached :func:`news_detector` (``stamp`` only keys the cache)."""
    from domains.news.detector import load_detector
    from shared.device import pick_device

    return load_detector(run_dir, "best", device=pick_device())


@st.cache_resource(show_spinner="Loading the recommender …", max_entries=4)
def _recsys_run(run_dir: str, stamp: int) -> Any:
    """Cached :func:`recsys_run` (``stamp`` only keys the cache)."""
    from domains.recsys.recommender import load_run
    from shared.device import pick_device

    return load_run(run_dir, pick_device())
