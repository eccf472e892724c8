"""Evaluate fine-tuned AstroM3 classifiers: accuracy, per-class precision/recall/F1, confusion matrix.

    python -m domains.astro.evaluate --run runs/astro/finetune-demo           # every seed of a run
    python -m domains.astro.evaluate --run runs/astro/finetune-demo/seed-42 --split val

For each seed folder writes ``eval/metrics.json`` (``eval/val/`` for the validation split) (from the core's ``classification_metrics``: accuracy,
macro-F1, per-class P/R/F1/support, confusion matrix, ROC-AUC, ECE), ``eval/confusion_matrix.png`` and
``eval/predictions.csv`` (sample id, true and predicted class, probabilities); the run folder gets
``eval/summary.json`` with the mean and standard deviation over seeds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from domains.astro.model import AstroClassifier, model_config_from_dict
from domains.astro.training_data import AstroSplits, load_astro_splits, map_batches, resolve_ingest_dir
from shared.checkpoints import load_weights
from shared.cli import parse_config, write_text_atomically
from shared.device import pick_device
from shared.evaluation.classification import classification_metrics, save_confusion_matrix_png


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
    write_text_atomically(out_dir / "metrics.json", json.dumps(metrics, indent=2))
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
    """Rebuild a fine-tuned classifier from its seed folder (``classifier.json`` + ``model.safetensors``)."""
    seed_dir = Path(seed_dir)
    spec_path, weights = seed_dir / "classifier.json", seed_dir / "model.safetensors"
    for path in (spec_path, weights):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; is {seed_dir} a finished domains.astro.finetune seed folder?")
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    classifier = AstroClassifier(
        spec["mode"], len(spec["classes"]), model_config_from_dict(spec["model"]), fusion=spec["fusion"]
    )
    load_weights(classifier, weights)
    return classifier.eval(), spec


def seed_folders(run: str | Path) -> list[Path]:
    """The seed folders of a fine-tuning run (or the folder itself when it is one)."""
    run = Path(run)
    if (run / "classifier.json").is_file():
        return [run]
    folders = sorted(p for p in run.glob("seed-*") if (p / "classifier.json").is_file())
    if not folders:
        raise FileNotFoundError(f"{run}: no fine-tuned seed folders (seed-*/classifier.json) inside")
    return folders


def evaluation_dir(seed_dir: Path, split: str) -> Path:
    """``eval/`` for the test split, ``eval/val/`` for validation."""
    return seed_dir / "eval" if split == "test" else seed_dir / "eval" / split


def summarize_seeds(per_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation (ddof 0; 0 for one seed) of accuracy and macro-F1 over seeds."""
    summary: dict[str, Any] = {"seeds": sorted(per_seed)}
    for metric in ("accuracy", "macro_f1"):
        values = np.array([per_seed[s][metric] for s in sorted(per_seed)], dtype=float)
        summary[metric] = {"mean": float(values.mean()), "std": float(values.std()), "values": values.tolist()}
    return summary


def evaluate_run(config: EvaluateConfig) -> dict[str, Any]:
    """Evaluate every seed folder of ``config.run``; returns the summary."""
    if config.split not in ("test", "val"):
        raise ValueError(f"split must be 'test' or 'val', got {config.split!r}")
    device = pick_device(config.device)
    per_seed: dict[int, dict[str, Any]] = {}
    for folder in seed_folders(config.run):
        classifier, spec = load_finetuned_classifier(folder)
        splits: AstroSplits = load_astro_splits(
            resolve_ingest_dir(spec["data"]), spec["subset"], spec["seed"], spec["model"]["photometry"]["seq_len"]
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
    if len(per_seed) > 1 or not (run / "classifier.json").is_file():
        write_text_atomically(run / "eval" / f"summary_{config.split}.json", json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point (``python -m domains.astro.evaluate --help``)."""
    config = parse_config(EvaluateConfig, argv, prog="python -m domains.astro.evaluate", description=__doc__)
    summary = evaluate_run(config)
    accuracy = summary["accuracy"]
    print(f"{config.split} accuracy over seeds {summary['seeds']}: {accuracy['mean']:.4f} ± {accuracy['std']:.4f}")
    where = "eval/" if config.split == "test" else "eval/val/"
    print(f"wrote {where}metrics.json, confusion_matrix.png, predictions.csv in each seed folder of {config.run}")
    print("next: python -m domains.astro.table   (the full modality x CLIP x label-budget table)")
    return summary


if __name__ == "__main__":
    main()
