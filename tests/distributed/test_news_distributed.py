"""news train under torchrun from a fresh folder: rank 0 builds the feature cache while rank 1 waits, then reads it.

The posts are a tiny out-of-context set (coloured shapes, real and swapped captions) in the JSONL layout, so the
frozen encoders run in seconds. (The built-in set's one-time build goes through the same
``main_process_first`` as the feature cache; its full-size torchrun run is measured in docs/distributed.md.)
Every rank holds every post's features; the core's batches split each global batch between ranks.
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from domains.news import ingest

COLORS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220), "yellow": (240, 220, 20)}
SHAPES = ("square", "circle", "triangle")
SETTINGS = ["--encoders.image_tower_args", '{"image_size": 64}', "--encoders.aligned_steps", "8",
            "--encoders.text_max_length", "16", "--trainer.max_steps", "8", "--trainer.validate_every", "4",
            "--trainer.checkpoint_every", "8", "--cache_dir", "cache"]  # fmt: skip
# Stated tolerance: the logged training loss (the global batch's, averaged over ranks) within 30% of the
# one-process run's. Exact equality is not expected on CPU: FND-CLIP's heads use BatchNorm, whose batch
# statistics are per rank (SyncBatchNorm needs CUDA; the trainer converts to it there), and dropout draws differ
# per rank. The 4-post test split makes its ROC-AUC too coarse to compare.
# Probed for a tighter check (2026-12-06; not kept, as nothing tighter holds): with dropout 0 the final loss still
# differed by 19% here; on a 96-post variant (16 posts per rank, dropout 0) the first step's loss differed by 1.3%,
# the eighth by 22%, test ROC-AUC by 0.025. With BatchNorm replaced by identity (a probe only, not a model option)
# the first two steps agreed to 4 digits and the trained CLIP aligner to 1e-7, so the gap is BatchNorm's per-rank
# statistics (later steps drift by ~0.1%: float-order differences that Adam's normalised steps amplify).
LOSS_RELATIVE_TOLERANCE = 0.3


def write_posts(folder: Path) -> Path:
    (folder / "img").mkdir(parents=True)
    items = [(color, shape) for color in COLORS for shape in SHAPES]
    records = []
    for index, (color, shape) in enumerate(items):
        image = Image.new("RGB", (48, 48), (255, 255, 255))
        pen = ImageDraw.Draw(image)
        if shape == "square":
            pen.rectangle((8, 8, 40, 40), fill=COLORS[color])
        elif shape == "circle":
            pen.ellipse((8, 8, 40, 40), fill=COLORS[color])
        else:
            pen.polygon([(24, 6), (42, 42), (6, 42)], fill=COLORS[color])
        image.save(folder / "img" / f"{color}-{shape}.png")
        split = ("train", "train", "val", "test")[index % 4] if index >= 4 else "train"
        other = items[(index + 1) % len(items)]
        caption = f"a {color} {shape}"
        records.append({"id": f"{index}-r", "text": caption, "image": f"img/{color}-{shape}.png", "label": 0,
                        "split": split})  # fmt: skip
        records.append({"id": f"{index}-f", "text": caption, "image": f"img/{other[0]}-{other[1]}.png", "label": 1,
                        "split": split})  # fmt: skip
    posts = folder / "posts.jsonl"
    posts.write_text("".join(json.dumps(record) + "\n" for record in records))
    return posts


@pytest.mark.slow
def test_two_processes_build_the_cache_once_and_match_one(workdir: Path, dist: types.ModuleType) -> None:
    posts = write_posts(workdir / "raw")
    ingest.main(["--format", "jsonl", "--input", str(posts), "--out_dir", str(workdir / "shards")])
    common = [*SETTINGS, "--input", "shards"]
    two = dist.launch("domains.news.train", [*common, "--run_name", "two", "--batch_size", "4"], workdir, 2)
    assert len(list((workdir / "cache").glob("*.pt"))) == 1  # one cache file, written by rank 0
    one = dist.launch("domains.news.train", [*common, "--run_name", "one", "--batch_size", "8"], workdir, 1)
    runs = workdir / "runs" / "news"
    single, double = dist.eval_metrics(runs / "one"), dist.eval_metrics(runs / "two")
    dist.record(
        "news train",
        one_s=one.wall_seconds,
        two_s=two.wall_seconds,
        one=single,
        two=double,
        loss_one=dist.train_losses(runs / "one"),
        loss_two=dist.train_losses(runs / "two"),
    )
    assert double["steps"] == single["steps"] == 8
    assert double["split_sizes"] == single["split_sizes"]
    assert dist.train_losses(runs / "two") == pytest.approx(
        dist.train_losses(runs / "one"), rel=LOSS_RELATIVE_TOLERANCE
    )
    assert (runs / "two" / "run.json").is_file() and (runs / "two" / "checkpoints" / "best.safetensors").is_file()


def store_vectors(store: Path) -> dict[tuple[str, str], list[float]]:
    """``(modality, sample_id) -> vector`` of every embedding row, and ``("prob_fake", sample_id) -> [score]`` of every
    ``samples_news`` row, asserting no row is there twice."""
    import duckdb

    with duckdb.connect(str(store), read_only=True) as connection:
        rows = connection.execute("SELECT modality, sample_id, vec FROM all_embeddings").fetchall()
        score_rows = connection.execute("SELECT sample_id, prob_fake FROM samples_news").fetchall()
    vectors = {(modality, sample_id): list(vec) for modality, sample_id, vec in rows}
    scores = dict(score_rows)
    assert len(vectors) == len(rows) and len(scores) == len(score_rows)  # one row per post and modality
    return vectors | {("prob_fake", sample_id): [score] for sample_id, score in scores.items()}


@pytest.mark.slow
def test_embed_splits_the_scoring_and_writes_each_post_once(workdir: Path, dist: types.ModuleType) -> None:
    posts = write_posts(workdir / "raw")
    ingest.main(["--format", "jsonl", "--input", str(posts), "--out_dir", str(workdir / "shards")])
    short = [*SETTINGS, "--trainer.max_steps", "2", "--trainer.validate_every", "2", "--trainer.checkpoint_every", "2"]
    dist.launch("domains.news.train", [*short, "--input", "shards", "--run_name", "one", "--batch_size", "8"], workdir)
    embed = ["--run", "runs/news/one", "--input", "shards", "--cache_dir", "cache"]
    two = dist.launch("domains.news.embed", [*embed, "--store", "two.duckdb"], workdir, 2)
    one = dist.launch("domains.news.embed", [*embed, "--store", "one.duckdb"], workdir, 1)
    split, single = store_vectors(workdir / "two.duckdb"), store_vectors(workdir / "one.duckdb")
    post_ids = {sample_id for modality, sample_id in single if modality == "post"}
    assert len(post_ids) == 2 * len(COLORS) * len(SHAPES)  # every post, real and swapped caption
    assert {modality for modality, _ in single} == {"post", "text", "image", "prob_fake"}
    assert len(single) == 4 * len(post_ids) and set(split) == set(single)  # every vector and score, once
    for key, vector in single.items():
        assert split[key] == pytest.approx(vector, abs=1e-5), key
    assert dist.printed_once(two.stdout, "wrote ")  # rank 0 alone writes and reports
    dist.record("news embed", one_s=one.wall_seconds, two_s=two.wall_seconds, posts=len(post_ids))
