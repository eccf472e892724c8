"""``python -m domains.astro.ingest``: ASAS-SN light curves + LAMOST spectra + catalogue → shards and splits.

With no arguments it builds (or reuses) the built-in demo set and ingests it. Output, in
``runs/astro/<run-name>/``:

- ``shards/``: webdataset shards (one sample per object: ``photometry.npy`` (N, 3), ``spectra.npy``
  (3, 2575), ``features.npy`` (38,), ``json``) and the core's ``manifest.json`` (counts, skips by reason);
- ``splits/{full,sub50,sub25,sub10}/{seed}/{train,val,test}.csv`` + ``info.json`` (classes and the train
  mean/std of the 38 features), for the seeds 42, 66, 0, 12, 123;
- ``ingest_report.json`` (counts at each step, every object not ingested and why) and ``problems.csv``;
- ``config.yaml`` (the resolved configuration).

Bad input never stops the run: each unusable object is recorded with the file and the problem.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from domains.astro.data import (
    ALL_COLUMNS,
    ASTROM3_CLASSES,
    META_COLUMNS,
    AstroInputError,
    IngestedObject,
    catalogue_features,
    crossmatch_on_gaia_id,
    crossmatch_on_sky,
    encode_shard_sample,
    estimate_period,
    read_asassn_catalogue,
    read_asassn_lightcurve_arrays,
    read_lamost_spectrum,
    read_spectrum_index,
)
from domains.astro.preprocessing import (
    SPLIT_SEEDS,
    SUBSET_FACTORS,
    SplitInfo,
    limit_classes,
    prepare_lightcurve,
    prepare_spectrum,
    split_by_gaia_id,
)

_PERIOD_INDEX = ALL_COLUMNS.index("period")


@dataclass
class IngestConfig:
    """Ingest ASAS-SN light curves, LAMOST spectra and the ASAS-SN catalogue into shards and splits."""

    catalogue: str | None = None
    """ASAS-SN catalogue CSV with Gaia/2MASS/WISE columns; empty = build and ingest the built-in demo set."""
    lightcurve_dir: str | None = None
    """Folder of ASAS-SN ``<name without spaces>.dat`` light curves (required with ``catalogue``)."""
    spectrum_index: str | None = None
    """CSV linking ``edr3_source_id`` (or ``ra``/``dec`` in degrees) to ``spec_filename``."""
    spectrum_dir: str | None = None
    """Folder holding the LAMOST FITS files named in ``spectrum_index``."""
    run_name: str = "ingest-demo"
    """Output folder name under ``runs/astro/``."""
    runs_root: str = "runs"
    """Root of the run folders."""
    classes: list[str] = field(default_factory=lambda: list(ASTROM3_CLASSES))
    """Classes kept (AstroM3's ten by default); other variable types are counted and left out."""
    seeds: list[int] = field(default_factory=lambda: list(SPLIT_SEEDS))
    """Split seeds (the paper's five)."""
    subsets: list[str] = field(default_factory=lambda: list(SUBSET_FACTORS))
    """Limited-label subsets to write: any of full, sub50, sub25, sub10."""
    subset_rule: Literal["paper", "exact"] = "paper"
    """Class cap of the limited-label subsets: AstroM3's formula (reproduces its sizes, quirk included) or
    exact water-filling (differs only when a split's smallest class exceeds its share, e.g. small sets)."""
    crossmatch: Literal["gaia_id", "sky"] = "gaia_id"
    """Join spectra to the catalogue on the Gaia EDR3 source id, or by sky position."""
    max_separation_arcsec: float = 3.0
    """Largest separation (arcsec) accepted by the sky cross-match."""
    spectrum_error_mode: Literal["sigma", "paper_ivar"] = "sigma"
    """Second spectrum channel: 1/sqrt(IVAR) (correct) or the raw IVAR as the paper used it (parity)."""
    min_spectrum_coverage: float = 0.95
    """Smallest fraction of 3850–9000 Å a spectrum must cover."""
    min_lightcurve_points: int = 10
    """Light curves with fewer distinct points are reported and left out."""
    shard_max_samples: int = 1000
    """Objects per shard."""
    limit: int | None = None
    """Ingest at most this many catalogue objects (for a quick look); empty = all."""
    demo_stars: int = 2000
    """Size of the built-in demo set (used only without ``catalogue``)."""
    demo_seed: int = 0
    """Seed of the built-in demo set."""
    overwrite: bool = False
    """Replace shards already in the output folder."""


@dataclass
class IngestResult:
    """What an ingest wrote.

    Attributes:
        run_dir: The output folder.
        shard_dir: Folder of the shards and ``manifest.json``.
        split_dir: Folder of the split CSVs and ``info.json`` files.
        num_ingested: Objects written.
        problems: One dict per object left out (``sample_id, asassn_name, stage, file, reason, detail``).
    """

    run_dir: Path
    shard_dir: Path
    split_dir: Path
    num_ingested: int
    problems: list[dict[str, str]]


def _problem(row: pd.Series | dict[str, Any], stage: str, file: str, reason: str, detail: str) -> dict[str, str]:
    return {
        "sample_id": str(row.get("edr3_source_id", "")),
        "asassn_name": str(row.get("asassn_name", "")),
        "stage": stage,
        "file": file,
        "reason": reason,
        "detail": detail,
    }


def _reason_of(error: AstroInputError) -> str:
    """A short, stable category for the manifest's per-reason counts."""
    text = error.problem.lower()
    for needle, reason in (
        ("empty light curve", "empty light curve"),
        ("outside wavelength range", "spectrum outside wavelength range"),
        ("nan-only", "NaN-only column"),
        ("constant", "constant flux"),
        ("distinct point", "too few points"),
        ("cannot read", "missing or unreadable file"),
        ("no such file", "missing or unreadable file"),
    ):
        if needle in text:
            return reason
    return "unparseable file"


def _ingest_one(
    row: pd.Series, features: np.ndarray, config: IngestConfig, lightcurve_dir: Path, spectrum_dir: Path
) -> tuple[IngestedObject, dict[str, Any]]:
    """Read, check and preprocess one object; raises AstroInputError (with the file) on bad input.

    ``features`` is the row's :func:`catalogue_features` vector (computed for all rows at once); its
    log10 period is filled here when the catalogue has no period.
    """
    lightcurve_path = lightcurve_dir / f"{str(row['asassn_name']).replace(' ', '')}.dat"
    curve = read_asassn_lightcurve_arrays(lightcurve_path)
    time_days, flux, flux_err = curve.hjd_days, curve.flux_mjy, curve.flux_err_mjy
    prepared = prepare_lightcurve(time_days, flux, flux_err, source=str(lightcurve_path))
    if len(prepared.values) < config.min_lightcurve_points:
        raise AstroInputError(
            lightcurve_path,
            f"light curve has {len(prepared.values)} distinct point(s); need at least {config.min_lightcurve_points}",
        )
    row = row.copy()
    period_source = "catalogue"
    if not (np.isfinite(row["period"]) and row["period"] > 0):
        estimate = estimate_period(time_days, flux, flux_err, variable_type=str(row["variable_type"]))
        row["period"] = estimate.period_days
        period_source = f"lomb_scargle_nterms{estimate.nterms}"
    spectrum_path = spectrum_dir / str(row["spec_filename"])
    spectrum = read_lamost_spectrum(spectrum_path)
    channels = prepare_spectrum(
        spectrum.wavelength.to_value("AA"),
        spectrum.flux,
        spectrum.ivar,
        error_mode=config.spectrum_error_mode,
        min_coverage=config.min_spectrum_coverage,
        source=str(spectrum_path),
    )
    features = features.copy()
    features[_PERIOD_INDEX] = np.log10(row["period"])
    obj = IngestedObject(
        sample_id=str(row["edr3_source_id"]),
        label=str(row["variable_type"]),
        photometry=prepared.values,
        log10_mad_flux=prepared.log10_mad_flux,
        delta_t_years=prepared.delta_t_years,
        spectrum=channels,
        features=features,
    )
    extra = {
        "asassn_name": str(row["asassn_name"]),
        "n_points": len(prepared.values),
        "n_duplicates_removed": prepared.n_duplicates,
        "period_days": float(row["period"]),
        "period_source": period_source,
        "spectrum_layout": spectrum.layout,
        "spectrum_file": str(row["spec_filename"]),
    }
    return obj, extra


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    from shared.cli import write_text_atomically

    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, quoting=csv.QUOTE_MINIMAL)
    write_text_atomically(path, buffer.getvalue())


def write_splits(
    catalogue_ids: pd.Series,
    ingested: pd.DataFrame,
    features: dict[str, np.ndarray],
    classes: list[str],
    seeds: list[int],
    subsets: list[str],
    split_dir: Path,
    subset_rule: Literal["paper", "exact"] = "paper",
) -> dict[str, dict[str, dict[str, int]]]:
    """Write ``{subset}/{seed}/{train,val,test}.csv`` and ``info.json``; return the split sizes.

    Splits are drawn on every catalogue Gaia id (as the paper draws them on the whole ASAS-SN
    catalogue), then restricted to the ingested objects; subsets cap classes per split; the
    standardization is fitted on each (subset, seed)'s train split only.
    """
    sizes: dict[str, dict[str, dict[str, int]]] = {}
    labels = ingested.set_index("sample_id")["label"]
    for seed in seeds:
        parts = split_by_gaia_id(catalogue_ids.astype(str), seed)
        for subset in subsets:
            if subset not in SUBSET_FACTORS:
                raise ValueError(f"unknown subset {subset!r}; choose from {sorted(SUBSET_FACTORS)}")
            out = split_dir / subset / str(seed)
            sizes.setdefault(subset, {})[str(seed)] = {}
            chosen: dict[str, pd.Series] = {}
            for split_name, ids in parts.items():
                in_split = labels[labels.index.isin(set(ids))]
                kept = limit_classes(in_split, SUBSET_FACTORS[subset], seed, subset_rule)
                chosen[split_name] = in_split.loc[kept]
            if chosen["train"].empty:
                raise ValueError(f"subset {subset} seed {seed}: empty train split")
            info = SplitInfo.fit(np.stack([features[s] for s in chosen["train"].index]), classes)
            for split_name, split_labels in chosen.items():
                frame = pd.DataFrame({"sample_id": split_labels.index, "label": split_labels.to_numpy()})
                _write_csv(out / f"{split_name}.csv", frame)
                sizes[subset][str(seed)][split_name] = len(frame)
            info.save(out / "info.json")
    return sizes


def run_ingest(config: IngestConfig) -> IngestResult:
    """Run an ingest (see the module docstring); returns where it wrote and what it left out."""
    from shared.cli import run_dir_for, save_config, write_text_atomically
    from shared.shards import ShardWriter

    if config.catalogue is None:
        from domains.astro.demo import DemoSpec, build_demo_dataset

        demo = build_demo_dataset(DemoSpec(n_stars=config.demo_stars, seed=config.demo_seed))
        catalogue_path, lightcurve_dir = demo.catalogue, demo.lightcurve_dir
        spectrum_index_path, spectrum_dir = demo.spectrum_index, demo.spectrum_dir
    else:
        missing = [n for n in ("lightcurve_dir", "spectrum_index", "spectrum_dir") if getattr(config, n) is None]
        if missing:
            raise SystemExit(f"with --catalogue, also give --{' --'.join(missing)}")
        catalogue_path, lightcurve_dir = Path(config.catalogue), Path(config.lightcurve_dir)  # type: ignore[arg-type]
        spectrum_index_path, spectrum_dir = Path(config.spectrum_index), Path(config.spectrum_dir)  # type: ignore[arg-type]

    run_dir = run_dir_for("astro", config.run_name, root=config.runs_root)
    save_config(config, run_dir)
    shard_dir, split_dir = run_dir / "shards", run_dir / "splits"
    counts: Counter[str] = Counter()
    problems: list[dict[str, str]] = []

    catalogue = read_asassn_catalogue(catalogue_path)
    counts["catalogue_rows"] = len(catalogue)
    if config.limit is not None:
        catalogue = catalogue.head(config.limit)
    no_id = catalogue["edr3_source_id"].isna()
    for _, row in catalogue[no_id].iterrows():
        problems.append(_problem(row, "catalogue", str(catalogue_path), "missing Gaia id", "edr3_source_id is empty"))
    catalogue = catalogue[~no_id]
    # Metadata must be complete (the paper drops such rows); a missing period is estimated instead.
    required = [c for c in ALL_COLUMNS if c != "period"]
    nan_columns = catalogue[required].isna()
    for index in catalogue.index[nan_columns.any(axis=1)]:
        names = [c for c in required if nan_columns.at[index, c]]
        problems.append(
            _problem(catalogue.loc[index], "catalogue", str(catalogue_path), "NaN metadata", f"NaN in {names}")
        )
    catalogue = catalogue[~nan_columns.any(axis=1)]
    duplicated = catalogue["edr3_source_id"].duplicated(keep="first")
    for _, row in catalogue[duplicated].iterrows():
        problems.append(_problem(row, "catalogue", str(catalogue_path), "duplicate Gaia id", "kept the first row"))
    catalogue = catalogue[~duplicated]
    counts["catalogue_valid"] = len(catalogue)
    catalogue_ids = catalogue["edr3_source_id"]

    spectrum_index = read_spectrum_index(spectrum_index_path)
    if config.crossmatch == "gaia_id":
        if "edr3_source_id" not in spectrum_index.columns:
            raise AstroInputError(spectrum_index_path, "no edr3_source_id column: use --crossmatch sky")
        matched = crossmatch_on_gaia_id(catalogue, spectrum_index[["edr3_source_id", "spec_filename"]])
    else:
        for path, table in ((catalogue_path, catalogue), (spectrum_index_path, spectrum_index)):
            if not {"ra", "dec"} <= set(table.columns):
                raise AstroInputError(path, "sky cross-match needs 'ra' and 'dec' columns (degrees)")
        matched = crossmatch_on_sky(
            catalogue, spectrum_index.drop(columns=["edr3_source_id"], errors="ignore"), config.max_separation_arcsec
        )
    counts["with_spectrum"] = len(matched)
    in_classes = matched["variable_type"].isin(config.classes)
    counts["other_classes"] = int((~in_classes).sum())
    matched = matched[in_classes]

    ingested_rows: list[dict[str, str]] = []
    features: dict[str, np.ndarray] = {}
    with ShardWriter(
        shard_dir,
        prefix="astro",
        max_samples=config.shard_max_samples,
        track_json_fields=("label", "period_source", "spectrum_layout"),
        overwrite=config.overwrite,
    ) as writer:
        all_features = catalogue_features(matched).to_numpy(dtype=np.float64)
        for position, (_, row) in enumerate(matched.iterrows()):
            try:
                obj, extra = _ingest_one(row, all_features[position], config, lightcurve_dir, spectrum_dir)
            except AstroInputError as error:
                reason = _reason_of(error)
                stage = "spectrum" if str(error.source).endswith((".fits", ".fit", ".fits.gz")) else "light curve"
                problems.append(_problem(row, stage, error.source, reason, error.problem))
                writer.skip(f"{row['asassn_name']} ({error.source})", reason)
                continue
            except ValueError as error:  # e.g. too few points for a period search
                problems.append(_problem(row, "light curve", "", "unusable light curve", str(error)))
                writer.skip(str(row["asassn_name"]), "unusable light curve")
                continue
            writer.write(encode_shard_sample(obj, extra))
            ingested_rows.append({"sample_id": obj.sample_id, "label": obj.label})
            features[obj.sample_id] = obj.features
    counts["ingested"] = len(ingested_rows)
    ingested = pd.DataFrame(ingested_rows, columns=["sample_id", "label"])
    sizes = (
        write_splits(
            catalogue_ids,
            ingested,
            features,
            config.classes,
            config.seeds,
            config.subsets,
            split_dir,
            config.subset_rule,
        )
        if len(ingested)
        else {}
    )
    report = {
        "sources": {
            "catalogue": str(catalogue_path),
            "lightcurve_dir": str(lightcurve_dir),
            "spectrum_index": str(spectrum_index_path),
            "spectrum_dir": str(spectrum_dir),
        },
        "counts": dict(counts),
        "class_counts": ingested["label"].value_counts().to_dict(),
        "problems_by_reason": dict(Counter(p["reason"] for p in problems).most_common()),
        "problems": problems,
        "split_sizes": sizes,
        "meta_columns": list(META_COLUMNS),
    }
    write_text_atomically(run_dir / "ingest_report.json", json.dumps(report, indent=2))
    _write_csv(
        run_dir / "problems.csv",
        pd.DataFrame(problems, columns=["sample_id", "asassn_name", "stage", "file", "reason", "detail"]),
    )
    return IngestResult(run_dir, shard_dir, split_dir, len(ingested_rows), problems)


def main(argv: list[str] | None = None) -> IngestResult:
    """Command-line entry point (``python -m domains.astro.ingest --help``)."""
    from shared.cli import parse_config

    config = parse_config(IngestConfig, argv, prog="python -m domains.astro.ingest")
    result = run_ingest(config)
    print(f"ingested {result.num_ingested} objects into {result.shard_dir}")
    print(f"splits: {result.split_dir}   report: {result.run_dir / 'ingest_report.json'}")
    if result.problems:
        reasons = Counter(p["reason"] for p in result.problems)
        print(f"left out {len(result.problems)} objects: " + ", ".join(f"{n} {r}" for r, n in reasons.most_common()))
    print(f"next: python -m domains.astro.pretrain --data {result.run_dir}")
    return result


if __name__ == "__main__":
    main()
