"""Scoring posts with a trained detector: label, fake probability and why (CLIP similarity, branch attention).

What ``python -m domains.news.detect`` and the explorer's news page run: one post given on the command
line (:func:`single_post`) or a JSON-lines file of posts (:func:`read_batch`), scored by
:func:`classify_posts` into one result record per post (:func:`explain`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from domains.news.data import (
    LABEL_NAMES,
    TEXT_ONLY_REFUSAL,
    NewsFormatError,
    NewsPost,
    open_post_image,
    read_jsonl_posts,
)
from domains.news.trained_detector import LoadedDetector, check_weights, load_detector
from shared.user_errors import NothingProduced, UserError


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
    input: str | None = None
    """Batch mode: a JSONL of posts (id, text, image, optional text_en/label)."""
    out_dir: str | None = None
    """Batch mode output folder for <input name>.results.jsonl (default: <run>/detect)."""
    batch_size: int = 64
    """Posts per forward pass (FND-CLIP's [CLS] layer weighting depends on the batch, as published: 1 scores each post alone)."""
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


def check_detect_config(config: DetectConfig) -> None:
    """Refuse flags that cannot work together, before the detector is loaded.

    Raises:
        UserError: a bad ``--weights`` or ``--batch_size``, no post given, several modes at once, or
            ``--text`` without ``--image`` (FND-CLIP reads the image of every post) and vice versa.
    """
    check_weights(config.weights)
    if config.batch_size < 1:
        raise UserError(f"--batch_size: must be >= 1, got {config.batch_size}")
    given = {"--post": config.post, "--text/--image": config.text or config.image, "--input": config.input}
    modes = [flag for flag, value in given.items() if value is not None]
    if not modes:
        raise UserError("--post, --text with --image, or --input: give one post or a JSONL file of posts")
    if len(modes) > 1:
        raise UserError(f"{' and '.join(modes)}: give only one of them")
    if config.text is not None and config.image is None:
        raise UserError(f"--image: required with --text; {TEXT_ONLY_REFUSAL}")
    if config.image is not None and config.text is None:
        raise UserError("--text: required with --image")


def _readable_image(path: Path, flag: str) -> Image.Image:
    """The image at ``path`` as RGB, or a UserError naming the flag and the file."""
    if not path.exists():
        raise UserError(f"{flag} {path}: no such file")
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a folder; expected an image file")
    return open_post_image(path, where=f"{flag} {path}")


def _post_record(post: str) -> tuple[dict[str, Any], Path]:
    """The ``--post`` value as a JSON object and the folder its image path is relative to."""
    source = Path(post)
    if post.strip().startswith("{"):
        text, base, where = post, Path.cwd(), "--post"
    elif source.is_file():
        where = f"--post {source}"
        try:
            text, base = source.read_text(encoding="utf-8"), source.parent
        except UnicodeDecodeError as error:
            raise UserError(f"{where}: not UTF-8 text (byte {error.start})") from None
    else:
        raise UserError(f"--post {post}: neither a JSON object nor an existing .json file")
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{where}: not valid JSON ({error.msg})") from None
    if (
        not isinstance(record, dict)
        or not isinstance(record.get("text"), str)
        or not isinstance(record.get("image"), str)
    ):
        if isinstance(record, dict) and isinstance(record.get("text"), str) and record.get("image") in (None, ""):
            raise UserError(f"{where}: no 'image'; {TEXT_ONLY_REFUSAL}")
        raise UserError(f"{where}: must be a JSON object with a 'text' string and an 'image' path")
    return record, base


def single_post(config: DetectConfig) -> tuple[NewsPost, Image.Image]:
    """The one post of ``--post`` or ``--text``/``--image``, with its image, checked.

    Raises:
        UserError: unparsable ``--post``, empty text, a missing or unreadable image (named).
    """
    if config.post is not None:
        record, base = _post_record(config.post)
        image_path = base / str(record["image"])
        post = NewsPost(str(record.get("id", "post")), record["text"], None, "cli", [image_path], record.get("text_en"))
        flag = "--post image"
    else:
        post = NewsPost("post", config.text or "", None, "cli", [Path(config.image or "")], config.text_en)
        flag = "--image"
    if not post.text.strip():
        raise UserError(f"{'--post text' if config.post is not None else '--text'}: empty")
    return post, _readable_image(post.image_paths[0], flag)


def read_batch(path: str | Path) -> list[NewsPost]:
    """The posts of a ``--input`` JSON-lines file.

    Raises:
        UserError: a missing file, a folder, or a malformed line (file and line named).
        NothingProduced: the file holds no post.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"--input {path}: no such file")
    if path.is_dir():
        raise UserError(f"--input {path}: is a folder; expected a JSON-lines file of posts")
    posts = list(read_jsonl_posts(path))
    if not posts:
        raise NothingProduced(f"{path}: no posts in the file")
    return posts


def first_image(post: NewsPost) -> Image.Image | None:
    """The first readable image of a post (the ingestion policy), as RGB; None if there is none."""
    for path in post.image_paths:
        if path.is_file():
            try:
                return open_post_image(path)
            except NewsFormatError:
                continue
    return None


def classify_posts(detector: LoadedDetector, posts: list[NewsPost], batch_size: int) -> list[dict[str, Any]]:
    """Results for each post, in order; posts without text or readable image get ``{"skipped": reason}``."""
    results: list[dict[str, Any]] = [{} for _ in posts]
    ready = []
    for index, post in enumerate(posts):
        image = first_image(post)
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


def batch_output_path(config: DetectConfig) -> Path:
    """Where batch results go: ``<out_dir or <run>/detect>/<input name>.results.jsonl``."""
    out_dir = Path(config.out_dir) if config.out_dir is not None else Path(config.run) / "detect"
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out_dir {out_dir}: is a file; expected a folder")
    return out_dir / f"{Path(config.input or 'posts').stem}.results.jsonl"


def write_batch_results(results: list[dict[str, Any]], output: Path) -> dict[str, Any]:
    """Write one JSON line per post; returns the counts.

    Raises:
        NothingProduced: every post was skipped (the file with the reasons is written first).
    """
    from shared.atomic_files import write_text_atomically

    write_text_atomically(output, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results))
    skipped = [r["skipped"] for r in results if "skipped" in r]
    summary = {
        "posts": len(results),
        "flagged_fake": sum(r.get("label") == "fake" for r in results),
        "skipped": len(skipped),
        "output": str(output),
    }
    if len(skipped) == len(results):
        reasons = ", ".join(f"{skipped.count(reason)} {reason}" for reason in sorted(set(skipped)))
        raise NothingProduced(f"all {len(results)} posts were skipped ({reasons}); reasons in {output}")
    return summary


@dataclass
class Detection:
    """What a detection run produced: the result records, and for a batch its summary (``None`` for one post)."""

    results: list[dict[str, Any]]
    summary: dict[str, Any] | None = None


def detect_posts(config: DetectConfig) -> Detection:
    """Score the post given on the command line, or every post of ``--input`` (results written to ``--out_dir``).

    Flags and inputs are checked before the model loads.

    Raises:
        UserError: bad flags or input (named), or a single post that cannot be classified.
        NothingProduced: every post of a batch was skipped.
    """
    from shared.device import pick_device

    check_detect_config(config)
    if config.input is None:
        post, _ = single_post(config)
        detector = load_detector(config.run, config.weights, device=pick_device(config.device))
        result = classify_posts(detector, [post], 1)[0]
        if "skipped" in result:
            raise UserError(f"cannot classify the post: {result['skipped']}")
        return Detection([result])
    posts = read_batch(config.input)
    output = batch_output_path(config)
    detector = load_detector(config.run, config.weights, device=pick_device(config.device))
    results = classify_posts(detector, posts, config.batch_size)
    return Detection(results, write_batch_results(results, output))
