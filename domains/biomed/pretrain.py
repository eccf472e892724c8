"""Contrastive (continual) pretraining of a biomedical CLIP on BIOMEDICA-format shards.

With no arguments this is the demo: it builds the built-in corpus (``domains.biomed.demo``), measures the
untrained model, trains the small demo model on 2 CPU cores in a few minutes, evaluates, exports an
open_clip ``local-dir:`` model, writes the embeddings to the store and prints what to run next::

    python -m domains.biomed.pretrain
    python -m domains.biomed.pretrain --config domains/biomed/configs/biomedclip.yaml   # paper recipe
    python -m domains.biomed.pretrain --config domains/biomed/configs/bmca.yaml         # BMCA continual
    python -m domains.biomed.pretrain --help

Training is the core trainer with the core contrastive loss (one image–text pair, equal to open_clip's
ClipLoss); streaming, filters and concept balancing are the core ``ShardStream``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.trainer import TrainerConfig

DOMAIN = "biomed"


@dataclass
class ModelConfig:
    """Which model to train and how."""

    source: str = "demo"
    """Architecture/weights: a preset (demo, tiny, biomedclip), a JSON config, a hub-layout folder (local-dir:DIR) or hf-hub:org/repo."""
    checkpoint: str | None = None
    """Any open_clip checkpoint to start from (continual pretraining), loaded on top of `source`."""
    pretrained_towers: bool = True
    """Initialise HF text / timm image towers from their own pretrained weights when no CLIP checkpoint is loaded."""
    translate_stale_keys: bool = True
    """Translate stale text_cfg keys proj/pooler_type (warning); False rejects them."""
    lock_image: bool = False
    """Freeze the image tower."""
    lock_image_unlocked_groups: int = 0
    """Trailing image layer groups left trainable when locked."""
    lock_text: bool = False
    """Freeze the text tower."""
    lock_text_unlocked_layers: int = 0
    """Trailing text layers left trainable when locked."""
    grad_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, ~30% more compute)."""
    local_loss: bool = True
    """Local rows against gathered columns (memory linear in the global batch)."""
    gather_with_grad: bool = True
    """Differentiable all-gather of features across ranks."""
    wise_ft_alpha: float | None = None
    """After training, WiSE-FT merge with the starting weights: (1-α)·start + α·trained. None: no merge."""
    aug_scale: list[float] = field(default_factory=lambda: [0.9, 1.0])
    """RandomResizedCrop scale range of the training transform."""
    aug_color_jitter: list[float] | None = None
    """Colour jitter (brightness, contrast, saturation, hue), applied with probability `aug_color_jitter_prob`."""
    aug_color_jitter_prob: float = 0.0
    """Probability of colour jitter (0: off)."""
    aug_gray_scale_prob: float = 0.0
    """Probability of converting a training image to greyscale."""


@dataclass
class DataConfig:
    """Where the image–caption pairs come from and which to keep."""

    train: str = ""
    """Training shards (folder, brace pattern, URL; join sources with '::'). Empty: the built-in demo corpus."""
    validation: str = ""
    """Held-out shards for retrieval evaluation. Empty: the demo corpus's test split when training on it."""
    hf_repo: str = ""
    """Stream from this Hugging Face dataset repository instead of `train` (e.g. BIOMEDICA/biomedica_webdataset_24M)."""
    hf_shards: list[str] = field(default_factory=list)
    """Shard files inside `hf_repo`; empty lists the repository (needs network)."""
    hf_endpoint: str = "https://huggingface.co"
    """Hub address."""
    hf_token_env: str = "HF_TOKEN"  # noqa: S105 — a variable name, not a secret
    """Environment variable with the access token for gated sets (sent as an HTTP header; empty: none)."""
    mode: str = "epoch"
    """'epoch' (each shard once per epoch) or 'resampled' (shards drawn with replacement)."""
    samples_per_epoch: int | None = None
    """Resampled mode: samples per virtual epoch (open_clip's --train-num-samples)."""
    batch_size: int = 32
    """Samples per batch per rank (the contrastive batch is this × accum_steps × world size)."""
    shuffle_buffer: int = 1000
    """Sample shuffle buffer."""
    num_workers: int = 0
    """DataLoader workers (0 is fastest on 2 CPU cores)."""
    license_subsets: list[str] = field(default_factory=list)
    """Keep only these BIOMEDICA licence subsets: commercial, noncommercial, other (empty: all)."""
    concepts: list[str] = field(default_factory=list)
    """Keep only samples with one of these concept labels (empty: all)."""
    panel_types: list[str] = field(default_factory=list)
    """Keep only these image_panel_type values (empty: all)."""
    min_side_px: int = 21
    """Drop images with a side below this many pixels."""
    concept_balance_threshold: float = 0.0
    """MetaCLIP-style concept balancing cap per primary concept (0: off); counts come from the manifests."""
    max_consecutive_failures: int = 100
    """Stop when this many samples/shards fail in a row."""
    demo_dir: str = "runs/biomed/demo_corpus"
    """Where the built-in demo corpus is written when `train` is empty."""
    demo_image_size: int = 96
    """Image side of the demo corpus in pixels."""


@dataclass
class PretrainConfig:
    """Contrastive pretraining of a biomedical CLIP (BiomedCLIP / BMCA-CLIP recipes, or the CPU demo)."""

    run_name: str = "demo"
    """Run folder name: runs/biomed/<run_name>/."""
    runs_root: str = "runs"
    """Root folder of all runs."""
    model: ModelConfig = field(default_factory=lambda: ModelConfig(lock_text=True, lock_text_unlocked_layers=1))
    """Model settings (the demo keeps MiniLM's pretrained text tower frozen except its last layer)."""
    data: DataConfig = field(default_factory=DataConfig)
    """Data settings."""
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(
            max_steps=240,
            lr=5e-4,
            weight_decay=0.1,
            warmup_steps=20,
            checkpoint_every=120,
            keep_last=2,
            log_every=20,
            progress_bar=False,
        )  # fmt: skip
    )
    """Core trainer settings (steps, optimiser, precision, checkpoints, resume)."""
    eval_batch_size: int = 64
    """Batch size for evaluation and embedding."""
    zero_shot: str = "demo"
    """Zero-shot preset evaluated on the validation shards (pcam, rsna, demo, none)."""
    evaluate_untrained: bool = True
    """Also measure the model before training, for comparison."""
    export: bool = True
    """Write an open_clip local-dir model into <run>/export."""
    embed: bool = True
    """Write the validation (and demo training) embeddings to the store."""
    store: str = "runs/embeddings.duckdb"
    """DuckDB embedding store."""


def training_urls(config: PretrainConfig) -> tuple[str, str]:
    """The training and validation shard sources (building the demo corpus when none is given)."""
    data = config.data
    if data.hf_repo:
        from domains.biomed.data import huggingface_shard_urls

        urls = huggingface_shard_urls(data.hf_repo, data.hf_shards or None, endpoint=data.hf_endpoint,
                                      token_env=data.hf_token_env or None)  # fmt: skip
        return "::".join(urls), data.validation
    if data.train:
        return data.train, data.validation
    from domains.biomed.demo import build_demo_corpus

    demo_dir = Path(data.demo_dir)
    if not ((demo_dir / "train" / "manifest.json").is_file() and (demo_dir / "test" / "manifest.json").is_file()):
        print(f"Building the demo corpus in {demo_dir} ...", flush=True)
        build_demo_corpus(demo_dir, image_size=data.demo_image_size)
    return str(demo_dir / "train"), data.validation or str(demo_dir / "test")


def make_train_stream(config: PretrainConfig, urls: str, loaded: Any) -> Any:
    """The core ``ShardStream`` over the training shards with BIOMEDICA filters and balancing."""
    from domains.biomed.data import BiomedicaDecoder, BiomedicaFilter
    from shared.shard_stream import ShardStream

    data = config.data
    rules = BiomedicaFilter(license_subsets=data.license_subsets, concepts=data.concepts,
                            panel_types=data.panel_types, min_side_px=data.min_side_px)  # fmt: skip
    balance = ({"field": "image_primary_label", "threshold": data.concept_balance_threshold}
               if data.concept_balance_threshold > 0 else None)  # fmt: skip
    return ShardStream(
        urls,
        BiomedicaDecoder(loaded.preprocess_train, loaded.tokenizer, rules),
        data.batch_size,
        mode=data.mode,
        samples_per_epoch=data.samples_per_epoch,
        seed=config.trainer.seed,
        shuffle_buffer=data.shuffle_buffer,
        filters=rules.stream_filters(),
        balance=balance,
        max_consecutive_failures=data.max_consecutive_failures,
        num_workers=data.num_workers,
        drop_last=True,
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command-line entry point: ``python -m domains.biomed.pretrain --help``."""
    from shared.cli import parse_config, run_dir_for, save_config

    config = parse_config(PretrainConfig, argv, prog="python -m domains.biomed.pretrain")
    from domains.biomed.embed import embed_into_store, file_sha256
    from domains.biomed.evaluate import ZERO_SHOT_PRESETS, evaluate_model, write_metrics
    from domains.biomed.export import export_local_dir
    from domains.biomed.model import build_training_model, load_open_clip_model, lock_towers, wise_ft_merge
    from shared.checkpoints import save_weights_atomically
    from shared.device import pick_device
    from shared.trainer import Trainer

    started = time.perf_counter()
    run_dir = run_dir_for(DOMAIN, config.run_name, config.runs_root)
    save_config(config, run_dir)
    train_urls, validation_urls = training_urls(config)
    device = pick_device(config.trainer.device)
    model_config = config.model
    aug: dict[str, Any] = {"scale": tuple(model_config.aug_scale)}
    if model_config.aug_gray_scale_prob > 0:
        aug["gray_scale_prob"] = model_config.aug_gray_scale_prob
    if model_config.aug_color_jitter_prob > 0:
        if not model_config.aug_color_jitter or len(model_config.aug_color_jitter) != 4:
            raise ValueError("aug_color_jitter needs 4 values (brightness, contrast, saturation, hue)")
        aug["color_jitter"] = tuple(model_config.aug_color_jitter)
        aug["color_jitter_prob"] = model_config.aug_color_jitter_prob
    loaded = load_open_clip_model(model_config.source, checkpoint=model_config.checkpoint,
                                  pretrained_towers=model_config.pretrained_towers,
                                  translate_stale=model_config.translate_stale_keys, aug_cfg=aug)  # fmt: skip
    lock_towers(loaded.model, model_config.lock_image, model_config.lock_image_unlocked_groups,
                model_config.lock_text, model_config.lock_text_unlocked_layers)  # fmt: skip
    model = build_training_model(loaded, model_config.local_loss, model_config.gather_with_grad,
                                 model_config.grad_checkpointing)  # fmt: skip
    start_state = (
        {k: v.detach().cpu().clone() for k, v in loaded.model.state_dict().items()}
        if model_config.wise_ft_alpha is not None
        else None
    )
    zero_shot = ZERO_SHOT_PRESETS.get(config.zero_shot) if config.zero_shot != "none" else None
    metrics: dict[str, Any] = {"run": str(run_dir), "train": train_urls, "validation": validation_urls}

    def evaluate(current: Any) -> dict[str, Any]:
        current.to(device)
        return evaluate_model(current, loaded, validation_urls, config.eval_batch_size, (1, 5, 10), zero_shot, device)

    if validation_urls and config.evaluate_untrained:
        metrics["untrained"] = evaluate(model)
        print(f"Untrained: image→text R@1 {metrics['untrained']['retrieval']['image_to_text_R@1']:.3f}", flush=True)

    def validate(current: Any) -> dict[str, float]:
        result = evaluate_model(current, loaded, validation_urls, config.eval_batch_size, (1, 5), None, device)
        return {k: v for k, v in result["retrieval"].items() if "R@" in k}

    stream = make_train_stream(config, train_urls, loaded)
    trainer = Trainer(model, config.trainer, run_dir)
    result = trainer.fit(stream.batches, validate if validation_urls and config.trainer.validate_every else None)
    metrics["training"] = {"steps": result.step, "stop_reason": result.stop_reason, "stream": stream.report()}
    if start_state is not None:
        merged = wise_ft_merge(start_state, {k: v.detach().cpu() for k, v in loaded.model.state_dict().items()},
                               float(model_config.wise_ft_alpha))  # fmt: skip
        loaded.model.load_state_dict(merged)
        save_weights_atomically(model, run_dir / "model.safetensors")
        metrics["training"]["wise_ft_alpha"] = model_config.wise_ft_alpha

    if validation_urls:
        metrics["trained"] = evaluate(model)
    eval_path = write_metrics(metrics, run_dir / "eval")
    export_dir = export_local_dir(model.cpu(), loaded, run_dir / "export") if config.export else None
    stored = 0
    if config.embed and validation_urls:
        model.to(device)
        sha = file_sha256(run_dir / "model.safetensors")
        for urls in [validation_urls] + ([train_urls] if not config.data.train and not config.data.hf_repo else []):
            stored += embed_into_store(model, loaded, urls, config.store, config.run_name, f"biomed-clip:{model_config.source}",
                                       sha[:12], {"source": model_config.source, "run_dir": str(run_dir)},
                                       sha, config.eval_batch_size, device)  # fmt: skip
    elapsed = time.perf_counter() - started
    print(f"\nDone in {elapsed / 60:.1f} min. Run folder: {run_dir}")
    print(f"  config:     {run_dir / 'config.yaml'}")
    print(f"  metrics:    {run_dir / 'metrics.csv'}")
    print(f"  weights:    {run_dir / 'model.safetensors'} (checkpoints in {run_dir / 'checkpoints'})")
    print(f"  evaluation: {eval_path}")
    if "trained" in metrics:
        before = metrics.get("untrained", {}).get("retrieval", {}).get("image_to_text_R@1")
        after = metrics["trained"]["retrieval"]["image_to_text_R@1"]
        print(
            f"  image→text R@1 on the held-out split: {after:.3f}"
            + (f" (untrained {before:.3f})" if before is not None else "")
        )
    if export_dir:
        print(f"  export:     {export_dir} (open_clip local-dir)")
    if stored:
        print(f"  store:      {config.store} ({stored} samples, image and text vectors)")
    print("Next:")
    print(f"  python -m domains.biomed.evaluate --model {run_dir} --shards {validation_urls or '<held-out shards>'}")
    if export_dir:
        print(
            f"  python -c \"import open_clip; m, _, p = open_clip.create_model_and_transforms('local-dir:{export_dir}')\""
        )
    print("  python -m domains.biomed.ingest --input <folder of DICOM files>   # bring your own data")
    print(
        f"  python -m domains.biomed.pretrain --run_name {config.run_name} --trainer.resume latest --trainer.max_steps <more>"
    )
    return metrics


if __name__ == "__main__":
    main()
