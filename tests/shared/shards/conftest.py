"""Fixtures of the shard tests: tiny shard folders written inside each test, decoders, and a loopback
HTTP server (python's http.server on 127.0.0.1, started and stopped by the test)."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from shared.shards import ShardWriter

LICENSES = ["CC BY", "CC0", "CC BY-NC", "other"]
CONCEPTS = ["microscopy", "plot", "clinical"]


def tiny_jpeg(seed: int, size_px: int = 8) -> bytes:
    """A small random RGB JPEG."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size_px, size_px, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def make_metadata(index: int) -> dict[str, Any]:
    """Per-sample JSON with a scalar licence, a list of concept labels and a numeric score."""
    return {
        "article_license": LICENSES[index % len(LICENSES)],
        "image_primary_label": [CONCEPTS[index % 3]] + ([CONCEPTS[(index + 1) % 3]] if index % 5 == 0 else []),
        "image_panel_type": "single" if index % 2 else "multi",
        "score": index / 10,
    }


def make_sample(index: int, with_image: bool = True) -> dict[str, Any]:
    sample: dict[str, Any] = {
        "__key__": f"sample{index:05d}",
        "txt": f"caption number {index}",
        "json": make_metadata(index),
        "cls": index % 3,
    }
    if with_image:
        sample["jpg"] = tiny_jpeg(index)
    return sample


def write_shards(
    out_dir: Path,
    num_samples: int,
    per_shard: int,
    start: int = 0,
    with_image: bool = True,
    prefix: str = "shard",
) -> list[dict[str, Any]]:
    """Writes samples ``start .. start+num_samples-1`` and returns what was written."""
    samples = [make_sample(index, with_image) for index in range(start, start + num_samples)]
    with ShardWriter(
        out_dir,
        prefix=prefix,
        max_samples=per_shard,
        track_json_fields=["article_license", "image_panel_type"],
        concept_fields=["image_primary_label"],
    ) as writer:
        for sample in samples:
            writer.write(sample)
    return samples


def decode_caption_sample(sample: dict[str, Any]) -> dict[str, Any]:
    """Decodes the JPEG (raises on corrupt bytes) and returns key, caption and image size."""
    image = Image.open(io.BytesIO(sample["jpg"]))
    image.load()
    return {"key": sample["__key__"], "caption": sample["txt"].decode("utf-8"), "width": image.width}


def decode_key_only(sample: dict[str, Any]) -> dict[str, Any]:
    """Cheap decoder for tests that only follow which samples arrive."""
    return {"key": sample["__key__"], "source": sample["__url__"]}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def loopback_http_server(directory: Path) -> Iterator[str]:
    """Serves ``directory`` on 127.0.0.1 (python's http.server) and yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(directory)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("loopback HTTP server did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


# Tests run with --import-mode=importlib, so the helpers reach them as fixtures.


@pytest.fixture(scope="session")
def write_shards_fn() -> Callable[..., list[dict[str, Any]]]:
    """:func:`write_shards`."""
    return write_shards


@pytest.fixture(scope="session")
def make_sample_fn() -> Callable[..., dict[str, Any]]:
    """:func:`make_sample`."""
    return make_sample


@pytest.fixture(scope="session")
def http_server() -> Callable[[Path], Any]:
    """:func:`loopback_http_server` (a context manager yielding the base URL)."""
    return loopback_http_server


@pytest.fixture(scope="session")
def decode_key() -> Callable[[dict[str, Any]], dict[str, Any]]:
    """:func:`decode_key_only`."""
    return decode_key_only


@pytest.fixture(scope="session")
def decode_caption() -> Callable[[dict[str, Any]], dict[str, Any]]:
    """:func:`decode_caption_sample`."""
    return decode_caption_sample
