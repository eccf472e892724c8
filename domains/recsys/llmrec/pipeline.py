"""The ``domains.recsys.train`` pipeline: base LightGCN → candidates → augmentation → augmented LLMRec model.

With ``augmentation: kg`` (the default) a plain LightGCN base model is trained into ``<run>/base``, its top-k
candidates per user are augmented by the offline knowledge-graph backend into ``<run>/augmentation``, and
the LLMRec-style model is trained on the data plus those edges and attributes. Both models are selected on
validation and evaluated once on test. ``none``, ``layout`` or an augmentation folder skip the first two
steps.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from domains.recsys.llmrec.augmentation import (
    AUGMENTATION_DIR,
    AugmentConfig,
    augment_with_model,
    has_knowledge_graph,
)
from domains.recsys.llmrec.augmentation_files import AUGMENTATION_FILES, Augmentation, read_augmentation
from domains.recsys.llmrec.datasets import MOVIELENS_100K, DatasetConfig, is_llmrec_layout, load_dataset
from domains.recsys.llmrec.interactions import InteractionData
from domains.recsys.llmrec.model import RecommenderConfig, base_model_config, check_recommender_config
from domains.recsys.llmrec.released_layout import llmrec_layout_augmentation
from domains.recsys.llmrec.training import (
    MANIFEST_FILE,
    NDCG_VARIANTS,
    WEIGHTS_FILE,
    FitConfig,
    check_fit_config,
    default_trainer_config,
    headline_test_metrics,
    resolve_trainer,
    train_recommender,
    write_run_manifest,
)
from domains.recsys.recbole_io import RecboleTables
from shared.distributed import main_process_first, on_main_process
from shared.run_folder import CONFIG_FILE, EVAL_DIR, EVAL_METRICS_FILE, FINISHED_MARKER, METRICS_FILE, RunFolder
from shared.trainer import TrainerConfig, check_trainer_config
from shared.user_errors import UserError

COMMAND = "domains.recsys.train"
BASE_DIR = "base"
"""The base LightGCN's run folder inside the augmented run (``runs/recsys/<run>/base``)."""
AUGMENTATION_CHOICES = ("kg", "none", "layout")


@dataclass
class TrainConfig:
    """Train an LLMRec-style recommender (no arguments: the MovieLens-100K demo with KG augmentation)."""

    run_name: str = "demo"
    """Run folder name: runs/recsys/<run_name>/."""
    runs_root: str = "runs"
    """Root folder of run folders."""
    input: str = MOVIELENS_100K
    """'movielens-100k' (built in, from the recbole package), a folder of RecBole atomic files, or a folder in
    LLMRec's layout (it has train.json; its own split is used)."""
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    """How the input is read and split (split seed and ratios, rating threshold, text features)."""
    model: RecommenderConfig = field(default_factory=lambda: RecommenderConfig(prune_drop_fraction=0.71))
    """Architecture and losses of the trained model (default: side features and LLMRec's pruning, ω4 = 0.71)."""
    fit: FitConfig = field(default_factory=FitConfig)
    """Batch size, augmented share of each batch, evaluation batch, CPU threads."""
    trainer: TrainerConfig = field(default_factory=default_trainer_config)
    """Shared trainer settings: budget (max_epochs 20, or max_steps with max_epochs null), validation every
    validate_every_epochs, selection on select_metric, early stopping, seed (initialisation and batch order)."""
    augmentation: str = "kg"
    """'kg' (train a base LightGCN, take its candidates, augment with the offline knowledge-graph backend),
    'none', 'layout' (the augmentation pickles shipped in an LLMRec-layout input folder), or a folder
    written by domains.recsys.augment."""
    base_epochs: float = 20
    """Epochs of the base LightGCN that proposes candidates (augmentation 'kg'; replaces trainer.max_epochs)."""
    candidates_k: int = 10
    """Candidates per user for augmentation (LLMRec |C| = 10)."""
    ndcg_variant: str = "standard"
    """NDCG in eval/metrics.json: 'standard' or 'llmrec' (LLMRec's inflated variant; both are always written
    under their own keys, this picks the headline)."""


def _check(config: TrainConfig) -> None:
    check_trainer_config(config.trainer)  # before anything is read or written
    check_recommender_config(config.model)
    check_fit_config(config.fit)
    if config.ndcg_variant not in NDCG_VARIANTS:
        raise UserError(f"--ndcg_variant: must be one of {NDCG_VARIANTS}, got {config.ndcg_variant!r}")
    if config.augmentation == "kg" and config.base_epochs <= 0:
        raise UserError(f"--base_epochs: must be > 0, got {config.base_epochs}")
    if config.augmentation == "kg" and config.candidates_k < 2:
        raise UserError(f"--candidates_k: must be >= 2 (a liked and a disliked candidate), got {config.candidates_k}")
    if config.augmentation == "layout" and not is_llmrec_layout(config.input):
        raise UserError(f"--augmentation layout: --input {config.input} is not an LLMRec layout (no train.json)")
    if config.augmentation not in AUGMENTATION_CHOICES and not Path(config.augmentation).is_dir():
        raise UserError(
            f"--augmentation {config.augmentation}: no such folder (give {', '.join(AUGMENTATION_CHOICES)} or a "
            "folder written by domains.recsys.augment)"
        )


def _report_line(report: dict[str, Any]) -> str:
    test = report["test"]
    line = f"test recall@20 {test['recall@20']:.4f} ndcg@20 {test['ndcg@20']:.4f}"
    if "base_test" in report:
        base = report["base_test"]
        line += f" (base LightGCN: recall@20 {base['recall@20']:.4f} ndcg@20 {base['ndcg@20']:.4f})"
    return line


def _train_base(
    config: TrainConfig, data: InteractionData, tables: RecboleTables | None, run: RunFolder, report: dict[str, Any]
) -> Path:
    """Steps 1 and 2 of the KG pipeline: the base model (its own finished run folder), then the augmentation."""
    base = run.child(BASE_DIR)
    base_model_settings = base_model_config(config.model)
    # The trainer config is resolved already; the base model's budget is base_epochs on the same data.
    base_trainer = resolve_trainer(
        dataclasses.replace(config.trainer, max_epochs=config.base_epochs, max_steps=None), data, config.fit
    )
    base.save_config(
        {
            "role": "base LightGCN proposing the augmentation's candidates (domains.recsys.train, augmentation kg)",
            "input": config.input,
            "dataset": config.dataset,
            "model": base_model_settings,
            "fit": config.fit,
            "trainer": base_trainer,
        }
    )
    print(f"[1/3] base LightGCN ({config.base_epochs:g} epochs = {base_trainer.max_steps} steps) → {base.path}")
    base_model, _ = train_recommender(data, base_model_settings, config.fit, base_trainer, base.path)
    write_run_manifest(base.path, config.input, config.dataset, base_model_settings, None)
    report["base_test"] = on_main_process(
        lambda: headline_test_metrics(base_model, data, config.fit, config.ndcg_variant), "the base model's test"
    )
    base.write_eval_metrics({"dataset": data.name, "test": report["base_test"]})
    base.mark_finished(
        COMMAND,
        outputs=[CONFIG_FILE, METRICS_FILE, WEIGHTS_FILE, MANIFEST_FILE, f"{EVAL_DIR}/{EVAL_METRICS_FILE}"],
        summary={"recall@20": report["base_test"]["recall@20"], "ndcg@20": report["base_test"]["ndcg@20"]},
    )
    print("[2/3] knowledge-graph augmentation of the base model's candidates")
    augment_config = AugmentConfig(
        run=str(base.path),
        run_name=config.run_name,
        runs_root=config.runs_root,
        backend="kg",
        candidates_k=config.candidates_k,
        cache_dir=str(Path(config.dataset.cache_dir) / "kg_answers"),
    )
    with main_process_first("the knowledge-graph augmentation"):  # rank 0 writes it before anyone reads it
        out, result = augment_with_model(base_model, data, tables, augment_config, run.path / AUGMENTATION_DIR)
    report["augmentation"] = {task: vars(counts) for task, counts in result.summary.items()}
    return out


def run_training(config: TrainConfig) -> tuple[RunFolder, TrainConfig]:
    """Runs the configured training (and the KG augmentation pipeline when asked).

    The trainer's epoch budget is resolved to steps for the data before ``config.yaml`` is written, so the
    saved config is exactly what ran; a step budget and an epoch budget that disagree are refused.

    Returns:
        The finished run folder and the resolved config (as saved).

    Raises:
        UserError: bad settings or input (the message names the flag or file).
        NothingProduced: the input holds no training interaction.
    """
    started = time.perf_counter()
    _check(config)
    with main_process_first("loading the data set and its feature cache"):  # rank 0 builds caches, others read
        data, tables = load_dataset(config.input, config.dataset)
    print(
        f"{data.name}: {data.n_users} users, {data.n_items} items, train/val/test "
        f"{len(data.train)}/{len(data.val)}/{len(data.test)} interactions"
    )
    if config.augmentation == "kg" and not has_knowledge_graph(tables):
        raise UserError(
            f"--augmentation kg: --input {config.input} has no .kg and .link atomic files; "
            "use --augmentation none (or an augmentation folder)"
        )
    augmentation: Augmentation | None = None
    augmentation_dir: str | None = None
    if config.augmentation == "layout":
        augmentation_dir = "layout"
        augmentation = llmrec_layout_augmentation(config.input)
    elif config.augmentation not in ("kg", "none"):
        augmentation_dir = config.augmentation
        augmentation = read_augmentation(config.augmentation, data)
    config = replace(config, trainer=resolve_trainer(config.trainer, data, config.fit))
    run = RunFolder.create("recsys", config.run_name, config.runs_root)
    run.clear_finished()
    run.save_config(config)
    report: dict[str, Any] = {"dataset": data.name}
    outputs = [CONFIG_FILE, METRICS_FILE, WEIGHTS_FILE, MANIFEST_FILE, f"{EVAL_DIR}/{EVAL_METRICS_FILE}"]
    if config.augmentation == "kg":
        folder = _train_base(config, data, tables, run, report)
        augmentation_dir = str(folder)
        augmentation = read_augmentation(folder, data)
        outputs += [f"{BASE_DIR}/{name}" for name in (WEIGHTS_FILE, MANIFEST_FILE, FINISHED_MARKER)]
        outputs += [f"{AUGMENTATION_DIR}/{name}" for name in AUGMENTATION_FILES]
        print(f"      {len(augmentation.edges)} edges, {len(augmentation.item_attributes)} items with attributes")
        print(f"[3/3] augmented model ({config.trainer.max_steps} steps) → {run.path}")
    model, result = train_recommender(data, config.model, config.fit, config.trainer, run.path, augmentation)
    write_run_manifest(run.path, config.input, config.dataset, config.model, augmentation_dir)
    report["test"] = on_main_process(  # once, on rank 0 under torchrun; the result reaches every rank
        lambda: headline_test_metrics(model, data, config.fit, config.ndcg_variant), "the test evaluation"
    )
    report["validation_best"] = result.best_metric
    report["stop_reason"] = result.stop_reason
    report["steps"] = result.step
    report["seconds"] = round(time.perf_counter() - started, 1)
    run.write_eval_metrics(report)
    print(_report_line(report))
    run.mark_finished(
        COMMAND,
        outputs=outputs,
        summary={"recall@20": report["test"]["recall@20"], "ndcg@20": report["test"]["ndcg@20"], "steps": result.step},
    )
    return run, config
