"""Ordinary image folders (PNG, JPEG, TIFF, …) with a captions table (open_clip's ``filepath,title``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from domains.biomed.caption_tables import read_captions_table
from domains.biomed.samples import BiomedSample, SkippedInput, content_key, letterbox_rgb


def read_image_caption_folder(
    root: str | Path,
    captions_path: str | Path,
    image_size: int = 224,
    license_name: str = "unknown",
    skipped: list[SkippedInput] | None = None,
) -> Iterator[BiomedSample]:
    """Read a folder of ordinary images (PNG, JPEG, TIFF, …) listed in a captions table.

    Image paths in the table are relative to ``root`` (absolute paths are used as they are). Missing
    or unreadable images and empty captions are recorded in ``skipped``.
    """
    root = Path(root)
    skipped = skipped if skipped is not None else []
    for relative_name, caption in read_captions_table(captions_path):
        path = Path(relative_name) if Path(relative_name).is_absolute() else root / relative_name
        if not caption:
            skipped.append(SkippedInput(relative_name, "empty caption"))
            continue
        try:
            with Image.open(path) as pil:
                rgb = np.asarray(pil.convert("RGB"), dtype=np.float64) / 255.0
        except FileNotFoundError:
            skipped.append(SkippedInput(relative_name, "image file not found"))
            continue
        except Exception as error:  # noqa: BLE001 — Pillow raises many types for corrupt files
            skipped.append(SkippedInput(relative_name, f"unreadable image ({type(error).__name__}: {error})"))
            continue
        image = letterbox_rgb(rgb, image_size)
        key = content_key("image", Path(relative_name))
        metadata = {
            "image_file_name": Path(relative_name).name,
            "image_size": [image_size, image_size],
            "image_panel_type": "single",
            "image_primary_label": [],
            "image_secondary_label": [],
            "image_set": "folder",
            "article_license": license_name,
        }
        yield BiomedSample(key=key, image=image, caption=caption, metadata=metadata)


# --------------------------------------------------------------------------------------------------
# BIOMEDICA-format shards: decoding and filters
# --------------------------------------------------------------------------------------------------
