"""Evaluating a biomedical CLIP: retrieval R@K on a held-out shard set and zero-shot classification.

:func:`evaluate_and_record` is the whole ``python -m domains.biomed.evaluate`` step: load the model a
:class:`EvaluateConfig` names, evaluate it and write the metrics into a run folder.

Zero-shot uses template ensembles (the mean of the normalised prompt embeddings per class, as open_clip
and BiomedCLIP); presets carry BiomedCLIP's class names and templates for PCam and RSNA, and one for
the demo corpus. The metrics themselves are the core's (``shared.evaluation``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from domains.biomed.biomedica import BiomedicaDecoder, eval_stream
from domains.biomed.demo import generated_figure_grid
from domains.biomed.model import load_trained_model
from shared.run_folder import RunFolder
from shared.user_errors import NothingProduced, UserError

COMMAND = "domains.biomed.evaluate"

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
    # Which of all 45 attribute combinations of the demo generator an image shows, the caption as the
    # prompt. On the demo's held-out split every true combination is one never seen in training, while the
    # 34 seen combinations compete as distractors: zero-shot accuracy on unseen compositions.
    "demo_compositions": {
        "label_field": "generator.combination",
        "classnames": {figure.combination: figure.caption() for figure in generated_figure_grid()},
        "templates": ["{}"],
    },
}


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


@torch.no_grad()
def encode_shards(
    model: Any, stream: Any, device: torch.device | str = "cpu", precision: str = "auto", source: str = "the shard set"
) -> EncodedShards:
    """Encode every sample of one pass of ``stream`` with a :class:`~domains.biomed.model.BiomedClipModel`.

    ``source`` names the shards in the message when nothing could be read (e.g. ``"--input data/test"``).

    Raises:
        NothingProduced: The pass yielded no sample.
    """
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
        report = stream.report()
        raise NothingProduced(
            f"{source}: no sample could be read ({report['samples_failed']} failed, {report['filtered_out']} filtered "
            f"out, {report['shards_failed']} unreadable shard(s)); check the path and the filters"
        )
    return EncodedShards(keys, captions, labels, metadata, np.concatenate(images), np.concatenate(texts))


def retrieval_report(encoded: EncodedShards, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Image→text and text→image Recall@K and ranks (identical captions tie, they do not count as misses)."""
    from shared.evaluation import retrieval_metrics

    return retrieval_metrics(encoded.image, encoded.text, ks=tuple(ks), query_name="image", target_name="text")


def caption_level_text_to_image(encoded: EncodedShards, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Text→image Recall@K with one query per distinct caption; any image carrying that caption is a hit.

    When several images share a caption (several renderings of one held-out combination), per-pair
    text→image R@1 cannot exceed 1/(images per caption): the caption does not say which rendering is meant.
    This counts a retrieved image as correct when its own caption is the query's.
    """
    captions = np.array(encoded.captions, dtype=object)
    distinct = list(dict.fromkeys(encoded.captions))
    first = [encoded.captions.index(caption) for caption in distinct]
    similarity = encoded.text[first] @ encoded.image.T  # (distinct captions, images)
    order = np.argsort(-similarity, axis=1, kind="stable")
    hits = captions[order] == np.array(distinct, dtype=object)[:, None]
    return {f"text_to_image_caption_R@{k}": float(hits[:, :k].any(axis=1).mean()) for k in ks}


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
        raise UserError(f"--zero_shot/--label_field: no sample has a label among {label_values}; check the label field")

    def encode_text(prompts: list[str]) -> np.ndarray:
        with torch.no_grad():
            tokens = tokenizer(prompts).to(device)
            return model.encode("text", tokens).float().cpu().numpy()

    weights = zero_shot_classifier(encode_text, [classnames[v] for v in label_values], list(templates))
    truth = np.array([index[encoded.labels[i]] for i in rows])
    scores = zero_shot_evaluate(encoded.image[rows], truth, weights)
    return {**scores, "num_samples": len(rows), "num_unlabelled": len(encoded.labels) - len(rows),
            "classes": [classnames[v] for v in label_values]}  # fmt: skip


def zero_shot_settings(
    preset: str,
    label_field: str = "",
    classnames: Mapping[str, str] | None = None,
    templates: Sequence[str] = (),
    flag: str = "--zero_shot",
) -> dict[str, Any] | None:
    """The label field, class names and templates of a zero-shot preset, or of 'custom' (None for 'none').

    Raises:
        UserError: An unknown preset, 'custom' without label field, class names and templates, or those given
            with a preset (which would silently ignore them).
    """
    if preset != "custom" and (label_field or classnames or templates):
        raise UserError(f"--label_field/--classnames/--templates: only read with {flag} custom (got {flag} {preset})")
    if preset == "none":
        return None
    if preset == "custom":
        if not (label_field and classnames and templates):
            raise UserError(f"{flag} custom: needs --label_field, --classnames and --templates")
        if any("{}" not in template for template in templates):
            raise UserError("--templates: every template needs a '{}' slot for the class name")
        return {"label_field": label_field, "classnames": dict(classnames), "templates": list(templates)}
    if preset not in ZERO_SHOT_PRESETS:
        raise UserError(f"{flag} {preset!r}: unknown preset; choose {sorted(ZERO_SHOT_PRESETS)}, custom or none")
    return ZERO_SHOT_PRESETS[preset]


def evaluate_model(
    model: Any,
    loaded: Any,
    shards: str,
    batch_size: int = 64,
    ks: Sequence[int] = (1, 5, 10),
    zero_shot: Mapping[str, Any] | None = None,
    device: torch.device | str = "cpu",
    flag: str = "--input",
) -> dict[str, Any]:
    """Retrieval (and zero-shot, when settings are given) on one pass of ``shards``.

    Args:
        model: A :class:`~domains.biomed.model.BiomedClipModel`.
        loaded: Its :class:`~domains.biomed.open_clip_loading.LoadedOpenClip` (transform, tokenizer).
        shards: Held-out shard set (folder, brace pattern, URL; joined with ``::``).
        batch_size: Samples per encoding batch.
        ks: K values of Recall@K.
        zero_shot: Settings from :func:`zero_shot_settings`, or None.
        device: Where to encode.
        flag: The flag that named ``shards`` (for error messages).

    Raises:
        UserError: A missing shard source, ``ks`` below 1.
        NothingProduced: The shard set yielded no sample.
    """
    if not ks or min(ks) < 1:
        raise UserError(f"--ks: Recall@K needs K >= 1, got {list(ks)}")
    label_field = zero_shot["label_field"] if zero_shot else ""
    decoder = BiomedicaDecoder(loaded.preprocess_val, loaded.tokenizer, label_field=label_field)
    stream = eval_stream(shards, decoder, batch_size, flag)
    encoded = encode_shards(model, stream, device, source=f"{flag} {shards}")
    results: dict[str, Any] = {"num_samples": len(encoded.keys), "retrieval": retrieval_report(encoded, ks)}
    if len(set(encoded.captions)) < len(encoded.captions):
        results["retrieval"].update(caption_level_text_to_image(encoded, ks))
    if zero_shot:
        results["zero_shot"] = zero_shot_report(
            model, loaded.tokenizer, encoded, zero_shot["classnames"], zero_shot["templates"], device
        )
    report = stream.report()
    results["stream"] = {
        k: report[k] for k in ("samples_decoded", "samples_failed", "filtered_out", "failures_by_reason")
    }
    return results


def headline_metrics(results: Mapping[str, Any]) -> dict[str, float]:
    """The numbers a run's marker and the explorer show: R@1 both ways and zero-shot top-1 (when measured)."""
    retrieval = results["retrieval"]
    summary = {name: float(retrieval[name]) for name in ("image_to_text_R@1", "text_to_image_R@1")}
    if "zero_shot" in results:
        summary["zero_shot_top1"] = float(results["zero_shot"]["top1"])
    return summary


@dataclass
class EvaluateConfig:
    """Evaluate a model on a shard set: image–text retrieval and zero-shot classification."""

    run: str | None = None
    """Pretrain run folder to evaluate (config.yaml + model.safetensors); the metrics go to its eval/metrics.json. Default: runs/biomed/demo unless --model is given."""
    model: str | None = None
    """Instead of --run: an open_clip model that is not a run folder: a preset (demo, tiny, biomedclip), a JSON config, an exported or hub-layout folder (local-dir:DIR) or hf-hub:org/repo."""
    input: str = "runs/biomed/demo_corpus/test"
    """Held-out shard set in the BIOMEDICA layout: a folder, a brace pattern or a URL (join sources with '::')."""
    run_name: str = "evaluate"
    """With --model only: name of the run folder that receives the metrics (<runs_root>/biomed/<run_name>)."""
    runs_root: str = "runs"
    """With --model only: root folder of all run folders."""
    batch_size: int = 64
    """Samples per encoding batch."""
    ks: list[int] = field(default_factory=lambda: [1, 5, 10])
    """K values of Recall@K."""
    zero_shot: str = "demo_compositions"
    """Zero-shot preset (pcam, rsna, demo: image kind, demo_compositions: attribute combination), 'custom' to use the fields below, or 'none'."""
    label_field: str = ""
    """Custom zero-shot: dotted path of the label in each sample's JSON."""
    classnames: dict[str, str] = field(default_factory=dict)
    """Custom zero-shot: label value → class name used in the prompts."""
    templates: list[str] = field(default_factory=list)
    """Custom zero-shot: prompt templates with a '{}' slot."""
    device: str = "auto"
    """cpu, cuda or auto."""


@dataclass
class EvaluationResult:
    """What an evaluation wrote."""

    metrics: dict[str, Any]
    """The metrics written: retrieval, zero-shot (when measured), stream counts, model and shards."""
    path: Path
    """The ``eval/metrics.json`` written."""
    model_flag: str
    """The flag and value that name the evaluated model (``--run DIR`` or ``--model SPEC``)."""


def evaluate_and_record(config: EvaluateConfig) -> EvaluationResult:
    """Evaluate the model ``config`` names on ``config.input`` and write ``eval/metrics.json``.

    A pretrain run (``--run``) gets the result in its own ``eval/metrics.json`` (its marker then lists the
    file); a model given by spec (``--model``) gets a finished run folder of its own,
    ``<runs_root>/biomed/<run_name>``.

    Raises:
        UserError: A bad batch size, zero-shot setting, model or shard source (naming the flag).
        NothingProduced: The shard set yielded no sample.
    """
    from shared.device import pick_device

    if config.batch_size < 1:
        raise UserError(f"--batch_size: must be >= 1, got {config.batch_size}")
    zero_shot = zero_shot_settings(config.zero_shot, config.label_field, config.classnames, config.templates)
    device = pick_device(config.device)
    trained = load_trained_model(config.run, config.model, device)
    metrics = evaluate_model(trained.model, trained.loaded, config.input, config.batch_size, config.ks, zero_shot,
                             device, flag="--input")  # fmt: skip
    metrics.update({"model": str(trained.run.path) if trained.run else trained.source, "shards": config.input})
    if trained.run is not None:
        path = trained.run.write_eval_metrics(metrics)
        trained.run.record_outputs([str(path.relative_to(trained.run.path))])  # its run.json lists the new file
    else:
        run = RunFolder.create("biomed", config.run_name, config.runs_root)
        run.save_config(config)
        path = run.write_eval_metrics(metrics)
        run.mark_finished(command=COMMAND, outputs=["config.yaml", str(path.relative_to(run.path))],
                          summary=headline_metrics(metrics))  # fmt: skip
    model_flag = f"--run {trained.run.path}" if trained.run else f"--model {config.model}"
    return EvaluationResult(metrics, path, model_flag)
