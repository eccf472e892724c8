"""Where the explorer finds the domains' finished run folders, and the trained models it loads from them.

Run folders live beside the store (``runs/<domain>/<run-name>/`` next to ``runs/embeddings.duckdb``, or
``$EXPLORER_RUNS``). A run is usable once it finished: every domain's commands end by writing the one
marker of the run-folder contract, ``run.json`` (:meth:`shared.run_folder.RunFolder.mark_finished`), which
names the command that ran; an interrupted or running folder has none and is never loaded. Models are
loaded through each domain's own loader and cached with ``st.cache_resource`` (one copy per server process,
shared by sessions; inference only) on the device :func:`shared.device.pick_device` chooses.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from apps.store_access import store_path
from shared.run_folder import RunFolder, finished_runs

# The commands whose finished runs the pages load (the ``command`` recorded in each run's ``run.json``).
BIOMED_PRETRAIN_COMMAND = "domains.biomed.pretrain"
NEWS_TRAIN_COMMAND = "domains.news.train"
RECSYS_TRAIN_COMMAND = "domains.recsys.train"
ASTRO_INGEST_COMMAND = "domains.astro.ingest"


def runs_root() -> Path:
    """``$EXPLORER_RUNS``, else the folder that holds the store (``runs/``)."""
    configured = os.environ.get("EXPLORER_RUNS")
    return Path(configured) if configured else store_path().parent


def finished_run_folders(domain: str, command: str, prefer: Sequence[str] = ()) -> list[Path]:
    """Finished runs of ``command`` in ``domain`` (one level, plus nested ``<run>/<sub>/``).

    Folders named by one of ``prefer`` (e.g. the store's run ids for the chosen model) come first, then the
    rest, newest first.
    """
    folders = [folder.path for folder in finished_runs(runs_root(), domain, command=command)]
    return sorted(folders, key=lambda path: not any(names_run(run_id, path.name) for run_id in prefer))


def names_run(run_id: str, name: str) -> bool:
    """Whether a store run id names the run folder ``name``: as ``<domain>/<name>`` (``RunFolder.run_id``),
    as the bare name, or as a part between ``/`` or ``-`` separators (e.g. ``news-demo``)."""
    return re.search(rf"(^|[/-]){re.escape(name)}($|[/-])", run_id) is not None


def finished_subrun(run_dir: str | Path, name: str) -> Path | None:
    """The finished run nested in ``run_dir`` as ``<run_dir>/<name>`` (e.g. recsys's ``base`` model), or None."""
    folder = RunFolder(Path(run_dir) / name)
    return folder.path if folder.is_finished else None


def finished_run_table(domains: Sequence[str] = ("biomed", "astro", "news", "recsys")) -> pd.DataFrame:
    """One row per finished run under :func:`runs_root`, newest first: folder, command, time and summary.

    Everything comes from the runs' ``run.json`` markers (the summary is the command's headline metrics
    or counts, as JSON text).
    """
    root = runs_root()
    rows = []
    for domain in domains:
        for folder in finished_runs(root, domain):
            marker = folder.marker()
            rows.append(
                {
                    "run": folder.path.relative_to(root).as_posix(),
                    "command": marker.get("command", ""),
                    "finished_at": marker.get("finished_at", ""),
                    "summary": json.dumps(marker.get("summary") or {}, sort_keys=True),
                }
            )
    frame = pd.DataFrame(rows, columns=["run", "command", "finished_at", "summary"])
    return frame.sort_values("finished_at", ascending=False, kind="stable").reset_index(drop=True)


def config_strings(run_dir: str | Path) -> list[str]:
    """Every non-empty string value of a run's saved ``config.yaml`` (paths among them), depth first."""
    try:
        config = RunFolder(Path(run_dir)).load_config()
    except Exception:  # noqa: BLE001 — a run without a readable config simply names no files
        return []

    def strings(value: Any) -> list[str]:
        if isinstance(value, dict):
            return [text for item in value.values() for text in strings(item)]
        if isinstance(value, list):
            return [text for item in value for text in strings(item)]
        return [value] if isinstance(value, str) and value else []

    return strings(config)


def training_curves(run_dir: str | Path) -> pd.DataFrame:
    """A run's ``metrics.csv`` (the core's one schema: step, epoch, phase, metric, value) as a table."""
    from shared.run_folder import read_metrics

    rows = read_metrics(run_dir)
    return pd.DataFrame(rows, columns=["step", "epoch", "phase", "metric", "value"])


def headline_metrics(domains: Sequence[str] = ("biomed", "astro", "news", "recsys")) -> pd.DataFrame:
    """One row per (finished run, headline metric) from the runs' ``run.json`` summaries, newest runs first."""
    rows = []
    for domain in domains:
        for folder in finished_runs(runs_root(), domain):
            marker = folder.marker()
            for name, value in (marker.get("summary") or {}).items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    rows.append(
                        {
                            "domain": domain,
                            "run": folder.path.relative_to(runs_root()).as_posix(),
                            "command": marker.get("command", ""),
                            "metric": name,
                            "value": float(value),
                            "finished_at": marker.get("finished_at", ""),
                        }
                    )
    return pd.DataFrame(rows, columns=["domain", "run", "command", "metric", "value", "finished_at"])


def score_news_post(run_dir: str, text: str, image_data: bytes) -> dict[str, Any]:
    """One post scored exactly as ``python -m domains.news.detect --text … --image …`` scores it.

    The upload is written to a private temporary file and goes through news's own
    :func:`domains.news.post_scoring.classify_posts` (which reads the image with news's one image reader,
    compositing transparency onto white) with the run's cached detector, so the explorer and the CLI
    give the same numbers for the same post.

    Raises:
        ValueError: The post cannot be classified (the reason from news's library).
    """
    import tempfile

    from domains.news.data import NewsPost
    from domains.news.post_scoring import classify_posts

    with tempfile.TemporaryDirectory(prefix="explorer-news-") as folder:
        image_path = Path(folder) / "upload"
        image_path.write_bytes(image_data)
        post = NewsPost("upload", text, None, "explorer", [image_path], None)
        result = classify_posts(news_detector(run_dir), [post], 1)[0]
    if "skipped" in result:
        raise ValueError(f"cannot classify the post: {result['skipped']}")
    return result


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
    from domains.news.trained_detector import load_detector
    from shared.device import pick_device

    return load_detector(run_dir, "best", device=pick_device())


@st.cache_resource(show_spinner="Loading the recommender …", max_entries=4)
def _recsys_run(run_dir: str, stamp: int) -> Any:
    """Cached :func:`recsys_run` (``stamp`` only keys the cache)."""
    from domains.recsys.llmrec.training import load_run
    from shared.device import pick_device

    return load_run(run_dir, pick_device())
