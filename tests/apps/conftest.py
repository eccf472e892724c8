"""Shared fixtures for the explorer tests: a store filled by the domains' own library functions at their
smallest settings (configs parsed from the same flags the commands take), run folders beside it as
``make demo`` leaves them (each finished with its ``run.json``), and upload samples.

Biomed and astro run their real demo paths (built-in corpus / built-in star set, made small; astro's
smallest set is built with its own demo builder and ingested by its ingest pipeline); news and recsys run
their real training on tiny data written here (a coloured-shape out-of-context set; a synthetic RecBole
folder with a knowledge graph), because their built-in sets take minutes to featurize.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image, ImageDraw

from shared.cli import parse_config
from shared.store import EmbeddingStore

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220), "yellow": (240, 220, 20)}
SHAPES = ("square", "circle", "triangle")


def draw_shape(shape: str, colour: tuple[int, int, int], size: int = 48) -> Image.Image:
    """A coloured square, circle or triangle on white."""
    image = Image.new("RGB", (size, size), (255, 255, 255))
    pen = ImageDraw.Draw(image)
    box = (size // 6, size // 6, size - size // 6, size - size // 6)
    if shape == "square":
        pen.rectangle(box, fill=colour)
    elif shape == "circle":
        pen.ellipse(box, fill=colour)
    else:
        pen.polygon([(size // 2, 4), (size - 4, size - 4), (4, size - 4)], fill=colour)
    return image


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_news_posts(root: Path) -> Path:
    """An out-of-context JSONL set: each shape's true caption with its own picture (real) or another's (fake)."""
    (root / "img").mkdir(parents=True)
    items = [(c, s) for c in COLOURS for s in SHAPES]
    for colour, shape in items:
        draw_shape(shape, COLOURS[colour]).save(root / "img" / f"{colour}-{shape}.png")
    records = []
    for index, (colour, shape) in enumerate(items):
        split = ("train", "train", "val", "test")[index % 4] if index >= 4 else "train"
        other = items[(index + 1) % len(items)]
        caption = f"a {colour} {shape}"
        records.append(
            {"id": f"{index}-r", "text": caption, "image": f"img/{colour}-{shape}.png", "label": 0, "split": split}
        )
        records.append({"id": f"{index}-f", "text": caption, "image": f"img/{other[0]}-{other[1]}.png", "label": 1, "split": split})  # fmt: skip
    posts = root / "posts.jsonl"
    posts.write_text("".join(json.dumps(r) + "\n" for r in records))
    return posts


def write_recbole_folder(folder: Path, users: int = 30, items: int = 36, per_user: int = 10) -> Path:
    """A RecBole atomic dataset with two taste groups and a knowledge graph linking items to a director."""
    from domains.recsys.recbole_io import write_atomic_file

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    rows = []
    for user in range(users):
        own = [i for i in range(items) if i % 2 == user % 2]
        for position, item in enumerate(rng.choice(own, size=per_user, replace=False)):
            rows.append((str(user + 1), str(item + 1), 4.0, float(1000 + position)))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    write_atomic_file(inter, folder / "tiny.inter", {"user_id": "token", "item_id": "token", "rating": "float", "timestamp": "float"})  # fmt: skip
    item_table = pd.DataFrame({"item_id": [str(i + 1) for i in range(items)],
                               "movie_title": [f"Film {i + 1}" for i in range(items)],
                               "release_year": [str(1990 + i) for i in range(items)],
                               "class": [("Comedy", "Drama")[i % 2] for i in range(items)]})  # fmt: skip
    write_atomic_file(item_table, folder / "tiny.item", {"item_id": "token", "movie_title": "token_seq", "release_year": "token", "class": "token_seq"})  # fmt: skip
    link = pd.DataFrame(
        {"item_id": [str(i + 1) for i in range(items)], "entity_id": [f"e.{i + 1}" for i in range(items)]}
    )
    write_atomic_file(link, folder / "tiny.link", {"item_id": "token", "entity_id": "token"})
    triples = [(f"e.{i + 1}", "film.film.directed_by", f"director.{i % 2}") for i in range(items)]
    kg = pd.DataFrame(triples, columns=["head_id", "relation_id", "tail_id"])
    write_atomic_file(kg, folder / "tiny.kg", {"head_id": "token", "relation_id": "token", "tail_id": "token"})
    return folder


def run_biomed(root: Path, store: Path) -> None:
    from domains.biomed.demo import build_demo_corpus
    from domains.biomed.training import PretrainConfig, pretrain

    corpus = build_demo_corpus(root / "biomed_corpus", image_size=32, train_variants=1, skimage_crops=1)
    pretrain(parse_config(PretrainConfig, [
        "--model.source", "tiny", "--model.pretrained_towers", "false", "--data.demo_image_size", "32",
        "--data.batch_size", "16", "--trainer.max_steps", "2", "--trainer.warmup_steps", "1",
        "--trainer.checkpoint_every", "2", "--evaluate_untrained", "false", "--zero_shot", "none",
        "--runs_root", str(root / "runs"), "--run_name", "demo", "--store", str(store),
        "--data.train", str(corpus["train"]), "--data.validation", str(corpus["test"]),
    ]))  # fmt: skip


def run_astro(root: Path, store: Path) -> None:
    from domains.astro.clip_pretraining import PretrainConfig, run_pretrain
    from domains.astro.demo import DemoSpec, build_demo_dataset
    from domains.astro.embedding_export import EmbedConfig, run_embed
    from domains.astro.ingest_pipeline import IngestConfig, run_ingest

    # The built-in star set at its smallest useful size, kept in the domain's own cache
    # ($DOMAIN_CLIP_CACHE or ~/.cache/domain-clip-suite/astro) like every demo set: built once per machine.
    files = build_demo_dataset(DemoSpec(n_stars=80, min_per_class=6))
    ingest_dir = root / "runs" / "astro" / "ingest-demo"
    run_ingest(parse_config(IngestConfig, [
        "--catalogue", str(files.catalogue), "--lightcurve_dir", str(files.lightcurve_dir),
        "--spectrum_index", str(files.spectrum_index), "--spectrum_dir", str(files.spectrum_dir),
        "--runs_root", str(root / "runs"), "--run_name", "ingest-demo", "--seeds", "[42]", "--subsets", "[full]",
    ]))  # fmt: skip
    run_pretrain(parse_config(PretrainConfig, [
        "--runs_root", str(root / "runs"), "--run_name", "pretrain-demo", "--input", str(ingest_dir),
        "--trainer.max_epochs", "1", "--batch_size", "32", "--model.photometry.d_model", "8",
        "--model.photometry.n_layers", "1", "--model.photometry.n_heads", "2", "--model.photometry.d_ff", "16",
        "--model.embed_dim", "16",
    ]))  # fmt: skip
    run_embed(parse_config(EmbedConfig, [
        "--run", str(root / "runs" / "astro" / "pretrain-demo"), "--store", str(store),
        "--top_k", "3", "--min_modalities", "2", "--lof_neighbors", "5",
    ]))  # fmt: skip


def run_news(root: Path, store: Path) -> None:
    from domains.news.detector_training import TrainConfig, train_detector
    from domains.news.ingestion import IngestConfig, ingest_posts
    from domains.news.store_export import EmbedConfig, export_run

    posts = write_news_posts(root / "news_posts")
    shards = root / "news_shards"
    ingest_posts(parse_config(IngestConfig, ["--format", "jsonl", "--input", str(posts), "--out_dir", str(shards)]))
    cache = str(root / "news_cache")
    train_detector(parse_config(TrainConfig, [
        "--input", str(shards), "--runs_root", str(root / "runs"), "--cache_dir", cache, "--run_name", "demo",
        "--encoders.image_tower_args", '{"image_size": 64}', "--encoders.aligned_steps", "10",
        "--encoders.text_max_length", "16", "--trainer.max_steps", "10", "--trainer.validate_every", "5",
        "--trainer.checkpoint_every", "10", "--batch_size", "8",
    ]))  # fmt: skip
    export_run(parse_config(EmbedConfig, [
        "--run", str(root / "runs" / "news" / "demo"), "--store", str(store), "--cache_dir", cache,
    ]))  # fmt: skip


def run_recsys(root: Path, store: Path) -> None:
    from domains.recsys.llmrec.pipeline import TrainConfig, run_training
    from domains.recsys.llmrec.store_export import DEFAULT_MODEL_NAME, embed_into_store
    from domains.recsys.llmrec.training import load_run

    source = write_recbole_folder(root / "recbole_tiny")
    run_training(parse_config(TrainConfig, [
        "--input", str(source), "--runs_root", str(root / "runs"), "--run_name", "demo",
        "--trainer.max_epochs", "2", "--base_epochs", "2", "--candidates_k", "5",
    ]))  # fmt: skip
    embed_into_store(load_run(root / "runs" / "recsys" / "demo"), store, DEFAULT_MODEL_NAME)


def build_demo_store(root: Path) -> Path:
    """Run every domain's commands into ``root/runs`` (store at ``root/runs/embeddings.duckdb``)."""
    store = root / "runs" / "embeddings.duckdb"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models lose far more to thread hand-offs than they gain on 2 cores
    try:
        for run in (run_biomed, run_astro, run_news, run_recsys):
            run(root, store)
    finally:
        torch.set_num_threads(threads)
    return store


@pytest.fixture(scope="session")
def store_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The store of the demo runs (run folders beside it in ``runs/``).

    ``$EXPLORER_TEST_STORE`` names one built earlier by :func:`build_demo_store` (for quick reruns while
    working on a page; the pages only read it).
    """
    prebuilt = os.environ.get("EXPLORER_TEST_STORE")
    if prebuilt:
        return Path(prebuilt)
    return build_demo_store(tmp_path_factory.mktemp("explorer_demo"))


@pytest.fixture
def explorer_env(store_file: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point the explorer at the demo store."""
    monkeypatch.setenv("EXPLORER_STORE", str(store_file))
    monkeypatch.delenv("EXPLORER_RUNS", raising=False)
    yield store_file


@pytest.fixture(scope="session")
def dicom_bytes() -> bytes:
    """A real CT slice from pydicom's bundled test files, with identifying fields set to known values."""
    import pydicom
    from pydicom.data import get_testdata_file

    dataset = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    dataset.PatientName = "Doe^Jane"
    dataset.PatientID = "MRN0042424242"
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def shape_png() -> bytes:
    return png_bytes(draw_shape("circle", COLOURS["red"]))


@pytest.fixture
def empty_store(tmp_path: Path) -> Path:
    """A store with one tiny domain, for pages that must cope with missing data."""
    path = tmp_path / "runs" / "embeddings.duckdb"
    path.parent.mkdir()
    store = EmbeddingStore(path)
    with store.writing() as writer:
        writer.register_run("r", "astro", "m", "v1", config={})
        writer.write_embeddings(domain="astro", modality="photometry", model_name="m", model_version="v1", run_id="r",
                                sample_ids=["a", "b", "c"], vectors=np.eye(3, dtype=np.float32))  # fmt: skip
    store.close()
    return path
