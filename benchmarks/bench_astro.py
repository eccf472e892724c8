"""The astro benchmark the issue names: light-curve ingest and photometry-encoder training, in one run.

Runs ``bench_astro_ingest`` (our reader + preprocessing vs plain ``astropy.io.ascii``) and
``bench_astro_encoder`` (our Informer-style encoder vs a plain ``torch.nn.TransformerEncoder`` of the same
size) in subprocesses, then prints one JSON line: the ingest ratio as the headline, the encoder's as extras.
``--quick`` runs both parts at their smallest settings (a check that they start, not a measurement); for
the parts' own options run them directly (``python -m benchmarks.bench_astro_ingest --help``).
"""

from __future__ import annotations

import argparse
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


#: Smallest settings of each part, for ``--quick``.
QUICK = {
    "benchmarks.bench_astro_ingest": ("--files", "20", "--points", "100", "--repeats", "1"),
    "benchmarks.bench_astro_encoder": ("--batch-size", "8", "--steps", "1"),
}


def main(argv: list[str] | None = None) -> None:
    """Run both parts and print the combined JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="both parts at their smallest settings")
    args = parser.parse_args(argv)
    ingest_module, encoder_module = "benchmarks.bench_astro_ingest", "benchmarks.bench_astro_encoder"
    ingest = run_part(ingest_module, *(QUICK[ingest_module] if args.quick else ()))
    encoder = run_part(encoder_module, "--threads", "1", *(QUICK[encoder_module] if args.quick else ()))
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
