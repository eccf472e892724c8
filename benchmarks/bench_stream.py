"""Shard streaming: throughput over loopback HTTP vs local disk, and memory over a 10x longer stream.

Writes ``--samples`` image-caption samples (256 px JPEG + caption + JSON, BIOMEDICA layout) into 4
shards with ``ShardWriter``, then streams them with ``ShardStream`` in one process, decoding every
JPEG and resizing it to 128 px (caption kept as text, no tokenizer):

* throughput: the same shards from local disk (the peer) and from a ``python -m http.server`` bound to
  127.0.0.1 (ours, streamed through curl), alternating for ``--repeats`` pairs of epochs; ours/peer
  are median samples/s, ratio = median over pairs of HTTP / local samples/s (goal >= 0.85);
* memory: peak RSS of a fresh process while it streams N (``--rss-samples``) vs 10 N samples
  (resampled mode, same shards over HTTP); growth = peak(10 N) / peak(N) - 1 (goal < 10%). The RSS
  added by streaming (peak minus RSS before the first batch) is printed too.

    python -m benchmarks.bench_stream                                # about a minute on 2 quiet cores
    python -m benchmarks.bench_stream --samples 4000 --rss-samples 2000 # steadier figures

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from benchmarks._report import print_result
from shared.shard_stream import ShardStream
from shared.shards import ShardWriter, read_manifest

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGE_SIZE_PX = 256
TARGET_SIZE_PX = 128
BATCH_SIZE = 64
NUM_SHARDS = 4


def synthetic_figure(rng: np.random.Generator) -> bytes:
    """A 256 px JPEG with smooth structure plus noise (compresses like a real figure, ~15 kB)."""
    y, x = np.mgrid[0:IMAGE_SIZE_PX, 0:IMAGE_SIZE_PX] / IMAGE_SIZE_PX
    phases = rng.uniform(0, 2 * np.pi, 3)
    channels = [np.sin(2 * np.pi * (x * (c + 1) + y * (3 - c)) + phases[c]) for c in range(3)]
    image = (np.stack(channels, axis=-1) * 90 + 128 + rng.normal(0, 12, (IMAGE_SIZE_PX, IMAGE_SIZE_PX, 3))).clip(0, 255)
    buffer = io.BytesIO()
    Image.fromarray(image.astype(np.uint8)).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def write_benchmark_shards(folder: Path, num_samples: int) -> None:
    rng = np.random.default_rng(0)
    # A pool of distinct figures, cycled: decoding cost is what is measured, not image variety.
    figures = [synthetic_figure(rng) for _ in range(min(num_samples, 64))]
    with ShardWriter(folder, max_samples=-(-num_samples // NUM_SHARDS)) as writer:
        for index in range(num_samples):
            writer.write(
                {
                    "__key__": f"bench-PMC{index:07d}-1-{index}",
                    "jpg": figures[index % len(figures)],
                    "txt": f"Figure {index}: a synthetic panel for the streaming benchmark.",
                    "json": {"article_license": "CC BY", "image_primary_label": ["Plots & Charts"]},
                }
            )


def decode_and_resize(sample: dict[str, Any]) -> dict[str, Any]:
    """JPEG decode, resize to 128 px, uint8 CHW tensor; caption as text."""
    image = Image.open(io.BytesIO(sample["jpg"])).convert("RGB").resize((TARGET_SIZE_PX, TARGET_SIZE_PX))
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()
    return {"image": pixels, "caption": sample["txt"].decode("utf-8")}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def loopback_server(folder: Path):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def samples_per_second(urls: str) -> float:
    stream = ShardStream(urls, decode_and_resize, batch_size=BATCH_SIZE, shuffle_buffer=BATCH_SIZE * 4)
    start = time.perf_counter()
    count = sum(len(batch["caption"]) for batch in stream.batches(0))
    elapsed = time.perf_counter() - start
    if stream.report()["samples_failed"] or stream.report()["shards_failed"]:
        raise RuntimeError(f"benchmark stream had failures: {stream.report()}")
    return count / elapsed


def resident_mb() -> float:
    """Current resident set size in MB (Linux /proc; elsewhere the peak so far)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stream_for_rss(urls: str, num_samples: int) -> None:
    """Child process: stream ``num_samples`` decoded samples, print RSS before and peak while streaming."""
    torch.set_num_threads(1)
    stream = ShardStream(
        urls,
        decode_and_resize,
        batch_size=BATCH_SIZE,
        mode="resampled",
        samples_per_epoch=num_samples,
        shuffle_buffer=BATCH_SIZE * 4,
    )
    before_mb = resident_mb()
    peak_mb = before_mb
    seen = 0
    for batch in stream.batches(0):
        seen += len(batch["caption"])
        peak_mb = max(peak_mb, resident_mb())
    print(json.dumps({"samples": seen, "before_mb": before_mb, "peak_mb": peak_mb}))


def child_rss_mb(urls: str, num_samples: int) -> dict[str, float]:
    command = [sys.executable, "-m", "benchmarks.bench_stream", "--rss-child", urls, "--samples", str(num_samples)]
    result = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=600, help="samples written and timed per epoch")
    parser.add_argument("--rss-samples", type=int, default=500, help="N for the RSS check (N vs 10 N)")
    parser.add_argument("--repeats", type=int, default=5, help="local/HTTP epoch pairs timed")
    parser.add_argument("--rss-child", metavar="URLS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    # Loading runs in this one process; torch's intra-op threads would only contend with it (on a busy
    # 2-core machine, collating one batch with 2 threads took 1.7 s instead of 2 ms).
    torch.set_num_threads(1)
    if args.rss_child:
        stream_for_rss(args.rss_child, args.samples)
        return

    with tempfile.TemporaryDirectory(prefix="bench_stream_") as tmp:
        folder = Path(tmp)
        write_benchmark_shards(folder, args.samples)
        pattern = read_manifest(folder)["url_pattern"]
        local_urls = str(folder / pattern)
        with loopback_server(folder) as base_url:
            http_urls = f"{base_url}/{pattern}"
            local_rates, http_rates = [], []
            for _ in range(args.repeats):
                local_rates.append(samples_per_second(local_urls))
                http_rates.append(samples_per_second(http_urls))
            rss_n = child_rss_mb(http_urls, args.rss_samples)
            rss_10n = child_rss_mb(http_urls, 10 * args.rss_samples)

    # CPU timings here are noisy: compare each HTTP epoch with the local epoch run just before it.
    ratio = statistics.median(http / local for http, local in zip(http_rates, local_rates, strict=True))
    ours, peer = statistics.median(http_rates), statistics.median(local_rates)
    print(
        f"# decode+resize samples/s: local {[round(r) for r in local_rates]}, http {[round(r) for r in http_rates]}",
        file=sys.stderr,
    )
    for count, rss in ((args.rss_samples, rss_n), (10 * args.rss_samples, rss_10n)):
        print(
            f"# RSS streaming {count}: {rss['before_mb']:.0f} MB before, {rss['peak_mb']:.0f} MB peak", file=sys.stderr
        )
    print_result(
        "bench_stream",
        "decode+resize samples/s, loopback HTTP (ours) vs local disk (peer)",
        ours,
        peer,
        ratio,
        # The streaming children's peak, not this parent's (which only serves and times the epochs).
        peak_rss_mb=round(max(rss_n["peak_mb"], rss_10n["peak_mb"]), 1),
        rss_n_mb=round(rss_n["peak_mb"], 1),
        rss_10n_mb=round(rss_10n["peak_mb"], 1),
        rss_growth=round(rss_10n["peak_mb"] / rss_n["peak_mb"] - 1, 4),
        streaming_mb_n=round(rss_n["peak_mb"] - rss_n["before_mb"], 1),
        streaming_mb_10n=round(rss_10n["peak_mb"] - rss_10n["before_mb"], 1),
        samples=args.samples,
        rss_samples=[args.rss_samples, 10 * args.rss_samples],
    )


if __name__ == "__main__":
    main()
