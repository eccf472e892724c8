"""Evaluate a biomedical CLIP: retrieval R@K on a held-out shard set and zero-shot classification.

Run ``python -m domains.biomed.evaluate --model runs/biomed/demo --shards runs/biomed/demo_corpus/test``.
Zero-shot uses template ensembles (the mean of the normalised prompt embeddings per class, as open_clip
and BiomedCLIP); presets carry BiomedCLIP's class names and templates for PCam and RSNA, and one for
the demo corpus. Results go to ``eval/metrics.json`` (atomically).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: BiomedCLIP's zero-shot settings (two templates per task, from the paper), plus the demo corpus.
ZERO_SHOT_PRESETS: dict[str, dict[str, Any]] = {
    "pcam": {
        "label_field": "label",
        "classnames": {"0": "normal lymph node", "1": "lymph node metastasis"},
        "templates": ["this is an image of {}", "{} presented in image"],
    },
    "rsna": {
        "label_field": "label",
        "classnames": {"0": "normal lung", "1": "pneumonia"},
        "templates": ["a photo of {}", "{} presented in image"],
    },
    "demo": {
        "label_field": "generator.kind",
        "classnames": {
            "fluorescence": "fluorescence microscopy",
            "histology": "H&E stained histology",
            "radiograph": "chest radiograph",
            "mri": "brain MRI",
            "ultrasound": "ultrasound image",
        },
        "templates": ["a photo of {}", "{} presented in image", "this is an image of {}"],
    },
}


@dataclass
class EvaluateConfig:
    """Evaluate a model on a shard set: image–text retrieval and zero-shot classification."""

    model: str = "runs/biomed/demo"
    """A pretrain run folder, an exported local-dir folder, or a model source (preset, JSON, local-dir:, hf-hub:)."""
    shards: str = "runs/biomed/demo_corpus/test"
    """Held-out shard set in the BIOMEDICA layout: a folder, a brace pattern or a URL (join sources with '::')."""
    out_dir: str = ""
    """Where eval/metrics.json goes; empty = <model>/eval for a run folder, else runs/biomed/evaluate/eval."""
    batch_size: int = 64
    """Samples per encoding batch."""
    ks: list[int] = field(default_factory=lambda: [1, 5, 10])
    """K values of Recall@K."""
    zero_shot: str = "demo"
    """Zero-shot preset (pcam, rsna, demo), 'custom' to use the fields below, or 'none'."""
    label_field: str = ""
    """Custom zero-shot: dotted path of the label in each sample's JSON."""
    classnames: dict[str, str] = field(default_factory=dict)
    """Custom zero-shot: label value → class name used in the prompts."""
    templates: list[str] = field(default_factory=list)
    """Custom zero-shot: prompt templates with a '{}' slot."""
    device: str = "auto"
    """cpu, cuda or auto."""


@dataclass
class EncodedShards:
    """Embeddings and identities of every sample of a shard set, in stream order."""

    keys: list[str]
    captions: list[str]
    labels: list[str]
    metadata: list[dict[str, Any]]
    image: np.ndarray
    """(N, D) L2-normalized image embeddings."""
    text: np.ndarray
    """(N, D) L2-normalized caption embeddings."""


def make_eval_stream(shards: str, decoder: Any, batch_size: int) -> Any:
    """An unshuffled single pass over a shard set with the core ``ShardStream``."""
    from shared.shard_stream import ShardStream

    return ShardStream(shards, decoder, batch_size, mode="epoch", shuffle_buffer=0, drop_last=False)


@torch.no_grad()
def encode_shards(
    model: Any, stream: Any, device: torch.device | str = "cpu", precision: str = "auto"
) -> EncodedShards:
    """Encode every sample of one pass of ``stream`` with a :class:`~domains.biomed.model.BiomedClipModel`."""
    from shared.device import autocast_for

    device = torch.device(device)
    keys: list[str] = []
    captions: list[str] = []
    labels: list[str] = []
    metadata: list[dict[str, Any]] = []
    images, texts = [], []
    model.eval()
    for batch in stream.batches(0, 0):
        with autocast_for(device, precision):
            features = model.compute_features({"image": batch["image"].to(device), "text": batch["text"].to(device)})
        images.append(features["image"].float().cpu().numpy())
        texts.append(features["text"].float().cpu().numpy())
        keys += list(batch["key"])
        captions += list(batch["caption"])
        labels += list(batch["label"])
        metadata += [json.loads(m) for m in batch["metadata"]]
    if not keys:
        raise ValueError("the shard set yielded no samples (check the path, filters and the stream report)")
    return EncodedShards(keys, captions, labels, metadata, np.concatenate(images), np.concatenate(texts))


def retrieval_report(encoded: EncodedShards, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Image→text and text→image Recall@K and ranks (identical captions tie, they do not count as misses)."""
    from shared.evaluation import retrieval_metrics

    return retrieval_metrics(encoded.image, encoded.text, ks=tuple(ks), query_name="image", target_name="text")


def zero_shot_report(
    model: Any,
    tokenizer: Any,
    encoded: EncodedShards,
    classnames: Mapping[str, str],
    templates: Sequence[str],
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Zero-shot accuracy of the image embeddings against template-ensemble class weights.

    Samples whose label is not among ``classnames`` are left out (and counted).
    """
    from shared.evaluation import zero_shot_classifier, zero_shot_evaluate

    label_values = list(classnames)
    index = {value: i for i, value in enumerate(label_values)}
    rows = [i for i, label in enumerate(encoded.labels) if label in index]
    if not rows:
        raise ValueError(f"no sample has a label among {label_values}; check label_field")

    def encode_text(prompts: list[str]) -> np.ndarray:
        with torch.no_grad():
            tokens = tokenizer(prompts).to(device)
            return model.encode("text", tokens).float().cpu().numpy()

    weights = zero_shot_classifier(encode_text, [classnames[v] for v in label_values], list(templates))
    truth = np.array([index[encoded.labels[i]] for i in rows])
    scores = zero_shot_evaluate(encoded.image[rows], truth, weights)
    return {**scores, "num_samples": len(rows), "num_unlabelled": len(encoded.labels) - len(rows),
            "classes": [classnames[v] for v in label_values]}  # fmt: skip


def zero_shot_settings(config: EvaluateConfig) -> dict[str, Any] | None:
    """The label field, class names and templates the config asks for (None: no zero-shot)."""
    if config.zero_shot == "none":
        return None
    if config.zero_shot == "custom":
        if not (config.label_field and config.classnames and config.templates):
            raise ValueError("zero_shot=custom needs label_field, classnames and templates")
        return {"label_field": config.label_field, "classnames": config.classnames, "templates": config.templates}
    if config.zero_shot not in ZERO_SHOT_PRESETS:
        raise ValueError(
            f"unknown zero_shot preset {config.zero_shot!r}; choose {sorted(ZERO_SHOT_PRESETS)}, custom or none"
        )
    return ZERO_SHOT_PRESETS[config.zero_shot]


def evaluate_model(
    model: Any,
    loaded: Any,
    shards: str,
    batch_size: int = 64,
    ks: Sequence[int] = (1, 5, 10),
    zero_shot: Mapping[str, Any] | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Retrieval (and zero-shot, when settings are given) on one pass of ``shards``."""
    from domains.biomed.data import BiomedicaDecoder

    label_field = zero_shot["label_field"] if zero_shot else ""
    decoder = BiomedicaDecoder(loaded.preprocess_val, loaded.tokenizer, label_field=label_field)
    stream = make_eval_stream(shards, decoder, batch_size)
    encoded = encode_shards(model, stream, device)
    results: dict[str, Any] = {"num_samples": len(encoded.keys), "retrieval": retrieval_report(encoded, ks)}
    if zero_shot:
        results["zero_shot"] = zero_shot_report(
            model, loaded.tokenizer, encoded, zero_shot["classnames"], zero_shot["templates"], device
        )
    report = stream.report()
    results["stream"] = {
        k: report[k] for k in ("samples_decoded", "samples_failed", "filtered_out", "failures_by_reason")
    }
    return results


def write_metrics(metrics: Mapping[str, Any], eval_dir: str | Path) -> Path:
    """Write ``metrics.json`` atomically into ``eval_dir``."""
    from shared.cli import write_text_atomically

    path = Path(eval_dir) / "metrics.json"
    write_text_atomically(path, json.dumps(metrics, indent=2, sort_keys=True, default=float) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> Path:
    """Command-line entry point: ``python -m domains.biomed.evaluate --help``."""
    from shared.cli import parse_config
    from shared.device import pick_device

    config = parse_config(EvaluateConfig, argv, prog="python -m domains.biomed.evaluate")
    from domains.biomed.model import load_model_for_inference

    device = pick_device(config.device)
    model, loaded = load_model_for_inference(config.model, device)
    metrics = evaluate_model(
        model, loaded, config.shards, config.batch_size, config.ks, zero_shot_settings(config), device
    )
    metrics.update({"model": config.model, "shards": config.shards})
    model_dir = Path(config.model)
    if config.out_dir:
        eval_dir = Path(config.out_dir)
    elif (model_dir / "config.yaml").is_file():
        eval_dir = model_dir / "eval"
    else:
        eval_dir = Path("runs/biomed/evaluate/eval")
    path = write_metrics(metrics, eval_dir)
    retrieval = metrics["retrieval"]
    print(f"image→text R@1 {retrieval['image_to_text_R@1']:.3f}, text→image R@1 {retrieval['text_to_image_R@1']:.3f}"
          + (f", zero-shot top-1 {metrics['zero_shot']['top1']:.3f}" if "zero_shot" in metrics else ""))  # fmt: skip
    print(f"Wrote {path}")
    print(f"Next: python -m domains.biomed.embed --model {config.model} --shards {config.shards}")
    return path


if __name__ == "__main__":
    main()
