"""What an MNAR run reports: estimator labels, per-fit metric names, seed summaries and the results files.

Every number over seeds goes through :mod:`shared.seed_statistics` (mean, sample standard deviation, 95%
interval; undefined values are left out and counted, never turned into numbers), and every table through its
``markdown_table``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shared.run_folder import MetricsLog, read_metrics
from shared.seed_statistics import SeedSummary, summarize


def estimator_label(name: str, clip: float, eta: float | None) -> str:
    """How an estimator with its clip ``M`` and popularity power ``η`` is named in tables and the store."""
    label = name
    if name.startswith("relmf_clipped") or (name == "ubpr" and clip > 0):
        label += f"(M={clip:g})"
    if eta is not None and name.startswith(("relmf", "ubpr")):
        label += f"[η={eta:g}]"
    return label


def fit_folder_name(fit_id: str) -> str:
    """A folder name for a fit id (``relmf_clipped(M=0.1)[η=0.5]/seed=0`` → ``relmf_clipped_M_0.1_eta_0.5_seed_0``)."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", fit_id.replace("η", "eta")).strip("_")


def copy_fit_metrics(log: MetricsLog, fit_dir: Path, fit_id: str) -> None:
    """Append a fit's ``metrics.csv`` rows to the run's log, each metric named ``<fit_id>/<metric>``."""
    rows = read_metrics(fit_dir)
    for row in rows:
        log.write(row["step"], row["epoch"], row["phase"], {f"{fit_id}/{row['metric']}": row["value"]})


def prefixed(summary: SeedSummary, prefix: str) -> dict[str, float | int | None]:
    """``summary.as_dict()`` with every key prefixed (``mean`` → ``relative_mean``)."""
    return {f"{prefix}{key}": value for key, value in summary.as_dict().items()}


def summaries_by_label(
    rows: list[dict[str, Any]], columns: list[str], label_key: str = "estimator"
) -> dict[str, dict[str, SeedSummary]]:
    """Seed summary of each column for each label, in the order labels first appear (missing cells undefined)."""
    labels = list(dict.fromkeys(row[label_key] for row in rows))
    return {
        label: {column: summarize(row.get(column) for row in rows if row[label_key] == label) for column in columns}
        for label in labels
    }


def finite_or_none(value: float) -> float | None:
    """``value``, or None where it is NaN or infinite (undefined in JSON)."""
    return float(value) if np.isfinite(value) else None


@dataclass
class ExperimentReport:
    """What one protocol produced, for the run folder and the store.

    Attributes:
        markdown: ``results.md``.
        summary: ``eval/metrics.json`` (the tables with their seed summaries).
        rows: one row per trained model (``results.json``).
        headline: a few metrics for the run's ``run.json`` summary.
        models: ``(model_name, model_version, model)`` of the models whose factors go to the store.
        dataset_name: name of the data in the store's sample ids.
        user_ids: original user ids (row order of the factors).
        item_ids: original item ids.
        outputs: files the protocol wrote inside the run folder besides the common ones (relative paths).
    """

    markdown: str
    summary: dict[str, Any]
    rows: list[dict[str, Any]]
    headline: dict[str, Any]
    models: list[tuple[str, str, Any]]
    dataset_name: str
    user_ids: np.ndarray
    item_ids: np.ndarray
    outputs: list[str] = field(default_factory=list)
