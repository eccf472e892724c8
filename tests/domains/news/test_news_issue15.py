"""Text-only posts, one image reader for training and detect, pure-JSON detect, gauge AUCs, repeatable training."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from command_contract import expect_command_failure
from PIL import Image

from domains.news import detect, ingest, train
from domains.news.data import TEXT_ONLY_REFUSAL, decode_news_sample, open_post_image
from domains.news.similarity_gauge import roc_auc_by_kind
from shared.cli import run_command

REPO = Path(__file__).resolve().parents[3]


def transparent_png(path: Path) -> Path:
    """A red disc on a fully transparent background, whose hidden pixels are black."""
    image = Image.new("RGBA", (48, 48), (0, 0, 0, 0))
    for x in range(12, 36):
        for y in range(12, 36):
            image.putpixel((x, y), (220, 30, 30, 255))
    image.save(path)
    return path


# ------------------------------------------------------------------------------------------- text-only posts
def test_ingest_of_text_only_posts_refuses_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    posts = tmp_path / "articles.jsonl"
    posts.write_text(
        "".join(json.dumps({"id": str(i), "text": f"article {i}", "label": i % 2}) + "\n" for i in range(100))
    )
    failure = expect_command_failure(
        ingest.main, ["--format", "jsonl", "--input", str(posts), "--out_dir", str(tmp_path / "out")], capsys, 1
    )
    assert "all 100 posts were dropped (100 no image)" in failure.line and TEXT_ONLY_REFUSAL in failure.line
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_detect_text_without_image_refuses_in_one_line(trained: dict, capsys: pytest.CaptureFixture[str]) -> None:
    failure = expect_command_failure(
        detect.main, ["--run", str(trained["run"]), "--text", "a headline without a picture"], capsys, 2, ("--image",)
    )
    assert TEXT_ONLY_REFUSAL in failure.line
    post = json.dumps({"text": "a headline without a picture"})
    failure = expect_command_failure(detect.main, ["--run", str(trained["run"]), "--post", post], capsys, 2)
    assert "--post" in failure.line and TEXT_ONLY_REFUSAL in failure.line


# ------------------------------------------------------------------------------------ one image reader, alpha
def test_the_one_image_reader_composites_alpha_onto_white(tmp_path: Path) -> None:
    path = transparent_png(tmp_path / "disc.png")
    image = open_post_image(path)
    assert (
        image.mode == "RGB" and image.getpixel((0, 0)) == (255, 255, 255) and image.getpixel((24, 24)) == (220, 30, 30)
    )
    # a palette PNG with a transparent colour (tRNS) and an LA picture: white too
    palette = Image.open(path).convert("RGB").quantize(colors=4)
    palette.info["transparency"] = palette.getpixel((0, 0))
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG", transparency=palette.getpixel((0, 0)))
    assert open_post_image(buffer.getvalue()).getpixel((0, 0)) == (255, 255, 255)
    buffer = io.BytesIO()
    Image.new("LA", (4, 4), (0, 0)).save(buffer, format="PNG")
    assert open_post_image(buffer.getvalue()).getpixel((1, 1)) == (255, 255, 255)
    # the shard path (training) reads the same pixels as the path reader (detect, explorer)
    sample = {"__key__": "k", "png": path.read_bytes(), "txt": b"t", "cls": b"0", "json": b"{}"}
    assert decode_news_sample(sample)["image"].tobytes() == image.tobytes()


def test_detect_and_the_library_reader_give_the_same_clip_similarity(
    trained: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from domains.news.trained_detector import load_detector

    path = transparent_png(tmp_path / "disc.png")
    capsys.readouterr()
    run_command(detect.main, ["--run", str(trained["run"]), "--text", "a red circle", "--image", str(path)])
    from_cli = json.loads(capsys.readouterr().out)
    detector = load_detector(trained["run"])
    prediction = detector.predict(["a red circle"], [open_post_image(path)])
    assert from_cli["clip_similarity"] == pytest.approx(float(prediction["similarity"][0]), abs=1e-6)
    black = Image.open(path).convert("RGB")  # what dropping the alpha band would give: a black background
    assert float(detector.predict(["a red circle"], [black])["similarity"][0]) != pytest.approx(
        from_cli["clip_similarity"], abs=1e-4
    )


def test_detect_stdout_is_pure_json_in_a_fresh_process(trained: dict, tmp_path: Path) -> None:
    path = transparent_png(tmp_path / "disc.png")
    env = os.environ | {"PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "domains.news.detect", "--run", str(trained["run"])]
    done = subprocess.run(
        [*command, "--text", "a red circle", "--image", str(path)], capture_output=True, text=True, env=env, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["label"] in ("real", "fake")


# --------------------------------------------------------------------------------------------- ROC-AUC per kind
def test_roc_auc_by_kind_against_a_hand_count() -> None:
    labels = np.array([0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.6, 0.5, 0.9, 0.6])
    kinds = ["pristine", "pristine", "hard_swap", "random_swap", "hard_swap"]
    result = roc_auc_by_kind(labels, scores, kinds)
    # all: pairs (fake > real) over 3×2: 0.5>0.1 ✓, 0.5>0.6 ✗, 0.9 ✓✓, 0.6>0.1 ✓, 0.6=0.6 ½ → 4.5/6
    assert result["all"] == pytest.approx(4.5 / 6)
    assert result["hard_swap"] == pytest.approx(2.5 / 4) and result["random_swap"] == pytest.approx(1.0)
    assert roc_auc_by_kind(np.array([1, 1]), np.array([0.2, 0.3]), ["x", "x"]) == {"all": None, "x": None}


# --------------------------------------------------------------------------------------------- repeatability
def test_training_twice_with_fresh_caches_is_bit_for_bit_equal(trained: dict, fast: list[str]) -> None:
    """The fixture's run (fresh cache) and a second run of the same command with another fresh cache, started
    with another ambient CPU thread count (the source of the differences the issue saw): ``--cpu_threads``
    pins it, so the two runs must agree bit for bit."""
    runs, first = trained["runs"], trained["run"]
    ambient = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        again = train.main(
            [
                "--input",
                str(trained["shards"]),
                "--runs_root",
                str(runs),
                "--cache_dir",
                str(trained["root"] / "cache-again"),
            ]
            + ["--run_name", "tiny-again", *fast]
        )
    finally:
        torch.set_num_threads(ambient)
    second = runs / "news" / "tiny-again"
    for name in ("model.safetensors", "checkpoints/best.safetensors", "clip_alignment.safetensors"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name

    def logged_values(run: Path) -> list[str]:  # every logged number except the clock's (samples/s)
        return [line for line in (run / "metrics.csv").read_text().splitlines() if "_per_s" not in line]

    assert logged_values(first) == logged_values(second) and len(logged_values(first)) > 5
    assert json.loads((first / "eval" / "metrics.json").read_text())["roc_auc"] == again["test"]["roc_auc"]
