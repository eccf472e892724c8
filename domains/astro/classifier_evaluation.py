"""Evaluating fine-tuned AstroM3 classifiers (the work of ``python -m domains.astro.evaluate``, also used by
fine-tuning): accuracy, per-class precision/recall/F1, confusion matrix, predictions, and the summary over
split seeds (mean, sample standard deviation and 95% interval from :mod:`shared.seed_statistics`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from domains.astro.datasets import AstroSplits, load_astro_splits, map_batches
from domains.astro.ingest_pipeline import resolve_ingest_dir
from domains.astro.input_errors import AstroInputError, MissingAstroFolderError
from domains.astro.model import AstroClassifier, model_config_from_dict
from shared.atomic_files import write_json_atomically, write_text_atomically
from shared.checkpoints import load_weights
from shared.device import pick_device
from shared.evaluation.classification import classification_metrics, save_confusion_matrix_png
from shared.run_folder import RunFolder
from shared.seed_statistics import summarize
from shared.user_errors import UserError

SPLITS_EVALUATED = ("test", "val")
"""Splits a classifier can be evaluated on."""

EVALUATION_OUTPUTS = ("eval/metrics.json", "eval/confusion_matrix.png", "eval/predictions.csv")
"""What :func:`evaluate_classifier` writes into a seed folder (test split; ``eval/<split>/`` for others)."""


@dataclass
class EvaluateConfig:
    """Evaluate a fine-tuning run (all its seeds) or one seed folder of it."""

    run: str = "runs/astro/finetune-demo"
    """A domains.astro.finetune run folder, or one of its seed-<N> folders."""
    split: str = "test"
    """Split to evaluate: test or val."""
    batch_size: int = 256
    """Objects per inference batch."""
    device: str = "auto"
    """'auto' (CUDA when available) or a torch device string."""


def predict(
    classifier: AstroClassifier, dataset: Any, batch_size: int = 256, device: torch.device | None = None
) -> dict[str, np.ndarray]:
    """Class probabilities ``(N, C)`` and true labels ``(N,)`` of ``dataset``, in dataset order."""
    device = device or pick_device()
    classifier = classifier.to(device).eval()
    outputs = map_batches(
        lambda batch: {"probabilities": classifier(batch)["logits"].float().softmax(-1), "label": batch["label"]},
        dataset,
        batch_size,
        device,
    )
    return {"probabilities": outputs["probabilities"], "labels": outputs["label"].astype(np.int64)}


def evaluate_classifier(
    classifier: AstroClassifier,
    dataset: Any,
    classes: list[str],
    out_dir: str | Path,
    batch_size: int = 256,
    device: torch.device | None = None,
    title: str = "AstroM3 classifier",
) -> dict[str, Any]:
    """Predict ``dataset`` and write ``metrics.json``, ``confusion_matrix.png``, ``predictions.csv``.

    Returns:
        The metrics dict (as in ``metrics.json``), plus ``n_objects``.
    """
    out_dir = Path(out_dir)
    predicted = predict(classifier, dataset, batch_size, device)
    probabilities, labels = predicted["probabilities"], predicted["labels"]
    metrics = classification_metrics(labels, probabilities, labels=list(range(len(classes))))
    metrics["labels"] = list(classes)
    metrics["per_class"] = {classes[int(k)]: v for k, v in metrics["per_class"].items()}
    metrics["n_objects"] = len(labels)
    write_json_atomically(out_dir / "metrics.json", metrics)
    save_confusion_matrix_png(metrics["confusion_matrix"], classes, out_dir / "confusion_matrix.png", title=title)
    table = pd.DataFrame(
        {
            "sample_id": [obj.sample_id for obj in dataset.objects],
            "true": [classes[i] for i in labels],
            "predicted": [classes[i] for i in probabilities.argmax(1)],
        }
    )
    for index, name in enumerate(classes):
        table[f"p_{name}"] = probabilities[:, index]
    write_text_atomically(out_dir / "predictions.csv", table.to_csv(index=False))
    return metrics


def load_finetuned_classifier(seed_dir: str | Path) -> tuple[AstroClassifier, dict[str, Any]]:
    """Rebuild a fine-tuned classifier from its seed folder (``classifier.json`` + ``model.safetensors``).

    Raises:
        MissingAstroFolderError: ``seed_dir`` is not a finished fine-tuning seed folder.
    """
    seed_dir = Path(seed_dir)
    spec_path, weights = seed_dir / "classifier.json", seed_dir / "model.safetensors"
    for path in (spec_path, weights):
        if not path.is_file():
            raise MissingAstroFolderError(
                f"{path}: missing; is {seed_dir} a finished domains.astro.finetune seed folder?"
            )
    try:
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
        classifier = AstroClassifier(
            spec["mode"], len(spec["classes"]), model_config_from_dict(spec["model"]), fusion=spec["fusion"]
        )
    except (ValueError, KeyError, TypeError) as error:  # JSON and UTF-8 errors are ValueErrors
        raise AstroInputError(spec_path, f"not a classifier spec ({type(error).__name__}: {error})") from None
    load_weights(classifier, weights)
    return classifier.eval(), spec


def seed_folders(run: str | Path, flag: str = "--run") -> list[Path]:
    """The seed folders of a fine-tuning run (or the folder itself when it is one).

    Raises:
        MissingAstroFolderError: no such folder, or no fine-tuned seed folder inside.
    """
    run = Path(run)
    if not run.is_dir():
        raise MissingAstroFolderError(f"{flag} {run}: no such run folder")
    if (run / "classifier.json").is_file():
        return [run]
    folders = sorted(p for p in run.glob("seed-*") if (p / "classifier.json").is_file())
    if not folders:
        raise MissingAstroFolderError(f"{flag} {run}: no fine-tuned seed folders (seed-*/classifier.json) inside")
    return folders


def evaluation_dir(seed_dir: Path, split: str) -> Path:
    """``eval/`` for the test split, ``eval/val/`` for validation."""
    return RunFolder(seed_dir).eval_dir(split)


def summarize_seeds(per_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Accuracy and macro-F1 over seeds: mean, sample standard deviation (ddof 1), 95% interval, values.

    Returns:
        ``{"seeds": [...], "accuracy": {...}, "macro_f1": {...}}``, each metric as
        :meth:`shared.seed_statistics.SeedSummary.as_dict` plus ``values`` (in seed order).
    """
    seeds = sorted(per_seed)
    summary: dict[str, Any] = {"seeds": seeds}
    for metric in ("accuracy", "macro_f1"):
        values = [per_seed[seed].get(metric) for seed in seeds]
        summary[metric] = {**summarize(values).as_dict(), "values": values}
    return summary


def format_summary(metric: dict[str, Any], digits: int = 4) -> str:
    """One metric of :func:`summarize_seeds` as ``"mean [low, high]"`` (or ``"mean (1 seed)"``)."""
    return summarize(metric["values"]).format(digits)


def evaluate_run(config: EvaluateConfig) -> dict[str, Any]:
    """Evaluate every seed folder of ``config.run``; returns the summary over seeds."""
    if config.split not in SPLITS_EVALUATED:
        raise UserError(f"--split: must be one of {list(SPLITS_EVALUATED)}, got {config.split!r}")
    if config.batch_size < 1:
        raise UserError(f"--batch_size: must be >= 1, got {config.batch_size}")
    device = pick_device(config.device)
    folders = seed_folders(config.run)
    per_seed: dict[int, dict[str, Any]] = {}
    for folder in folders:
        classifier, spec = load_finetuned_classifier(folder)
        ingest_dir = resolve_ingest_dir(spec.get("input", spec.get("data")))
        splits: AstroSplits = load_astro_splits(
            ingest_dir, spec["subset"], spec["seed"], spec["model"]["photometry"]["seq_len"]
        )
        dataset = splits.test if config.split == "test" else splits.val
        title = f"{spec['mode']} {'CLIP' if spec['clip_run'] else 'no CLIP'} {spec['subset']} seed {spec['seed']}"
        metrics = evaluate_classifier(
            classifier, dataset, splits.classes, evaluation_dir(folder, config.split), config.batch_size, device, title
        )
        per_seed[spec["seed"]] = metrics
        print(f"{folder}: {config.split} accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}")
    summary = summarize_seeds(per_seed)
    run = Path(config.run)
    written = [folder / name for folder in folders for name in _split_outputs(config.split)]
    if len(per_seed) > 1 or not (run / "classifier.json").is_file():
        written.append(write_json_atomically(run / "eval" / f"summary_{config.split}.json", summary))
    # The fine-tuning run's marker keeps listing every output with its current hash.
    marked = RunFolder(run.parent if (run / "classifier.json").is_file() else run)
    marked.record_outputs([str(path.relative_to(marked.path)) for path in written])
    return summary


def _split_outputs(split: str) -> list[str]:
    """The files :func:`evaluate_classifier` writes into a seed folder for ``split``."""
    return [name if split == "test" else name.replace("eval/", f"eval/{split}/", 1) for name in EVALUATION_OUTPUTS]
