"""Where the explorer finds the domains' run folders, and the trained models it loads from them.

Run folders live beside the store (``runs/<domain>/<run-name>/`` next to ``runs/embeddings.duckdb``, or
``$EXPLORER_RUNS``). Models are loaded through each domain's own loader and cached with
``st.cache_resource`` (one copy per server process, shared by sessions; inference only).
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


@st.cache_resource(show_spinner="Loading the biomed model …", max_entries=2)
def biomed_encoder(export_dir: str) -> tuple[Any, Any]:
    """The exported open_clip ``local-dir:`` model of a biomed run, via biomed's inference loader.

    Returns:
        ``(BiomedClipModel, LoadedOpenClip)``: ``encode("image"|"text", x)`` and the run's
        ``preprocess_val`` / ``tokenizer``.
    """
    from domains.biomed.model import load_model_for_inference

    return load_model_for_inference(f"local-dir:{export_dir}", "cpu")


@st.cache_resource(show_spinner="Loading the news detector …", max_entries=2)
def news_detector(run_dir: str) -> Any:
    """A trained FND-CLIP detector (validation-selected weights) via news's ``load_detector``."""
    import torch

    from domains.news.detector import load_detector

    return load_detector(run_dir, "best", device=torch.device("cpu"))


@st.cache_resource(show_spinner="Loading the recommender …", max_entries=4)
def recsys_run(run_dir: str) -> Any:
    """A trained recommender and its data split via recsys's ``load_run``."""
    from domains.recsys.recommender import load_run

    return load_run(run_dir, "cpu")
