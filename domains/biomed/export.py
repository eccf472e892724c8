"""Export a trained model as an open_clip ``local-dir:`` directory.

The directory holds exactly what open_clip reads: ``open_clip_config.json``, ``open_clip_model.safetensors``,
the tokenizer files and, for a Hugging Face text tower, that tower's ``config.json``. Then, anywhere::

    model, _, preprocess = open_clip.create_model_and_transforms("local-dir:runs/biomed/demo/export")
    tokenizer = open_clip.get_tokenizer("local-dir:runs/biomed/demo/export")

reproduces the suite's embeddings exactly. The text tower's ``hf_model_name`` is the directory's absolute
path (open_clip reads the text architecture from there); if the folder is moved, load it with
``domains.biomed.model.load_open_clip_model(DIR)``, which resolves the path to the folder itself.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WEIGHTS_NAME = "open_clip_model.safetensors"


@dataclass
class ExportConfig:
    """Write an open_clip local-dir model from a pretrain run (or any loadable model)."""

    model: str = "runs/biomed/demo"
    """A pretrain run folder (config.yaml + model.safetensors), or any model source."""
    out_dir: str = ""
    """Target folder; empty = <model>/export for a run folder, else runs/biomed/export."""


def export_local_dir(model: Any, loaded: Any, out_dir: str | Path) -> Path:
    """Write ``model`` (a :class:`~domains.biomed.model.BiomedClipModel`) as an open_clip local-dir folder.

    The folder is assembled beside the target and renamed into place, so a reader never sees half an
    export; an existing export at ``out_dir`` is replaced.

    Returns:
        The export folder.
    """
    from safetensors.torch import save_file

    out_dir = Path(out_dir).resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    clip = model.open_clip_model()
    config = copy.deepcopy(loaded.config)
    text_cfg = config["model_cfg"]["text_cfg"]
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        if text_cfg.get("hf_model_name"):
            clip.text.config.save_pretrained(staging)
            text_cfg["hf_model_name"] = str(out_dir)
            text_cfg["hf_tokenizer_name"] = str(out_dir)
        tokenizer = getattr(loaded.tokenizer, "tokenizer", None)
        if tokenizer is not None and hasattr(tokenizer, "save_pretrained"):
            tokenizer.save_pretrained(staging)
        (staging / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        state = {name: tensor.detach().cpu().contiguous() for name, tensor in clip.state_dict().items()}
        save_file(state, str(staging / WEIGHTS_NAME), metadata={"format": "pt"})
        # Tokenizer saving may add a chat template or similar; open_clip takes any *.safetensors/*.bin as
        # weights, so nothing but the expected weights file may carry those suffixes.
        stray = [
            p.name for p in staging.iterdir() if p.suffix in (".bin", ".pth", ".safetensors") and p.name != WEIGHTS_NAME
        ]
        if stray:
            raise RuntimeError(f"unexpected weight-like files in the export: {stray}")
        if out_dir.exists():
            retired = out_dir.with_name(f".{out_dir.name}.old")
            shutil.rmtree(retired, ignore_errors=True)
            out_dir.rename(retired)
            staging.rename(out_dir)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def main(argv: Sequence[str] | None = None) -> Path:
    """Command-line entry point: ``python -m domains.biomed.export --help``."""
    from shared.cli import parse_config

    config = parse_config(ExportConfig, argv, prog="python -m domains.biomed.export")
    from domains.biomed.model import load_model_for_inference

    model, loaded = load_model_for_inference(config.model)
    is_run = (Path(config.model) / "config.yaml").is_file()
    out_dir = (
        Path(config.out_dir)
        if config.out_dir
        else (Path(config.model) / "export" if is_run else Path("runs/biomed/export"))
    )
    path = export_local_dir(model, loaded, out_dir)
    print(f"Wrote open_clip local-dir model to {path}")
    print(f"Next: python -c \"import open_clip; open_clip.create_model_and_transforms('local-dir:{path}')\"")
    return path


if __name__ == "__main__":
    main()
