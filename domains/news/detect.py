"""``python -m domains.news.detect``: classify posts with a trained detector and explain the decision.

One post (``--post`` JSON or ``--text`` + ``--image``) prints its label, fake probability, the CLIP
image–text similarity and the modality attention weights as JSON; ``--input`` classifies a JSON-lines file
of posts, writes one result line per post into ``--out_dir`` and prints a JSON summary. Standard output is
always pure JSON; the hint of what to run next goes to standard error.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from domains.news.post_scoring import (
    DetectConfig,
    batch_output_path,
    check_detect_config,
    classify_posts,
    read_batch,
    single_post,
    write_batch_results,
)
from domains.news.trained_detector import load_detector
from shared.cli import parse_config, run_command
from shared.device import pick_device
from shared.user_errors import UserError

__all__ = ["DetectConfig", "main"]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Command entry point; returns the result records."""
    config = parse_config(DetectConfig, argv, prog="python -m domains.news.detect")
    check_detect_config(config)
    if config.input is None:
        post, _ = single_post(config)
        detector = load_detector(config.run, config.weights, device=pick_device(config.device))
        result = classify_posts(detector, [post], 1)[0]
        if "skipped" in result:
            raise UserError(f"cannot classify the post: {result['skipped']}")
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return [result]
    posts = read_batch(config.input)
    output = batch_output_path(config)
    detector = load_detector(config.run, config.weights, device=pick_device(config.device))
    results = classify_posts(detector, posts, config.batch_size)
    summary = write_batch_results(results, output)
    print(json.dumps(summary, ensure_ascii=False))
    print(
        f"{summary['posts']} posts: {summary['flagged_fake']} flagged fake, {summary['skipped']} skipped",
        file=sys.stderr,
    )
    print(f"next: python -m domains.news.embed --run {config.run}", file=sys.stderr)
    return results


if __name__ == "__main__":
    run_command(main)
