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

from domains.news.post_scoring import DetectConfig, detect_posts
from shared.cli import parse_config, run_command

__all__ = ["DetectConfig", "main"]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Command entry point; returns the result records."""
    config = parse_config(DetectConfig, argv, prog="python -m domains.news.detect")
    detection = detect_posts(config)
    if detection.summary is None:
        print(json.dumps(detection.results[0], ensure_ascii=False, indent=2))
        return detection.results
    summary = detection.summary
    print(json.dumps(summary, ensure_ascii=False))
    print(
        f"{summary['posts']} posts: {summary['flagged_fake']} flagged fake, {summary['skipped']} skipped",
        file=sys.stderr,
    )
    print(f"next: python -m domains.news.embed --run {config.run}", file=sys.stderr)
    return detection.results


if __name__ == "__main__":
    run_command(main)
