"""The biomed CLIP for the core trainer: an open_clip model behind the core contrastive model.

:class:`BiomedClipModel` *is* a core :class:`~shared.contrastive_model.ContrastiveModel` (encode,
features, loss from features, forward, clamping after each optimizer step all come from the core)
whose two towers are the open_clip model's own encoders, and whose loss is the core
:class:`~shared.contrastive_loss.ContrastiveLoss` over the one ``("image", "text")`` pair (equal to
open_clip's ``ClipLoss``). The open_clip model stays whole under ``clip``, so checkpoints keep open_clip's
parameter names and an export is a plain open_clip model.

**One owner of the temperature**: the core loss's per-pair log scale ``loss.logit_scales["image-text"]``
is the only temperature that is trained and used. open_clip's own ``logit_scale`` is read once, when the
wrapper is built (a continual run starts at its checkpoint's temperature), is frozen and unused while
training, and is written back once, by :meth:`BiomedClipModel.open_clip_model` at export.

Also here: tower locking, the WiSE-FT merge, and loading a trained model from a run folder (``--run``)
or from an open_clip model spec (``--model``).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from domains.biomed.open_clip_loading import LoadedOpenClip, load_open_clip_model
from shared.contrastive_loss import ContrastiveLoss
from shared.contrastive_model import ContrastiveModel
from shared.run_folder import RunFolder, sha256_of
from shared.user_errors import UserError

#: The file a pretrain run folder keeps its final weights in (written by the core trainer).
RUN_WEIGHTS = "model.safetensors"
#: The weights file of an exported open_clip ``local-dir:`` folder.
EXPORT_WEIGHTS = "open_clip_model.safetensors"


def open_clip_embed_dim(clip: nn.Module) -> int:
    """Width of an open_clip model's shared embedding space."""
    for tower in (getattr(clip, "visual", None), getattr(clip, "text", None)):
        width = getattr(tower, "output_dim", None)
        if isinstance(width, int):
            return width
    projection = getattr(clip, "text_projection", None)
    if projection is not None:
        return int(projection.shape[-1])
    raise ValueError(f"cannot tell the embedding width of {type(clip).__name__}")


class OpenClipTower(nn.Module):
    """One encoder of an open_clip model as a core tower (unnormalized features of width ``output_dim``).

    The encoder is held as a bound method, not as a submodule: the open_clip model is registered once,
    under :attr:`BiomedClipModel.clip`, so the state dict has open_clip's key names and no duplicates.

    Args:
        encode: ``clip.encode_image`` or ``clip.encode_text``.
        output_dim: The CLIP embedding width (the encoders already project into it).
    """

    def __init__(self, encode: Callable[..., torch.Tensor], output_dim: int) -> None:
        super().__init__()
        self._encode = encode
        self.output_dim = output_dim

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """The encoder's projected, unnormalized features (the core model normalizes them)."""
        return self._encode(inputs, normalize=False)


class BiomedClipModel(ContrastiveModel):
    """An open_clip model trained with the core contrastive model and loss (see the module docstring).

    A batch is ``{"image": (B, 3, H, W) float, "text": (B, L) token ids, ...}``; other keys are ignored.

    Args:
        clip: The open_clip model (``CLIP`` or ``CustomTextCLIP``).
        local_loss: Logits of local rows against all gathered columns (memory linear in the batch).
        gather_with_grad: All-gather features differentiably.
    """

    def __init__(self, clip: nn.Module, local_loss: bool = True, gather_with_grad: bool = True) -> None:
        embed_dim = open_clip_embed_dim(clip)
        pairs = [("image", "text")]
        start_scale = float(clip.logit_scale.detach().exp().clamp(1.0, 100.0))
        loss = ContrastiveLoss(pairs, kind="clip", logit_scale_init=start_scale, local_loss=local_loss,
                               gather_with_grad=gather_with_grad)  # fmt: skip
        towers = {"image": OpenClipTower(clip.encode_image, embed_dim),
                  "text": OpenClipTower(clip.encode_text, embed_dim)}  # fmt: skip
        super().__init__(towers, embed_dim, pairs=pairs, loss=loss, projection="none")
        self.clip = clip
        clip.logit_scale.requires_grad_(False)  # the loss owns the temperature while training

    def open_clip_model(self) -> nn.Module:
        """The open_clip model with the loss's learned temperature written into its ``logit_scale`` (for export)."""
        with torch.no_grad():
            self.clip.logit_scale.copy_(
                self.loss.logit_scales["image-text"].detach().reshape(self.clip.logit_scale.shape)
            )
        return self.clip


def lock_towers(
    clip: nn.Module,
    lock_image: bool = False,
    image_unlocked_groups: int = 0,
    lock_text: bool = False,
    text_unlocked_layers: int = 0,
) -> None:
    """Freeze towers (open_clip's ``--lock-image`` / ``--lock-text`` and their unlocked-layer options).

    The image tower uses open_clip's own ``lock_image_tower``. A Hugging Face text tower is locked with
    the core ``lock_tower`` on its transformer (open_clip 3.3's partial unlock has no layer table for
    BERT); its projection head stays trainable, as in open_clip.

    Args:
        clip: The open_clip model.
        lock_image: Freeze the image tower except its last ``image_unlocked_groups`` layer groups.
        image_unlocked_groups: Trailing layer groups left trainable.
        lock_text: Freeze the text tower except its last ``text_unlocked_layers`` layers.
        text_unlocked_layers: Trailing transformer layers left trainable.
    """
    if lock_image:
        clip.lock_image_tower(unlocked_groups=image_unlocked_groups)
    if lock_text:
        text = getattr(clip, "text", None)
        if text is not None and hasattr(text, "transformer") and hasattr(text.transformer, "config"):
            from shared.towers.locking import lock_tower

            lock_tower(text.transformer, unlocked_last_n=text_unlocked_layers)
        else:
            clip.lock_text_tower(unlocked_layers=text_unlocked_layers)


def wise_ft_merge(
    start: Mapping[str, torch.Tensor], finetuned: Mapping[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """WiSE-FT weight-space ensemble: ``θ = (1 − α)·θ_start + α·θ_finetuned`` for every float tensor.

    Args:
        start: State dict of the starting (e.g. general-domain) model.
        finetuned: State dict after continual pretraining, same keys and shapes.
        alpha: Mixing coefficient in [0, 1]; 1 keeps the fine-tuned weights, 0 the starting ones.

    Returns:
        The merged state dict (non-float tensors such as position ids are taken from ``finetuned``).

    Raises:
        ValueError: alpha out of range, or key / shape mismatch (naming the first offenders).
    """
    if not 0.0 <= alpha <= 1.0 or math.isnan(alpha):
        raise ValueError(f"WiSE-FT alpha must be in [0, 1], got {alpha}")
    if set(start) != set(finetuned):
        missing, extra = sorted(set(finetuned) - set(start))[:5], sorted(set(start) - set(finetuned))[:5]
        raise ValueError(f"WiSE-FT state dicts differ: only in fine-tuned {missing}, only in start {extra}")
    merged = {}
    for key, tuned in finetuned.items():
        base = start[key]
        if base.shape != tuned.shape:
            raise ValueError(f"WiSE-FT shape mismatch at {key}: {tuple(base.shape)} vs {tuple(tuned.shape)}")
        if torch.is_floating_point(tuned):
            merged[key] = torch.lerp(base.to(tuned.dtype), tuned, alpha)
        else:
            merged[key] = tuned.clone()
    return merged


def build_training_model(
    loaded: LoadedOpenClip,
    local_loss: bool = True,
    gather_with_grad: bool = True,
    grad_checkpointing: bool = False,
) -> BiomedClipModel:
    """Wrap a loaded open_clip model for the core trainer (optionally with gradient checkpointing)."""
    if grad_checkpointing:
        loaded.model.set_grad_checkpointing(True)
    return BiomedClipModel(loaded.model, local_loss=local_loss, gather_with_grad=gather_with_grad)


@dataclass
class TrainedModel:
    """A model to evaluate, export or embed with, and where it came from."""

    model: BiomedClipModel
    """The wrapper (``encode``, ``compute_features``), in eval mode on the requested device."""
    loaded: LoadedOpenClip
    """Its transforms, tokenizer and open_clip config."""
    run: RunFolder | None
    """The pretrain run folder it was read from (None for a ``--model`` spec)."""
    weights: Path | None
    """The weights file (None for an architecture without weights)."""
    source: str
    """The architecture source (the run's ``model.source``, or the ``--model`` spec)."""

    @property
    def name(self) -> str:
        """Model name recorded with its vectors in the store."""
        return f"biomed-clip:{self.source}"

    def weights_sha256(self) -> str | None:
        """SHA-256 of the weights file (None without one)."""
        return sha256_of(self.weights) if self.weights is not None else None


def is_run_folder(path: str | Path) -> bool:
    """Whether ``path`` is a pretrain run folder (``config.yaml`` and ``model.safetensors``)."""
    folder = Path(path)
    return (folder / "config.yaml").is_file() and (folder / RUN_WEIGHTS).is_file()


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No pretrained weights loaded")


@contextlib.contextmanager
def _without_random_init_warning() -> Iterator[None]:
    """Drop open_clip's "initialized randomly" warning (logged on the root logger) while a run's model is built."""
    root = logging.getLogger()
    dropped = _DropRandomInitWarning()
    root.addFilter(dropped)
    try:
        yield
    finally:
        root.removeFilter(dropped)


def load_run_model(run: str | Path, device: str | torch.device = "cpu", flag: str = "--run") -> TrainedModel:
    """The trained model of a pretrain run folder, rebuilt from its recorded ``model.source``.

    Raises:
        UserError: No such folder, no ``model.safetensors`` or ``config.yaml`` in it, or weights that do
            not fit the recorded architecture (the message names ``flag``).
    """
    from shared.checkpoints import load_weights

    folder = RunFolder.open(run, flag=flag, require=RUN_WEIGHTS)
    model_section = folder.load_config().get("model") or {}
    source = str(model_section.get("source", "demo"))
    with _without_random_init_warning():  # the run's weights are loaded right after
        loaded = load_open_clip_model(source, pretrained_towers=False,
                                      translate_stale=bool(model_section.get("translate_stale_keys", True)),
                                      device=device)  # fmt: skip
    wrapper = BiomedClipModel(loaded.model)
    try:
        load_weights(wrapper, folder.path / RUN_WEIGHTS)
    except Exception as error:  # noqa: BLE001 — safetensors and torch raise many types for a bad file
        raise UserError(
            f"{flag} {run}: {RUN_WEIGHTS} does not fit the recorded model {source!r} ({type(error).__name__})"
        ) from error
    loaded.source = str(folder.path)
    wrapper.to(device).eval()
    return TrainedModel(wrapper, loaded, folder, folder.path / RUN_WEIGHTS, source)


def load_spec_model(spec: str, device: str | torch.device = "cpu") -> TrainedModel:
    """A model from an open_clip spec: preset, JSON config, hub-layout/exported folder (``local-dir:``), ``hf-hub:``.

    Raises:
        UserError: The spec names nothing loadable (from :func:`load_open_clip_model`).
    """
    loaded = load_open_clip_model(spec, pretrained_towers=False, device=device)
    wrapper = BiomedClipModel(loaded.model)
    wrapper.to(device).eval()
    folder = Path(spec.removeprefix("local-dir:"))
    weights = folder / EXPORT_WEIGHTS if (folder / EXPORT_WEIGHTS).is_file() else None
    return TrainedModel(wrapper, loaded, None, weights, spec)


def load_trained_model(run: str | None, model: str | None, device: str | torch.device = "cpu",
                       default_run: str = "runs/biomed/demo") -> TrainedModel:  # fmt: skip
    """The model a command's ``--run`` / ``--model`` flags name (exactly one of them; ``default_run`` when neither).

    Raises:
        UserError: Both flags given, ``--model`` naming a run folder, or either naming nothing loadable.
    """
    if run and model:
        raise UserError("--run and --model: give one (--run for a pretrain run folder, --model for an open_clip model)")
    if model:
        if is_run_folder(model):
            raise UserError(f"--model {model}: this is a pretrain run folder; pass it as --run {model}")
        try:
            return load_spec_model(model, device)
        except UserError as error:
            raise UserError(f"--model {model}: {error}") from error
    return load_run_model(run or default_run, device)


def load_model_for_inference(
    path_or_source: str, device: str | torch.device = "cpu"
) -> tuple[BiomedClipModel, LoadedOpenClip]:
    """Load a model to embed with: a pretrain run folder, an exported directory, or any :func:`load_open_clip_model` source."""
    trained = (
        load_run_model(path_or_source, device)
        if is_run_folder(path_or_source)
        else load_spec_model(path_or_source, device)
    )
    return trained.model, trained.loaded
