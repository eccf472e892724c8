"""Shared fixtures of the news tests: a tiny out-of-context set, ingested and trained once per session.

The posts are coloured shapes with their true caption (real) or another shape's picture (fake), in the
plain JSONL layout, plus one post whose image is missing (dropped by ingestion).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from domains.news import ingest, train

COLORS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220), "yellow": (240, 220, 20)}
SHAPES = ("square", "circle", "triangle")
FAST = [
    "--encoders.image_tower_args",
    '{"image_size": 64}',
    "--encoders.aligned_steps",
    "20",
    "--encoders.text_max_length",
    "16",
    "--trainer.max_steps",
    "30",
    "--trainer.validate_every",
    "10",
    "--trainer.checkpoint_every",
    "15",
    "--batch_size",
    "8",
]


def draw(shape: str, color: tuple[int, int, int], path: Path) -> None:
    image = Image.new("RGB", (48, 48), (255, 255, 255))
    pen = ImageDraw.Draw(image)
    box = (8, 8, 40, 40)
    {"square": pen.rectangle, "circle": pen.ellipse}.get(
        shape, lambda b, fill: pen.polygon([(24, 6), (42, 42), (6, 42)], fill=fill)
    )(box, fill=color)
    image.save(path)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("news_e2e")
    (root / "img").mkdir()
    items = [(c, s) for c in COLORS for s in SHAPES]
    for color, shape in items:
        draw(shape, COLORS[color], root / "img" / f"{color}-{shape}.png")
    records = []
    for index, (color, shape) in enumerate(items):
        split = ("train", "train", "val", "test")[index % 4] if index >= 4 else "train"
        other = items[(index + 1) % len(items)]
        caption = f"a {color} {shape}"
        records.append(
            {"id": f"{index}-r", "text": caption, "image": f"img/{color}-{shape}.png", "label": 0, "split": split}
        )
        records.append(
            {"id": f"{index}-f", "text": caption, "image": f"img/{other[0]}-{other[1]}.png", "label": 1, "split": split}
        )
    records.append({"id": "broken", "text": "no picture", "image": "img/none.png", "label": 0, "split": "train"})
    posts = root / "posts.jsonl"
    posts.write_text("".join(json.dumps(r) + "\n" for r in records))
    shards = root / "shards"
    summary = ingest.main(["--format", "jsonl", "--input", str(posts), "--out_dir", str(shards)])
    assert summary["written"] == 24 and summary["dropped"] == {"image file missing": 1}
    runs = root / "runs"
    common = ["--input", str(shards), "--runs_root", str(runs), "--cache_dir", str(root / "cache")]
    result = train.main([*common, "--run_name", "tiny", *FAST])
    return {
        "root": root,
        "posts": posts,
        "shards": shards,
        "runs": runs,
        "run": runs / "news" / "tiny",
        "result": result,
    }


@pytest.fixture
def fast() -> list[str]:
    """Flags that make training take seconds: small images, few steps, small batches."""
    return list(FAST)
