"""DICOM ingest throughput through the full chain vs raw pixel decoding of the same files.

Ours: what ``python -m domains.biomed.ingest`` runs on a folder (walk, dcmread, decode, modality LUT, VOI,
inversion, [0, 1], letterbox to 224 px, JPEG encode, webdataset shard + manifest), every frame of every file.
Peer: ``pydicom.dcmread(path).pixel_array`` on the same files (decode only). Rounds alternate so
machine noise hits both. Prints one JSON line; ratio = ours / peer in files per second (goal ≥ 0.7).

    python -m benchmarks.bench_dicom [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file

from benchmarks._report import print_result
from domains.biomed.dicom import DicomChainConfig, read_dicom_folder
from domains.biomed.samples import write_sample_shards

FILES = [
    "CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm",
    "RG1_UNCI.dcm", "RG1_J2KR.dcm", "RG3_UNCR.dcm", "MR2_UNCI.dcm", "MR2_J2KR.dcm", "US1_UNCI.dcm", "US1_J2KR.dcm",
    "JPEG2000.dcm", "JPEG-LL.dcm", "JPGExtended.dcm", "693_UNCI.dcm", "693_J2KR.dcm", "examples_overlay.dcm",
    "examples_palette.dcm", "OBXXXX1A.dcm", "emri_small.dcm", "liver_1frame.dcm", "J2K_pixelrep_mismatch.dcm",
]  # fmt: skip


def raw_decode(paths: list[Path]) -> int:
    pixels = 0
    for path in paths:
        pixels += pydicom.dcmread(path).pixel_array.size
    return pixels


def full_chain(folder: Path, out_dir: Path) -> int:
    skipped: list = []
    samples = read_dicom_folder(folder, DicomChainConfig(image_size=224, frame_policy="all"), skipped=skipped)
    manifest = write_sample_shards(samples, skipped, out_dir, overwrite=True)
    summary = json.loads(manifest.read_text())
    if skipped:
        raise RuntimeError(f"benchmark files were skipped: {skipped}")
    return int(summary["num_samples"])


def main(argv: list[str] | None = None) -> None:
    """Run both sides and print the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of each side (default 3)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)
    work = Path(tempfile.mkdtemp(prefix="bench_dicom_"))
    try:
        folder = work / "dicom"
        folder.mkdir()
        paths = []
        for name in FILES:
            source = get_testdata_file(name)
            if source is None:
                continue
            paths.append(Path(shutil.copy(source, folder / name)))
        raw_decode(paths)  # warm-up: plugin imports, file cache
        full_chain(folder, work / "shards")
        raw_seconds = chain_seconds = 0.0
        for _ in range(args.rounds):
            start = time.perf_counter()
            raw_decode(paths)
            raw_seconds += time.perf_counter() - start
            start = time.perf_counter()
            frames = full_chain(folder, work / "shards")
            chain_seconds += time.perf_counter() - start
        ours = len(paths) * args.rounds / chain_seconds
        peer = len(paths) * args.rounds / raw_seconds
        print(
            f"{len(paths)} files ({frames} frames): full chain {ours:.1f} files/s, raw pixel_array {peer:.1f} files/s"
        )
        print_result("bench_dicom", "files_per_s", ours, peer, ours / peer, peer_name="pydicom pixel_array")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
