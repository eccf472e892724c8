"""The astro benchmark the issue names: light-curve ingest and photometry-encoder training, in one run.

Runs ``bench_astro_ingest`` (our reader + preprocessing vs plain ``astropy.io.ascii``) and
``bench_astro_encoder`` (our Informer-style encoder vs a plain ``torch.nn.TransformerEncoder`` of the same
size) in subprocesses, then prints one JSON line: the ingest ratio as the headline, the encoder's as extras.
Flags after ``--`` are not supported; run the two scripts directly for their own options.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks._report import print_result

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_part(module: str, *arguments: str) -> dict:
    """Run one benchmark module and return its final JSON line."""
    completed = subprocess.run(
        [sys.executable, "-m", module, *arguments], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    for line in reversed(completed.stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"{module} printed no JSON line:\n{completed.stdout[-2000:]}")


def main() -> None:
    ingest = run_part("benchmarks.bench_astro_ingest")
    encoder = run_part("benchmarks.bench_astro_encoder", "--threads", "1")
    print_result(
        "astro",
        "light_curves_per_s (ingest)",
        ingest["ours"],
        ingest["peer"],
        ingest["ratio"],
        ingest_peer="astropy.io.ascii",
        encoder_samples_per_s=encoder["ours"],
        encoder_peer_samples_per_s=encoder["peer"],
        encoder_ratio=encoder["ratio"],
        encoder_peer="torch.nn.TransformerEncoder",
        parts_peak_rss_mb=max(ingest["peak_rss_mb"], encoder["peak_rss_mb"]),
    )


if __name__ == "__main__":
    main()
