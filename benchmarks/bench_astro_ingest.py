"""Light-curve ingest throughput: our ASAS-SN reader + AstroM3 preprocessing vs a plain astropy.io.ascii read.

Writes ``--files`` ASAS-SN V-band ``.dat`` light curves (two header lines, ``HJD MAG MAG_ERR FLUX FLUX_ERR``,
a few ``>17.5`` upper limits, ``--points`` rows each) into a temporary folder, then times, in the same run
and interleaved:

- ours: ``read_asassn_lightcurve_arrays`` (the validated reader ingest uses; upper limits, column
  checks, non-finite rows dropped) + ``prepare_lightcurve`` (dedupe, sort, MAD normalization) +
  ``photometry_channels`` + ``window_photometry`` → the model's (200, 9) input;
- peer: ``astropy.io.ascii.read`` with its fast C reader (columns only: no validation, no preprocessing),
  the limit a reader can approach; ``numpy.loadtxt`` of the three used columns is reported alongside.

Ends with one JSON line; ``ratio`` = ours / peer in light curves per second (1.0 = as fast as a bare read).

    python -m benchmarks.bench_astro_ingest [--files 300] [--points 500] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._report import print_result


def write_lightcurves(folder: Path, n_files: int, n_points: int, seed: int = 0) -> list[Path]:
    """ASAS-SN-layout light curves of sinusoidal variables with noise, duplicates and upper limits."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n_files):
        hjd = np.sort(2456000.5 + rng.uniform(0, 2400, n_points))
        mag = 14.0 + 0.4 * np.sin(2 * np.pi * hjd / rng.uniform(0.2, 50)) + rng.normal(0, 0.02, n_points)
        flux = 3.636e6 * 10 ** (-0.4 * mag)
        flux_err = flux * 0.02 / 1.0857
        upper = rng.random(n_points) < 0.02
        mag_text = np.where(upper, ">17.500", np.char.mod("%.3f", mag))
        err_text = np.where(upper, "99.990", "0.020")
        rows = [f"{t:.5f} {m} {e} {f:.5f} {fe:.5f}" for t, m, e, f, fe in zip(hjd, mag_text, err_text, flux, flux_err)]
        path = folder / f"ASASSN-VJ{i:06d}.dat"
        path.write_text(f"#Variable: ASASSN-V J{i:06d}\n#HJD\tMAG\tMAG_ERR\tFLUX\tFLUX_ERR\n" + "\n".join(rows) + "\n")
        paths.append(path)
    return paths


def run_ours(paths: list[Path]) -> int:
    """Read + preprocess every file into the (200, 9) photometry input; returns steps produced."""
    from domains.astro.lightcurve_readers import read_asassn_lightcurve_arrays
    from domains.astro.preprocessing import photometry_channels, prepare_lightcurve, window_photometry

    steps = 0
    photo_features = np.zeros(4, dtype=np.float32)
    for path in paths:
        curve = read_asassn_lightcurve_arrays(path)
        prepared = prepare_lightcurve(curve.hjd_days, curve.flux_mjy, curve.flux_err_mjy, source=str(path))
        channels = photometry_channels(prepared.values, photo_features, prepared.log10_mad_flux, prepared.delta_t_years)
        values, mask = window_photometry(channels, 200, "centre")
        steps += int(mask.sum())
    return steps


def run_astropy_ascii(paths: list[Path]) -> int:
    """Plain astropy.io.ascii read of the same files (fast C reader), columns to numpy."""
    from astropy.io import ascii

    rows = 0
    names = ["HJD", "MAG", "MAG_ERR", "FLUX", "FLUX_ERR"]
    for path in paths:
        table = ascii.read(path, format="no_header", names=names, comment="#", guess=False, fast_reader=True)
        rows += len(np.column_stack([table["HJD"], table["FLUX"], table["FLUX_ERR"]]))
    return rows


def run_numpy_loadtxt(paths: list[Path]) -> int:
    """numpy.loadtxt of the three columns AstroM3 uses."""
    rows = 0
    for path in paths:
        rows += len(np.loadtxt(path, skiprows=2, usecols=(0, 3, 4)))
    return rows


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the benchmark and print its JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=300, help="light curves to write and read")
    parser.add_argument("--points", type=int, default=500, help="rows per light curve")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per reader (median kept)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-astro-ingest-") as folder:
        paths = write_lightcurves(Path(folder), args.files, args.points)
        runners = {"ours": run_ours, "astropy_ascii": run_astropy_ascii, "numpy_loadtxt": run_numpy_loadtxt}
        for runner in runners.values():
            runner(paths[:10])  # imports and caches warm
        timings: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(args.repeats):
            for name, runner in runners.items():
                start = time.perf_counter()
                runner(paths)
                timings[name].append(time.perf_counter() - start)
    rates = {name: args.files / statistics.median(seconds) for name, seconds in timings.items()}
    print_result(
        "astro_lightcurve_ingest",
        "lightcurves_per_s",
        rates["ours"],
        rates["astropy_ascii"],
        rates["ours"] / rates["astropy_ascii"],
        peer_name="astropy.io.ascii.read (fast C reader, no validation or preprocessing)",
        numpy_loadtxt_lightcurves_per_s=round(rates["numpy_loadtxt"], 2),
        files=args.files,
        points_per_file=args.points,
    )
    return rates


if __name__ == "__main__":
    main()
