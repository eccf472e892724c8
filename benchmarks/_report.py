"""The one JSON line every benchmark ends with, and peak-memory readings."""

from __future__ import annotations

import json
import resource
import sys


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def print_result(name: str, metric: str, ours: float, peer: float, ratio: float, **extra: object) -> dict[str, object]:
    """Print the benchmark's final JSON line (``ratio`` as defined by the benchmark, documented there); returns it."""
    record = {
        "name": name,
        "metric": metric,
        "ours": round(ours, 6),
        "peer": round(peer, 6),
        "ratio": round(ratio, 4),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        **extra,
    }
    sys.stdout.write(json.dumps(record) + "\n")
    return record
