"""Contrastive (continual) pretraining of a biomedical CLIP, as a library: its config and the whole run.

:func:`pretrain` is what ``python -m domains.biomed.pretrain`` runs: resolve the shard sources (building
the built-in demo corpus when none is given), build the model, resolve the trainer budget, save the
config, train with the core trainer and the core contrastive loss, and then, as the config asks,
evaluate (:mod:`domains.biomed.evaluation`), export (:mod:`domains.biomed.export_open_clip`) and embed
(:mod:`domains.biomed.embedding`), announcing each of those extra steps in one line with the command
that does it on its own. The run folder follows the core contract (:class:`shared.run_folder.RunFolder`):
``config.yaml`` (exactly what ran), ``metrics.csv``, ``checkpoints/``, ``model.safetensors``,
``eval/metrics.json``, ``export/`` and, last, the ``run.json`` marker.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from domains.biomed.biomedica import (
    BiomedicaDecoder,
    BiomedicaFilter,
    check_shard_source,
    huggingface_shard_urls,
    open_biomedica_stream,
)
from domains.biomed.evaluation import ZERO_SHOT_PRESETS, evaluate_model, headline_metrics
from domains.biomed.model import RUN_WEIGHTS, BiomedClipModel, build_training_model, lock_towers, wise_ft_merge
from domains.biomed.open_clip_loading import LoadedOpenClip, load_open_clip_model
from shared.checkpoints import check_resume
from shared.distributed import main_process_first, on_main_process
from shared.run_folder import RunFolder, is_main_process, sha256_of
from shared.trainer import TrainerConfig, resolve_budget
from shared.user_errors import NothingProduced, UserError

DOMAIN = "biomed"
COMMAND = "domains.biomed.pretrain"


@dataclass
class ModelConfig:
    """Which model to train and how."""

    source: str = "demo"
    """Architecture/weights: a preset (demo, tiny, biomedclip), a JSON config, a hub-layout folder (local-dir:DIR) or hf-hub:org/repo."""
    checkpoint: str | None = None
    """Any open_clip checkpoint to start from (continual pretraining), loaded on top of `source`."""
    pretrained_towers: bool = True
    """Initialise HF text / timm image towers from their own pretrained weights when no CLIP checkpoint is loaded."""
    pretrained_image_tower: bool = True
    """With pretrained_towers: also load a timm image tower's ImageNet weights; false builds it from scratch (random init) while the text tower stays pretrained."""
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
    """Name of the run folder this run creates: <runs_root>/biomed/<run_name>/."""
    runs_root: str = "runs"
    """Root folder of all run folders."""
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
    zero_shot: str = "demo_compositions"
    """Zero-shot preset evaluated on the validation shards (pcam, rsna, demo: image kind, demo_compositions: which attribute combination, none)."""
    evaluate_untrained: bool = True
    """Also measure the model before training, for comparison."""
    export: bool = True
    """Write an open_clip local-dir model into <run>/export."""
    embed: bool = True
    """Write the validation (and demo training) embeddings to the store."""
    store: str = "runs/embeddings.duckdb"
    """DuckDB embedding store the embeddings go to (created if missing)."""


@dataclass
class PretrainResult:
    """What a pretraining run wrote."""

    run: RunFolder
    """The run folder."""
    metrics: dict[str, Any]
    """What ``eval/metrics.json`` holds: shard sources, untrained/trained evaluation, training summary."""
    train_urls: str
    """The training shard sources used."""
    validation_urls: str
    """The held-out shard sources used ('' when none)."""
    export_dir: Path | None
    """The open_clip ``local-dir:`` export, when written."""
    stored: int
    """Samples whose image and text vectors went to the store."""
    seconds: float
    """Wall-clock duration."""

    def held_out_image_to_text_r1(self, which: str = "trained") -> float | None:
        """Image→text R@1 on the held-out split of the ``"trained"`` or ``"untrained"`` model (None: not measured)."""
        return self.metrics.get(which, {}).get("retrieval", {}).get("image_to_text_R@1")


def held_out_summary(metrics: dict[str, Any]) -> list[str]:
    """Lines comparing the untrained and trained model on the held-out split (R@1 both ways, zero-shot top-1)."""
    lines = []
    retrieval = metrics.get("trained", {}).get("retrieval", {})
    by_caption = "text_to_image_caption_R@1" in retrieval  # several images per caption: count any of them
    names = (("image_to_text_R@1", "image→text R@1"),
             ("text_to_image_caption_R@1", "text→image R@1 (any image of the caption)") if by_caption
             else ("text_to_image_R@1", "text→image R@1"))  # fmt: skip
    for key, label in names:
        after = metrics.get("trained", {}).get("retrieval", {}).get(key)
        before = metrics.get("untrained", {}).get("retrieval", {}).get(key)
        if after is not None:
            lines.append(
                f"{label} on the held-out split: {after:.3f}"
                + (f" (untrained {before:.3f})" if before is not None else "")
            )
    after = metrics.get("trained", {}).get("zero_shot", {}).get("top1")
    before = metrics.get("untrained", {}).get("zero_shot", {}).get("top1")
    if after is not None:
        classes = len(metrics["trained"]["zero_shot"].get("classes", []))
        lines.append(f"zero-shot top-1 on the held-out split ({classes} classes): {after:.3f}"
                     + (f" (untrained {before:.3f})" if before is not None else ""))  # fmt: skip
    return lines


def _say(message: str) -> None:
    if is_main_process():
        print(message, flush=True)


def check_pretrain_config(config: PretrainConfig) -> None:
    """Refuse settings that would only fail (or be ignored) after training, naming the flag.

    Raises:
        UserError: An unknown zero-shot preset, a batch size below 1, a WiSE-FT alpha outside [0, 1], colour
            jitter without its four strengths, an unknown stream mode or licence subset.
    """
    if config.zero_shot != "none" and config.zero_shot not in ZERO_SHOT_PRESETS:
        raise UserError(f"--zero_shot {config.zero_shot!r}: choose one of {sorted(ZERO_SHOT_PRESETS)} or none")
    for flag, value in (("--data.batch_size", config.data.batch_size), ("--eval_batch_size", config.eval_batch_size)):
        if value < 1:
            raise UserError(f"{flag}: must be >= 1, got {value}")
    alpha = config.model.wise_ft_alpha
    if alpha is not None and not (math.isfinite(alpha) and 0.0 <= alpha <= 1.0):
        raise UserError(f"--model.wise_ft_alpha: must be in [0, 1] (or null for no merge), got {alpha}")
    model = config.model
    if model.aug_color_jitter_prob > 0 and (not model.aug_color_jitter or len(model.aug_color_jitter) != 4):
        raise UserError("--model.aug_color_jitter: needs 4 values (brightness, contrast, saturation, hue)")
    if len(model.aug_scale) != 2:
        raise UserError(f"--model.aug_scale: needs 2 values (min, max), got {model.aug_scale}")
    if config.data.mode not in ("epoch", "resampled"):
        raise UserError(f"--data.mode: must be 'epoch' or 'resampled', got {config.data.mode!r}")
    if config.data.mode == "resampled" and not config.data.samples_per_epoch:
        raise UserError("--data.samples_per_epoch: required with --data.mode resampled (the virtual epoch length)")
    unknown = set(config.data.license_subsets) - {"commercial", "noncommercial", "other"}
    if unknown:
        raise UserError(
            f"--data.license_subsets: unknown subset(s) {sorted(unknown)}; use commercial, noncommercial, other"
        )


def training_urls(config: PretrainConfig, say: Callable[[str], None] = _say) -> tuple[str, str]:
    """The training and validation shard sources; builds the demo corpus (saying so) when none is given."""
    data = config.data
    if data.hf_repo:
        urls = huggingface_shard_urls(data.hf_repo, data.hf_shards or None, endpoint=data.hf_endpoint,
                                      token_env=data.hf_token_env or None)  # fmt: skip
        return "::".join(urls), data.validation
    if data.train:
        return data.train, data.validation
    from domains.biomed.demo import build_demo_corpus, demo_corpus_is_current

    demo_dir = Path(data.demo_dir)
    if not demo_corpus_is_current(demo_dir, data.demo_image_size):
        say(f"Building the built-in demo corpus in {demo_dir} (no --data.train given) ...")
        build_demo_corpus(demo_dir, image_size=data.demo_image_size)
    return str(demo_dir / "train"), data.validation or str(demo_dir / "test")


def training_rules(data: DataConfig) -> BiomedicaFilter:
    """The BIOMEDICA selection rules the data config asks for."""
    return BiomedicaFilter(license_subsets=data.license_subsets, concepts=data.concepts,
                           panel_types=data.panel_types, min_side_px=data.min_side_px)  # fmt: skip


def make_train_stream(config: PretrainConfig, urls: str, loaded: LoadedOpenClip) -> Any:
    """The core ``ShardStream`` over the training shards with BIOMEDICA filters and balancing."""
    data = config.data
    rules = training_rules(data)
    balance = ({"field": "image_primary_label", "threshold": data.concept_balance_threshold}
               if data.concept_balance_threshold > 0 else None)  # fmt: skip
    return open_biomedica_stream(
        urls,
        BiomedicaDecoder(loaded.preprocess_train, loaded.tokenizer, rules),
        data.batch_size,
        flag="--data.hf_repo" if data.hf_repo else "--data.train",
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


def augmentation_settings(model: ModelConfig) -> dict[str, Any]:
    """open_clip's ``aug_cfg`` for the training transform."""
    aug: dict[str, Any] = {"scale": tuple(model.aug_scale)}
    if model.aug_gray_scale_prob > 0:
        aug["gray_scale_prob"] = model.aug_gray_scale_prob
    if model.aug_color_jitter_prob > 0:
        aug["color_jitter"] = tuple(model.aug_color_jitter or ())
        aug["color_jitter_prob"] = model.aug_color_jitter_prob
    return aug


def pretrain(config: PretrainConfig, say: Callable[[str], None] = _say) -> PretrainResult:
    """Run contrastive pretraining as ``config`` says, and write its run folder (see the module docstring).

    The trainer's budget is resolved (epochs → steps, conflicting flags refused) before ``config.yaml`` is
    saved; nothing rewrites a trainer field afterwards. The model is initialised from ``trainer.seed``.

    Args:
        config: The settings (see :class:`PretrainConfig`).
        say: Where the one-line announcements of extra steps go (default: print on the main process).

    Raises:
        UserError: Bad settings or inputs (naming the flag or file), ``--trainer.resume`` without a checkpoint.
    """
    from shared.checkpoints import save_weights_atomically
    from shared.device import pick_device
    from shared.trainer import Trainer, seed_everything

    started = time.perf_counter()
    check_pretrain_config(config)
    run = RunFolder.create(DOMAIN, config.run_name, config.runs_root)
    if config.trainer.resume:  # a resume without a checkpoint fails here, before any data or model is built
        check_resume(config.trainer.resume, run.checkpoints_dir)
    with main_process_first("building the demo corpus"):  # under torchrun: rank 0 builds it, the others wait
        train_urls, validation_urls = training_urls(config, say)
    # Unreadable shard sources fail here, before the (slow, chatty) model build.
    check_shard_source(train_urls, "--data.hf_repo" if config.data.hf_repo else "--data.train")
    if validation_urls:
        check_shard_source(validation_urls, "--data.validation")
    device = pick_device(config.trainer.device)
    model_config = config.model
    seed_everything(config.trainer.seed)  # the initial weights are part of what the seed fixes
    loaded = load_open_clip_model(model_config.source, checkpoint=model_config.checkpoint,
                                  pretrained_towers=model_config.pretrained_towers,
                                  pretrained_image_tower=model_config.pretrained_image_tower,
                                  translate_stale=model_config.translate_stale_keys,
                                  aug_cfg=augmentation_settings(model_config))  # fmt: skip
    lock_towers(loaded.model, model_config.lock_image, model_config.lock_image_unlocked_groups,
                model_config.lock_text, model_config.lock_text_unlocked_layers)  # fmt: skip
    model = build_training_model(loaded, model_config.local_loss, model_config.gather_with_grad,
                                 model_config.grad_checkpointing)  # fmt: skip
    start_state = (
        {k: v.detach().cpu().clone() for k, v in loaded.model.state_dict().items()}
        if model_config.wise_ft_alpha is not None
        else None
    )
    stream = make_train_stream(config, train_urls, loaded)
    batches = stream.batches_per_epoch()
    steps_per_epoch = batches // config.trainer.accum_steps if batches is not None else None
    epoch_settings = [name for name in ("max_epochs", "warmup_epochs", "validate_every_epochs",
                                        "checkpoint_every_epochs") if getattr(config.trainer, name) is not None]  # fmt: skip
    if steps_per_epoch is None and epoch_settings:
        # A shard stream in epoch mode cannot count its batches before reading them (filters drop samples).
        raise UserError(
            f"--trainer.{epoch_settings[0]}: budgets in epochs need --data.mode resampled with "
            "--data.samples_per_epoch; in epoch mode give steps (--trainer.max_steps, ...)"
        )
    config = dataclasses.replace(config, trainer=resolve_budget(config.trainer, steps_per_epoch))
    run.save_config(config)  # every derived value is settled: this is exactly what runs

    zero_shot = ZERO_SHOT_PRESETS.get(config.zero_shot)
    metrics: dict[str, Any] = {"run": str(run.path), "train": train_urls, "validation": validation_urls}

    def evaluate(current: BiomedClipModel) -> dict[str, Any]:
        current.to(device)
        return evaluate_model(current, loaded, validation_urls, config.eval_batch_size, (1, 5, 10), zero_shot,
                              device, flag="--data.validation")  # fmt: skip

    if validation_urls and config.evaluate_untrained:
        say(f"Evaluating the untrained model on {validation_urls} (for comparison) ...")
        metrics["untrained"] = on_main_process(lambda: evaluate(model))  # once, on rank 0
        say(f"Untrained: image→text R@1 {metrics['untrained']['retrieval']['image_to_text_R@1']:.3f}")

    def validate(current: Any) -> dict[str, float]:
        result = evaluate_model(current, loaded, validation_urls, config.eval_batch_size, (1, 5), None, device,
                                flag="--data.validation")  # fmt: skip
        return {k: v for k, v in result["retrieval"].items() if "R@" in k}

    def batches(epoch: int, start_batch: int) -> Any:
        produced = False
        for batch in stream.batches(epoch, start_batch):
            produced = True
            yield batch
        if not produced and start_batch == 0:
            report = stream.report()
            raise NothingProduced(
                f"{'--data.hf_repo' if config.data.hf_repo else '--data.train'} {train_urls}: no full batch of "
                f"{config.data.batch_size} samples in epoch {epoch} ({report['samples_decoded']} decoded, "
                f"{report['samples_failed']} failed, {report['filtered_out']} filtered out, "
                f"{report['shards_failed']} unreadable shard(s))"
            )

    trainer = Trainer(model, config.trainer, run.path)
    result = trainer.fit(batches, validate if validation_urls and config.trainer.validate_every else None)
    metrics["training"] = {"steps": result.step, "stop_reason": result.stop_reason, "stream": stream.report()}
    if start_state is not None:
        merged = wise_ft_merge(start_state, {k: v.detach().cpu() for k, v in loaded.model.state_dict().items()},
                               float(model_config.wise_ft_alpha))  # fmt: skip
        loaded.model.load_state_dict(merged)
        if is_main_process():
            save_weights_atomically(model, run.path / RUN_WEIGHTS)
        metrics["training"]["wise_ft_alpha"] = model_config.wise_ft_alpha

    if validation_urls:
        say(f"Evaluating the trained model on {validation_urls} (as `python -m domains.biomed.evaluate "
            f"--run {run.path} --input {validation_urls}` would) ...")  # fmt: skip
        metrics["trained"] = on_main_process(lambda: evaluate(model))  # once, on rank 0
    outputs = ["config.yaml", "metrics.csv", RUN_WEIGHTS, str(run.write_eval_metrics(metrics).relative_to(run.path))]

    export_dir = None
    if config.export and is_main_process():
        from domains.biomed.export_open_clip import export_files, export_local_dir

        say(
            f"Exporting the model to {run.path / 'export'} (as `python -m domains.biomed.export --run {run.path}` would) ..."
        )
        export_dir = export_local_dir(model.cpu(), loaded, run.path / "export")
        outputs += export_files(export_dir, run.path.resolve())

    stored = 0
    if config.embed and validation_urls and is_main_process():
        from domains.biomed.embedding import embed_into_store

        model.to(device)
        sha = sha256_of(run.path / RUN_WEIGHTS)
        on_demo_corpus = not config.data.train and not config.data.hf_repo
        for urls in [validation_urls] + ([train_urls] if on_demo_corpus else []):
            say(f"Writing the embeddings of {urls} to {config.store} (as `python -m domains.biomed.embed "
                f"--run {run.path} --input {urls} --store {config.store}` would) ...")  # fmt: skip
            stored += embed_into_store(model, loaded, urls, config.store, run.run_id,
                                       f"biomed-clip:{model_config.source}", sha[:12],
                                       {"source": model_config.source, "run_dir": str(run.path)}, sha,
                                       config.eval_batch_size, device)  # fmt: skip

    summary: dict[str, Any] = {"steps": result.step, "stop_reason": result.stop_reason}
    if "trained" in metrics:
        summary.update(headline_metrics(metrics["trained"]))
    if stored:
        summary["stored_samples"] = stored
    run.mark_finished(command=COMMAND, outputs=outputs, summary=summary)
    return PretrainResult(run, metrics, train_urls, validation_urls, export_dir, stored, time.perf_counter() - started)
