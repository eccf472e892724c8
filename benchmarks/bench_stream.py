"""Shard streaming: throughput over loopback HTTP vs local disk, and memory over a 10x longer stream.

Writes ``--samples`` image-caption samples (256 px JPEG + caption + JSON, BIOMEDICA layout) into 4
shards with ``ShardWriter``, then streams them with ``ShardStream`` in one process, decoding every
JPEG and resizing it to 128 px (caption kept as text, no tokenizer):

* throughput: the same shards from local disk (the peer) and from a ``python -m http.server`` bound to
  127.0.0.1 (ours, streamed through curl), alternating ``--repeats`` times, best epoch of each;
  ratio = HTTP samples/s / local samples/s (goal >= 0.85);
* memory: peak RSS of a fresh process streaming N (``--rss-samples``) vs 10 N samples (resampled mode, same
  shards over HTTP); growth = RSS(10 N) / RSS(N) - 1 (goal < 10%).

    python benchmarks/bench_stream.py                                # about a minute on 2 quiet cores
    python benchmarks/bench_stream.py --samples 4000 --rss-samples 2000 # steadier figures

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import socket
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.shard_stream import ShardStream  # noqa: E402
from shared.shards import ShardWriter, read_manifest  # noqa: E402

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
    with ShardWriter(folder, max_samples=-(-num_samples // NUM_SHARDS)) as writer:
        for index in range(num_samples):
            writer.write(
                {
                    "__key__": f"bench-PMC{index:07d}-1-{index}",
                    "jpg": synthetic_figure(rng),
                    "txt": f"Figure {index}: a synthetic panel for the streaming benchmark.",
                    "json": {"article_license": "CC BY", "image_primary_label": ["Plots & Charts"]},
                }
            )


def decode_and_resize(sample: dict[str, Any]) -> dict[str, Any]:
    """JPEG decode, resize to 128 px, uint8 CHW tensor; caption as text."""
    image = Image.open(io.BytesIO(sample["jpg"])).convert("RGB").resize((TARGET_SIZE_PX, TARGET_SIZE_PX))
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)
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


def stream_for_rss(urls: str, num_samples: int) -> None:
    """Child process: stream ``num_samples`` decoded samples, print the peak RSS in MB."""
    stream = ShardStream(
        urls,
        decode_and_resize,
        batch_size=BATCH_SIZE,
        mode="resampled",
        samples_per_epoch=num_samples,
        shuffle_buffer=BATCH_SIZE * 4,
    )
    seen = sum(len(batch["caption"]) for batch in stream.batches(0))
    print(json.dumps({"samples": seen, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def child_peak_rss_mb(urls: str, num_samples: int) -> float:
    command = [sys.executable, __file__, "--rss-child", urls, "--samples", str(num_samples)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=1000, help="samples written and timed per epoch")
    parser.add_argument("--rss-samples", type=int, default=500, help="N for the RSS check (N vs 10 N)")
    parser.add_argument("--repeats", type=int, default=2, help="epochs timed per side (best is kept)")
    parser.add_argument("--rss-child", metavar="URLS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
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
            rss_n = child_peak_rss_mb(http_urls, args.rss_samples)
            rss_10n = child_peak_rss_mb(http_urls, 10 * args.rss_samples)

    ours, peer = max(http_rates), max(local_rates)
    print(
        f"# decode+resize samples/s: local {[round(r) for r in local_rates]}, http {[round(r) for r in http_rates]}",
        file=sys.stderr,
    )
    print(
        f"# peak RSS streaming {args.rss_samples}: {rss_n:.0f} MB, {10 * args.rss_samples}: {rss_10n:.0f} MB",
        file=sys.stderr,
    )
    print(
        json.dumps(
            {
                "name": "bench_stream",
                "metric": "decode+resize samples/s, loopback HTTP (ours) vs local disk (peer)",
                "ours": round(ours, 1),
                "peer": round(peer, 1),
                "ratio": round(ours / peer, 3),
                "peak_rss_mb": round(max(rss_n, rss_10n), 1),
                "rss_n_mb": round(rss_n, 1),
                "rss_10n_mb": round(rss_10n, 1),
                "rss_growth": round(rss_10n / rss_n - 1, 4),
                "samples": args.samples,
                "rss_samples": [args.rss_samples, 10 * args.rss_samples],
            }
        )
    )


if __name__ == "__main__":
    main()
