"""Pictures for the explorer: a sample's image read from the webdataset shards its run trained on.

The store keeps vectors and attributes, not pixels; the shards a run read (named in its ``config.yaml``)
hold each sample's image under the sample's key (``<key>.png``/``.jpg``). This module indexes local shard
folders once (key → tar member), reads single images on demand and makes small thumbnails as data URLs
for ``st.column_config.ImageColumn``. Remote shard URLs are not fetched (the explorer works offline).
"""

from __future__ import annotations

import base64
import io
import tarfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import streamlit as st
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
THUMBNAIL_PX = 96


def shard_files(locations: Iterable[str]) -> list[Path]:
    """Local ``.tar`` files named by run-config values: shard folders, single tar files or brace patterns."""
    files: list[Path] = []
    for location in locations:
        if not isinstance(location, str) or "://" in location or location.startswith("pipe:"):
            continue
        if "{" in location:
            import braceexpand

            files += [Path(p) for p in braceexpand.braceexpand(location) if Path(p).is_file()]
            continue
        path = Path(location)
        if path.is_dir():
            files += sorted(path.glob("*.tar"))
        elif path.is_file() and path.suffix == ".tar":
            files.append(path)
    return files


def image_index(files: list[Path]) -> dict[str, tuple[str, str]]:
    """Sample key → (tar file, member name) of its image, over ``files`` (cached per file version)."""
    stamp = tuple((str(f), f.stat().st_mtime_ns) for f in files if f.is_file())
    return _image_index(stamp)


@st.cache_data(show_spinner=False, max_entries=16)
def _image_index(stamp: tuple[tuple[str, int], ...]) -> dict[str, tuple[str, str]]:
    index: dict[str, tuple[str, str]] = {}
    for file, _ in stamp:
        try:
            with tarfile.open(file) as archive:
                for member in archive:
                    name = member.name
                    stem, dot, extension = name.rpartition(".")
                    if member.isfile() and dot and f".{extension.lower()}" in IMAGE_EXTENSIONS:
                        index.setdefault(stem.split("/")[-1], (file, name))
        except (OSError, tarfile.TarError):
            continue  # an unreadable shard simply contributes no pictures
    return index


def image_bytes(index: Mapping[str, tuple[str, str]], key: str) -> bytes | None:
    """The raw bytes of ``key``'s image, or None when the shards have none."""
    found = index.get(str(key))
    if found is None:
        return None
    return _member_bytes(*found)


@st.cache_data(show_spinner=False, max_entries=2048)
def _member_bytes(file: str, member: str) -> bytes | None:
    try:
        with tarfile.open(file) as archive:
            extracted = archive.extractfile(member)
            return extracted.read() if extracted is not None else None
    except (OSError, tarfile.TarError, KeyError):
        return None


def thumbnail_url(data: bytes | None, decode: Callable[[bytes], Image.Image] | None = None) -> str | None:
    """A small PNG data URL of an image (``decode``: the domain's own image reader, e.g. news's alpha-on-white)."""
    if data is None:
        return None
    return _thumbnail_url(data, decode)


@st.cache_data(show_spinner=False, max_entries=4096, hash_funcs={type(lambda: 0): lambda f: f.__qualname__})
def _thumbnail_url(data: bytes, decode: Any) -> str | None:
    try:
        image = decode(data) if decode is not None else Image.open(io.BytesIO(data)).convert("RGB")
        image = image.copy()
        image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
    except Exception:  # noqa: BLE001 — a broken picture shows as no picture, never as a page error
        return None
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def with_thumbnails(
    frame: Any,
    index: Mapping[str, tuple[str, str]],
    decode: Callable[[bytes], Image.Image] | None = None,
    key_column: str = "sample_id",
) -> Any:
    """``frame`` with an ``image`` column of thumbnail data URLs first (None where there is no picture)."""
    if frame is None or len(frame) == 0 or key_column not in frame.columns or not index:
        return frame
    frame = frame.copy()
    frame.insert(0, "image", [thumbnail_url(image_bytes(index, key), decode) for key in frame[key_column]])
    return frame


IMAGE_COLUMN_CONFIG = {"image": st.column_config.ImageColumn("image", width="small")}
"""``column_config`` for :func:`with_thumbnails` tables."""
