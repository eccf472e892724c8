"""Export a trained model as an open_clip ``local-dir:`` folder.

The folder holds exactly what open_clip reads: ``open_clip_config.json``, ``open_clip_model.safetensors``,
the tokenizer files and, for a Hugging Face text tower, that tower's ``config.json``. Then, anywhere::

    model, _, preprocess = open_clip.create_model_and_transforms("local-dir:runs/biomed/demo/export")
    tokenizer = open_clip.get_tokenizer("local-dir:runs/biomed/demo/export")

reproduces the suite's embeddings, also after the folder is moved or copied elsewhere. open_clip 3.3
builds an HF text tower from ``AutoConfig.from_pretrained(text_cfg["hf_model_name"])`` (``hf_model.py``)
and resolves that name itself, never relative to the ``local-dir:`` folder (only the tokenizer is read
from the folder, ``factory.get_tokenizer``); an absolute path to the folder therefore breaks when it moves
(``OSError: Repo id must be in the form ...``). So the export names the text tower's architecture by its
Hugging Face Hub id, as the published BiomedCLIP folder does (the packaged MiniLM of the demo is
``sentence-transformers/all-MiniLM-L6-v2``): plain open_clip then reads that small ``config.json`` from
the Hub, or offline from the Hugging Face cache, and the weights from the folder. The folder carries the
same ``config.json`` as well, and :func:`domains.biomed.open_clip_loading.load_open_clip_model` uses it,
so the suite loads a moved export with no network and no cache at all. A text tower with no Hub id (a
local config folder, e.g. the tiny test model) keeps the folder's absolute path: such an export loads
with plain open_clip only in place, and anywhere with the suite's loader.
:func:`export_model` is the whole ``python -m domains.biomed.export`` step (an :class:`ExportConfig`).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

from domains.biomed.model import EXPORT_WEIGHTS, BiomedClipModel, load_trained_model
from domains.biomed.open_clip_loading import LoadedOpenClip
from shared.atomic_files import atomic_directory, atomic_output, write_text_atomically
from shared.user_errors import UserError

WEIGHTS_NAME = EXPORT_WEIGHTS


@dataclass
class ExportConfig:
    """Write an open_clip local-dir model from a pretrain run (or from any loadable open_clip model)."""

    run: str | None = None
    """Pretrain run folder to export (config.yaml + model.safetensors). Default: runs/biomed/demo unless --model is given."""
    model: str | None = None
    """Instead of --run: an open_clip model that is not a run folder: a preset, a JSON config, a hub-layout folder (local-dir:DIR) or hf-hub:org/repo."""
    out_dir: str = ""
    """Folder the export is written to (replaced if it exists); empty = <run>/export, or runs/biomed/export with --model."""


def export_local_dir(model: BiomedClipModel, loaded: LoadedOpenClip, out_dir: str | Path) -> Path:
    """Write ``model`` as an open_clip local-dir folder, with the loss's temperature in ``logit_scale``.

    Every file is written with the core atomic writer into a staging folder beside the target, which is
    then renamed into place, so a reader never sees half an export; an existing export at ``out_dir`` is
    replaced.

    Returns:
        The export folder.

    Raises:
        UserError: ``out_dir`` exists and is not a folder.
    """
    from safetensors.torch import save_file

    out_dir = Path(out_dir).resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: the export target exists and is not a folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    clip = model.open_clip_model()
    config = copy.deepcopy(loaded.config)
    text_cfg = config["model_cfg"]["text_cfg"]
    with atomic_directory(out_dir) as staging:
        if text_cfg.get("hf_model_name"):
            clip.text.config.save_pretrained(staging)
            # open_clip 3.3 resolves hf_model_name without regard to the folder: name it by Hub id when it has one.
            portable = loaded.text_hub_id or str(out_dir)
            text_cfg["hf_model_name"] = portable
            text_cfg["hf_tokenizer_name"] = portable
        tokenizer = getattr(loaded.tokenizer, "tokenizer", None)
        if tokenizer is not None and hasattr(tokenizer, "save_pretrained"):
            tokenizer.save_pretrained(staging)
        write_text_atomically(staging / "open_clip_config.json", json.dumps(config, indent=2) + "\n")
        state = {name: tensor.detach().cpu().contiguous() for name, tensor in clip.state_dict().items()}
        with atomic_output(staging / WEIGHTS_NAME, suffix=".partial") as temporary:
            save_file(state, str(temporary), metadata={"format": "pt"})
        # Tokenizer saving may add a chat template or similar; open_clip takes any *.safetensors/*.bin as
        # weights, so nothing but the expected weights file may carry those suffixes.
        stray = [
            p.name for p in staging.iterdir() if p.suffix in (".bin", ".pth", ".safetensors") and p.name != WEIGHTS_NAME
        ]
        if stray:
            raise RuntimeError(f"unexpected weight-like files in the export: {stray}")
    return out_dir


def export_files(export_dir: Path, base: Path) -> list[str]:
    """The export's open_clip config and weights as paths relative to ``base`` (for a run's marker)."""
    return [str((export_dir / name).relative_to(base)) for name in ("open_clip_config.json", WEIGHTS_NAME)]


def export_model(config: ExportConfig) -> Path:
    """Export the model ``config`` names to ``config.out_dir`` (default ``<run>/export``); returns the folder.

    An export inside the run folder is added to the run's marker (its config and weights, with their hashes).

    Raises:
        UserError: A model that names nothing loadable, an export target that is not a folder.
    """
    trained = load_trained_model(config.run, config.model)
    default = trained.run.path / "export" if trained.run else Path("runs/biomed/export")
    path = export_local_dir(trained.model, trained.loaded, Path(config.out_dir) if config.out_dir else default)
    if trained.run is not None and path.resolve().is_relative_to(trained.run.path.resolve()):
        trained.run.record_outputs(export_files(path.resolve(), trained.run.path.resolve()))
    return path
