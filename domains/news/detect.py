"""``python -m domains.news.detect``: classify posts with a trained detector and explain the decision.

One post (``--post`` JSON or ``--text`` + ``--image``) prints its label, fake probability, the CLIP
image–text similarity and the modality attention weights; ``--input_jsonl`` classifies a file of posts and
writes one result line per post.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from domains.news.data import LABEL_NAMES, NewsPost, image_as_rgb, load_readable_image, read_jsonl_posts


@dataclass
class DetectConfig:
    """Detect fake posts with a trained FND-CLIP run."""

    run: str = "runs/news/demo"
    """Run folder written by domains.news.train."""
    post: str | None = None
    """One post as JSON ({"text": ..., "image": path, "text_en": optional}) or the path of such a .json file."""
    text: str | None = None
    """Post text (with --image), instead of --post."""
    image: str | None = None
    """Post image file (with --text)."""
    text_en: str | None = None
    """Optional English text for an English-only CLIP."""
    input_jsonl: str | None = None
    """Batch mode: a JSONL of posts (id, text, image, optional text_en/label)."""
    output: str | None = None
    """Batch mode output JSONL (default: <run>/detect/<input name>.results.jsonl)."""
    batch_size: int = 64
    """Posts per forward pass."""
    weights: str = "best"
    """best (validation-selected) or last."""
    device: str = "auto"
    """auto, cpu or cuda."""


def explain(branches: tuple[str, ...], prediction: dict[str, Any], row: int) -> dict[str, Any]:
    """The per-post result record: label, probability, CLIP similarity, attention per branch."""
    return {
        "label": LABEL_NAMES[int(prediction["label"][row])],
        "prob_fake": round(float(prediction["prob_fake"][row]), 6),
        "clip_similarity": round(float(prediction["similarity"][row]), 6),
        "attention": {b: round(float(w), 6) for b, w in zip(branches, prediction["attention"][row])},
    }


def _single_post(config: DetectConfig) -> NewsPost:
    if config.post is not None:
        source = Path(config.post)
        text = source.read_text(encoding="utf-8") if source.suffix == ".json" and source.is_file() else config.post
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"--post is neither a JSON object nor a .json file: {error.msg}") from None
        base = source.parent if source.is_file() else Path.cwd()
        image = record.get("image")
        return NewsPost(
            str(record.get("id", "post")),
            str(record.get("text") or ""),
            None,
            "cli",
            [base / image] if image else [],
            record.get("text_en"),
        )
    if config.text is None or config.image is None:
        raise ValueError("give --post, or both --text and --image, or --input_jsonl")
    return NewsPost("post", config.text, None, "cli", [Path(config.image)], config.text_en)


def _first_image(post: NewsPost) -> Image.Image | None:
    """The first readable image of a post (the ingestion policy), as RGB; None if there is none."""
    for path in post.image_paths:
        loaded = load_readable_image(path) if path.is_file() else None
        if loaded is not None:
            return image_as_rgb(Image.open(io.BytesIO(loaded[0])))
    return None


def classify_posts(detector: Any, posts: list[NewsPost], batch_size: int) -> list[dict[str, Any]]:
    """Results for each post, in order; posts without text or readable image get ``{"skipped": reason}``."""
    results: list[dict[str, Any]] = [{} for _ in posts]
    ready = []
    for index, post in enumerate(posts):
        image = _first_image(post)
        if not post.text.strip():
            results[index] = {"id": post.post_id, "skipped": "empty text"}
        elif image is None:
            results[index] = {"id": post.post_id, "skipped": "no readable image"}
        else:
            ready.append((index, post, image))
    use_en = detector.encoders.config.clip_text_field == "text_en"
    for start in range(0, len(ready), batch_size):
        chunk = ready[start : start + batch_size]
        prediction = detector.predict(
            [p.text for _, p, _ in chunk],
            [image for _, _, image in chunk],
            [(p.text_en or p.text) if use_en else p.text for _, p, _ in chunk],
        )
        for row, (index, post, _) in enumerate(chunk):
            results[index] = {"id": post.post_id} | explain(detector.model.branches, prediction, row)
            if post.label is not None:
                results[index]["true_label"] = LABEL_NAMES[post.label]
    return results


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Command entry point; returns the result records."""
    from domains.news.detector import load_detector
    from shared.cli import parse_config, write_text_atomically
    from shared.device import pick_device

    config = parse_config(DetectConfig, argv, prog="python -m domains.news.detect")
    detector = load_detector(config.run, config.weights, device=pick_device(config.device))
    if config.input_jsonl is None:
        results = classify_posts(detector, [_single_post(config)], 1)
        print(json.dumps(results[0], ensure_ascii=False, indent=2))
        if "skipped" in results[0]:
            raise SystemExit(f"cannot classify: {results[0]['skipped']}")
        return results
    source = Path(config.input_jsonl)
    results = classify_posts(detector, list(read_jsonl_posts(source)), config.batch_size)
    output = Path(config.output or Path(config.run) / "detect" / f"{source.stem}.results.jsonl")
    write_text_atomically(output, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results))
    flagged = sum(r.get("label") == "fake" for r in results)
    skipped = sum("skipped" in r for r in results)
    print(f"{len(results)} posts: {flagged} flagged fake, {skipped} skipped; results in {output}")
    print(f"next: python -m domains.news.embed --run {config.run}")
    return results


if __name__ == "__main__":
    main()
