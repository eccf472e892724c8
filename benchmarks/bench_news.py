"""Fusion overhead of batched FND-CLIP detection: posts/s of ``detect`` vs the towers' raw forwards alone.

Ours: ``LoadedDetector.predict`` on a batch of posts, everything included (tokenising, image transforms,
the frozen text tower's hidden states, the image tower, both CLIP sides, the FND-CLIP heads, attention and
classifier). Peer: the sum of the distinct towers' raw forward passes on the same, already preprocessed
batch (layer-mixed text encoder, image tower, CLIP text tower, CLIP image tower; a tower shared by two
roles counts once, as the detector runs it once). Ratio = ours / peer posts per second (goal ≥ 0.9: the
detector adds at most ~10% over its towers). Head weights are untrained (speed does not depend on them).
Posts are the built-in emoji set when it is built, else synthetic captions and pictures. Median of
``--repeats`` interleaved timed runs after one warm-up; ends with one JSON line.

    python -m benchmarks.bench_news                 # batch 64 on CPU, about a minute
    python -m benchmarks.bench_news --batch 256 --device cuda
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks._report import print_result
from domains.news.demo import DEFAULT_BUILTIN_DIR
from domains.news.frozen_encoders import EncoderConfig, NewsEncoders
from domains.news.model import HeadConfig, build_model, tokenize_to_longest
from domains.news.trained_detector import LoadedDetector
from shared.device import autocast_for, pick_device


def load_posts(count: int) -> tuple[list[str], list[Image.Image], str]:
    """``count`` (text, RGB image) posts: the built-in set when present, else synthetic ones."""
    from domains.news.data import open_post_image

    posts_path = DEFAULT_BUILTIN_DIR / "posts.jsonl"
    if posts_path.is_file():
        records = [json.loads(line) for line in posts_path.read_text(encoding="utf-8").splitlines()][:count]
        images = [open_post_image(posts_path.parent / r["image"]) for r in records]
        texts = [r["text"] for r in records]
        source = "builtin"
    else:
        rng = np.random.default_rng(0)
        texts = [f"breaking: picture number {i} shows a {['red', 'blue', 'green'][i % 3]} scene" for i in range(count)]
        images = [Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)) for _ in range(count)]
        source = "synthetic"
    while len(texts) < count:
        texts, images = texts + texts, images + images
    return texts[:count], images[:count], source


def timed_pair(first, second, repeats: int) -> tuple[float, float]:
    """Median seconds of ``first()`` and ``second()`` over ``repeats`` interleaved runs after one warm-up each.

    Interleaving exposes both sides to the same background load on a shared machine.
    """
    first()
    second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, bucket in ((first, times[0]), (second, times[1])):
            started = time.perf_counter()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            bucket.append(time.perf_counter() - started)
    return statistics.median(times[0]), statistics.median(times[1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64, help="posts per batch")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per side (median reported)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = parser.parse_args(argv)

    device = pick_device(args.device)
    encoders = NewsEncoders(EncoderConfig(batch_size=args.batch), device=device)
    model = build_model(encoders.dims, HeadConfig()).to(device).eval()
    detector = LoadedDetector(encoders, model, HeadConfig(), Path("."))
    texts, images, source = load_posts(args.batch)

    tokens = {k: v.to(device) for k, v in tokenize_to_longest(encoders.text_tower.preprocess, texts).items()}
    clip = encoders.clip
    clip_tokens = {k: v.to(device) for k, v in tokenize_to_longest(clip.text_tower.preprocess, texts).items()}
    pixels = torch.stack([encoders.image_tower.preprocess(image) for image in images]).to(device)
    clip_pixels = None
    if clip.image_tower is not encoders.image_tower:
        clip_pixels = torch.stack([clip.image_tower.preprocess(image) for image in images]).to(device)

    @torch.no_grad()
    def raw_towers() -> None:
        with autocast_for(device):
            encoders.text_tower.encoder(**tokens, output_hidden_states=True)
            encoders.image_tower(pixels)
            clip.text_tower(clip_tokens)
            if clip_pixels is not None:
                clip.image_tower(clip_pixels)

    def detect() -> None:
        with autocast_for(device):
            detector.predict(texts, images)

    peer_s, ours_s = timed_pair(raw_towers, detect, args.repeats)
    ours = args.batch / ours_s
    peer = args.batch / peer_s
    print(f"detect: {ours:.1f} posts/s; raw tower forwards: {peer:.1f} posts/s ({source} posts, {device})")
    print_result(
        "news_detect_fusion_overhead",
        "posts_per_s",
        ours,
        peer,
        ours / peer,
        batch=args.batch,
        device=str(device),
        posts=source,
        peer_name="sum of raw tower forwards (MiniLM hidden states, EfficientNet-Lite0, MiniLM CLIP text)",
    )


if __name__ == "__main__":
    main()
