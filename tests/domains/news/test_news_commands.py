"""End to end on a tiny out-of-context set: ingest → train → evaluate → detect → embed → ablate.

The posts are coloured shapes with their true caption (real) or another shape's picture (fake), in the
plain JSONL layout, written inside the test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from domains.news import ablate, detect, embed, evaluate, ingest, train

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


@pytest.fixture(scope="module")
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


def test_train_writes_run_folder_and_selects_on_validation(trained: dict) -> None:
    run = trained["run"]
    for name in ("config.yaml", "metrics.csv", "detector.json", "clip_alignment.safetensors", "eval/metrics.json"):
        assert (run / name).is_file(), name
    assert (run / "checkpoints" / "best.safetensors").is_file()
    assert (run / "eval" / "confusion_matrix.png").stat().st_size > 0 and (run / "eval" / "roc.png").is_file()
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["split_sizes"] == {"train": 16, "val": 4, "test": 4}
    assert metrics["num_posts"] == 4 and set(metrics["per_class"]) == {"real", "fake"}
    assert metrics["selected_on"].startswith("val roc_auc")
    assert "val" in (run / "metrics.csv").read_text()
    confusion = np.array(metrics["confusion_matrix"])
    assert confusion.sum() == 4 and metrics["accuracy"] == pytest.approx(np.trace(confusion) / 4)


def test_detect_agrees_with_evaluation_and_explains(trained: dict, tmp_path: Path) -> None:
    run = trained["run"]
    root = trained["root"]
    single = detect.main(
        [
            "--run",
            str(run),
            "--text",
            "a red square",
            "--image",
            str(root / "img" / "red-square.png"),
            "--device",
            "cpu",
        ]
    )[0]
    assert single["label"] in ("real", "fake") and 0.0 <= single["prob_fake"] <= 1.0
    assert set(single["attention"]) == {"text", "image", "cross"}
    assert all(0.0 < w < 1.0 for w in single["attention"].values())
    assert -1.0 <= single["clip_similarity"] <= 1.0

    post_file = tmp_path / "post.json"
    post_file.write_text(json.dumps({"text": "a red square", "image": str(root / "img" / "red-square.png")}))
    from_json = detect.main(["--run", str(run), "--post", str(post_file), "--device", "cpu"])[0]
    assert from_json["prob_fake"] == pytest.approx(single["prob_fake"], abs=1e-5)

    output = tmp_path / "posts.results.jsonl"
    results = detect.main(["--run", str(run), "--input", str(trained["posts"]), "--out_dir", str(tmp_path)])
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(lines) == len(results) == 25
    assert lines[-1] == {"id": "broken", "skipped": "no readable image"}
    by_id = {r["id"]: r for r in lines}
    assert by_id["0-r"]["prob_fake"] == pytest.approx(single["prob_fake"], abs=1e-5)  # same post, batch path
    assert by_id["0-r"]["true_label"] == "real"

    # the evaluation path (cached features) gives the same probabilities as detect (features from raw posts)
    from domains.news.feature_cache import load_post_table
    from domains.news.trained_detector import load_detector

    detector = load_detector(run)
    table = load_post_table(trained["shards"], detector.encoders, trained["root"] / "cache")
    predicted = detector.predict_from_features(detector.encoders.finish(table.base))
    for key, prob in zip(table.keys, predicted["prob_fake"]):
        post_id = key.removeprefix("jsonl-")
        assert by_id[post_id]["prob_fake"] == pytest.approx(float(prob), abs=1e-4)


def test_evaluate_and_embed(trained: dict) -> None:
    run = trained["run"]
    val = evaluate.main(["--run", str(run), "--split", "val", "--cache_dir", str(trained["root"] / "cache")])
    assert val["num_posts"] == 4 and (run / "eval" / "val" / "metrics.json").is_file()
    test_metrics = evaluate.main(["--run", str(run), "--cache_dir", str(trained["root"] / "cache")])
    stored = json.loads((run / "eval" / "metrics.json").read_text())
    assert test_metrics["accuracy"] == stored["accuracy"] and test_metrics["roc_auc"] == stored["roc_auc"]

    store_path = trained["root"] / "store.duckdb"
    written = embed.main(["--run", str(run), "--store", str(store_path), "--cache_dir", str(trained["root"] / "cache")])
    assert written["written"] == {"post": 24, "text": 24, "image": 24}
    from shared.store import EmbeddingStore

    store = EmbeddingStore(store_path)
    try:
        samples = store.sql("SELECT sample_id, label, prob_fake FROM samples_news ORDER BY sample_id")
        assert len(samples) == 24 and set(samples["label"]) == {"real", "fake"}
        hits = store.nearest(sample_id=samples["sample_id"][0], k=3, domain="news", modality="post")
        assert len(hits) == 3
    finally:
        store.close()
    again = embed.main(["--run", str(run), "--store", str(store_path), "--cache_dir", str(trained["root"] / "cache")])
    assert again["written"] == written["written"]  # idempotent: re-running replaces, never duplicates
    store = EmbeddingStore(store_path)
    try:
        assert int(store.sql("SELECT count(*) AS n FROM samples_news")["n"][0]) == 24
    finally:
        store.close()


def test_ablate_writes_a_table_per_variant_and_seed(trained: dict) -> None:
    result = ablate.main(
        [
            "--input",
            str(trained["shards"]),
            "--runs_root",
            str(trained["runs"]),
            "--run_name",
            "abl",
            "--cache_dir",
            str(trained["root"] / "cache"),
            "--variants",
            '["full", "text_only"]',
            "--seeds",
            "[1, 2]",
            *FAST,
        ]
    )
    assert set(result["runs"]) == {"full", "text_only"} and set(result["runs"]["full"]) == {"1", "2"}
    accuracies = [result["runs"]["full"][s]["accuracy"] for s in ("1", "2")]
    assert result["summary"]["full"]["accuracy"]["mean"] == pytest.approx(np.mean(accuracies))
    table = (trained["runs"] / "news" / "abl" / "ablation.md").read_text()
    assert "| full |" in table and "| text_only |" in table
    assert result["runs"]["text_only"]["1"]["mean_attention"].keys() == {"text"}
    with pytest.raises(ValueError, match="unknown variant"):
        ablate.main(["--variants", '["everything"]', "--runs_root", str(trained["runs"])])


@pytest.mark.parametrize("preset", ["demo", "paper", "gpu"])
def test_config_presets_parse(preset: str) -> None:
    from shared.cli import parse_config

    path = Path(train.__file__).parent / "configs" / f"{preset}.yaml"
    config = parse_config(train.TrainConfig, ["--config", str(path)])
    assert config.trainer.lr == pytest.approx(1e-3) and config.trainer.weight_decay == 0.0
    assert config.trainer.select_metric in ("roc_auc", "accuracy")
    if preset == "demo":  # the preset documents the defaults of `train` with no arguments
        assert config == parse_config(train.TrainConfig, [])
    if preset == "paper":
        assert config.encoders.image_tower_args["depth"] == 101 and config.encoders.text_max_length == 300


def test_fine_tuning_the_image_tower_as_the_paper(trained: dict) -> None:
    import torch

    from domains.news.trained_detector import load_detector
    from shared.towers import create_tower

    args = ["--input", str(trained["shards"]), "--runs_root", str(trained["runs"]), "--run_name", "tuned"]
    args += ["--cache_dir", str(trained["root"] / "cache"), *FAST, "--encoders.train_image_tower", "true"]
    args += ["--trainer.max_steps", "4", "--trainer.validate_every", "2"]
    train.main(args)
    detector = load_detector(trained["runs"] / "news" / "tuned")
    tuned = detector.model.image_tower
    assert tuned is not None and any(p.requires_grad for p in tuned.parameters())
    pretrained = create_tower("efficientnet_lite0", image_size=64)
    changed = [
        name
        for (name, a), (_, b) in zip(tuned.state_dict().items(), pretrained.state_dict().items())
        if a.dtype.is_floating_point and not torch.equal(a, b)
    ]
    assert changed  # the checkpoint carries the fine-tuned tower
    result = detect.main(
        [
            "--run",
            str(trained["runs"] / "news" / "tuned"),
            "--text",
            "a red square",
            "--image",
            str(trained["root"] / "img" / "red-square.png"),
        ]
    )[0]
    assert 0.0 <= result["prob_fake"] <= 1.0


def test_training_posts_get_cross_fitted_clip_features(trained: dict, tmp_path: Path) -> None:
    from domains.news.detector_training import prepare_data
    from shared.cli import parse_config

    args = ["--input", str(trained["shards"]), "--cache_dir", str(trained["root"] / "cache"), *FAST]
    config = parse_config(train.TrainConfig, [*args, "--encoders.alignment_folds", "2"])
    prepared = prepare_data(config, tmp_path)
    in_sample = prepared.encoders.finish(prepared.table.base)  # final projections, fitted on all train pairs
    rows = prepared.rows
    assert not np.allclose(prepared.features["clip_text"][rows["train"]], in_sample["clip_text"][rows["train"]])
    for split in ("val", "test"):
        np.testing.assert_array_equal(
            prepared.features["clip_image"][rows[split]], in_sample["clip_image"][rows[split]]
        )
    assert (tmp_path / "clip_alignment" / "fold-0" / "metrics.csv").is_file()
    assert (tmp_path / "clip_alignment" / "fold-1" / "metrics.csv").is_file()
