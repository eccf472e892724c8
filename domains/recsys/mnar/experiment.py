"""One MNAR run from settings to a finished run folder: resolve, save the config, run the protocol, report.

``runs/recsys/<run-name>/`` (the core run-folder contract) holds ``config.yaml`` (exactly what ran: default
estimators, clip values, the rare-item threshold and trainer budgets filled in before it is written),
``metrics.csv`` (every fit's curves and test values, metric ``<fit>/<name>``), ``results.md`` and
``results.json`` (the tables and one row per trained model), ``eval/metrics.json``, the fits' folders
(``generator/`` or ``fits/``) and ``run.json``; user and item factors of the first seed's models go to the
embedding store.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from domains.recsys.mnar.config import MnarConfig, MnarConfigError, check_config, clip_values, estimator_names
from domains.recsys.mnar.real_data_experiment import (
    RealData,
    has_checkpoints,
    prepare_real_data,
    run_real_data_experiment,
)
from domains.recsys.mnar.report import ExperimentReport
from domains.recsys.mnar.semi_synthetic_experiment import run_semi_synthetic_experiment
from domains.recsys.mnar.store_export import write_factor_embeddings
from shared.atomic_files import write_json_atomically, write_text_atomically
from shared.run_folder import CONFIG_FILE, METRICS_FILE, MetricsLog, RunFolder, is_main_process
from shared.trainer import resolve_budget

COMMAND = "domains.recsys.mnar"
RESULTS_MARKDOWN = "results.md"
RESULTS_JSON = "results.json"


@dataclass
class MnarRun:
    """A finished MNAR run.

    Attributes:
        folder: the run folder.
        config: the settings that ran (as saved in ``config.yaml``).
        summary: the content of ``eval/metrics.json``.
        markdown: the content of ``results.md``.
        outputs: the files the run wrote (relative to the folder), as listed in ``run.json``.
    """

    folder: RunFolder
    config: MnarConfig
    summary: dict[str, Any]
    markdown: str
    outputs: list[str]


def default_run_name(config: MnarConfig) -> str:
    """``mnar-<dataset>`` with dashes (``mnar-semi-synthetic``)."""
    return f"mnar-{config.dataset.replace('_', '-')}"


def resolve_config(config: MnarConfig, data: RealData | None) -> MnarConfig:
    """The settings with every derived value filled in: what the run folder's ``config.yaml`` records.

    Fills the run name, the estimators and clip values (dataset defaults), and, for a real log, the rare-item
    threshold and the trainer's epoch budgets in steps (:func:`shared.trainer.resolve_budget`).
    """
    resolved = dataclasses.replace(
        config,
        run_name=config.run_name or default_run_name(config),
        estimators=estimator_names(config),
        clip=clip_values(config),
    )
    if data is None:
        return resolved
    return dataclasses.replace(
        resolved,
        rare_item_max_positives=data.rare_item_max_positives,
        trainer=resolve_budget(config.trainer, data.steps_per_epoch),
    )


def run_experiment(config: MnarConfig) -> MnarRun:
    """Check and resolve ``config``, run its protocol and write the run folder (and the store).

    ``config.cpu_threads`` (when > 0) sets torch's CPU threads for the rest of the process. Bad settings
    and bad data are refused before the run folder is created.

    Raises:
        MnarConfigError: a setting is out of range or does not fit the dataset.
        MnarDataError: a data file is missing or malformed.
    """
    check_config(config)
    if config.cpu_threads > 0:
        torch.set_num_threads(config.cpu_threads)
    data = None if config.is_semi_synthetic else prepare_real_data(config)
    config = resolve_config(config, data)
    run_name = config.run_name or default_run_name(config)
    if config.trainer.resume == "latest":
        candidate = RunFolder(Path(config.runs_root) / "recsys" / run_name)
        if not has_checkpoints(candidate):
            raise MnarConfigError(f"--trainer.resume latest: no checkpoint in {candidate.path}; run without it")
    folder = RunFolder.create("recsys", run_name, config.runs_root)
    folder.clear_finished()
    folder.save_config(config)
    folder.metrics_path.unlink(missing_ok=True)  # rebuilt from the fits' own logs
    log = MetricsLog(folder.path)
    if data is None:
        report = run_semi_synthetic_experiment(config, folder, log)
    else:
        report = run_real_data_experiment(config, data, folder, log)
    log.close()
    return _finish(config, folder, report)


def _finish(config: MnarConfig, folder: RunFolder, report: ExperimentReport) -> MnarRun:
    summary = dict(report.summary)
    if config.store and is_main_process():  # under torchrun rank 0 alone writes the store
        summary["embeddings_written"] = write_factor_embeddings(
            config.store, folder.run_id, report.dataset_name, report.models, report.user_ids, report.item_ids
        )
    write_text_atomically(folder.path / RESULTS_MARKDOWN, report.markdown)
    write_json_atomically(folder.path / RESULTS_JSON, {"summary": summary, "rows": report.rows})
    eval_path = folder.write_eval_metrics(summary)
    outputs = [
        CONFIG_FILE,
        METRICS_FILE,
        RESULTS_MARKDOWN,
        RESULTS_JSON,
        str(eval_path.relative_to(folder.path)),
        *report.outputs,
    ]
    headline = dict(report.headline)
    if "embeddings_written" in summary:
        headline["embeddings_written"] = summary["embeddings_written"]
    folder.mark_finished(command=COMMAND, outputs=outputs, summary=headline)
    return MnarRun(folder, config, summary, report.markdown, outputs)
