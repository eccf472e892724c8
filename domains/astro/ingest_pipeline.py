"""Ingest: ASAS-SN light curves + LAMOST spectra + the catalogue → shards and splits in a run folder.

:func:`run_ingest` (the work of ``python -m domains.astro.ingest``) writes, in ``runs/astro/<run-name>/``:

- ``shards/``: webdataset shards (one sample per object, see :mod:`domains.astro.shard_samples`) and the
  core's ``manifest.json`` (counts, skips by reason);
- ``splits/{full,sub50,sub25,sub10}/{seed}/{train,val,test}.csv`` + ``info.json`` (classes and the train
  mean/std of the 38 features), for the seeds 42, 66, 0, 12, 123;
- ``ingest_report.json`` (counts at each step, every object not ingested and why) and ``problems.csv``;
- ``objects.csv``: one row per ingested object (points, time span, period and where it came from, and the
  period flags of :func:`domains.astro.period_search.period_flags`: daily alias and its harmonics, a
  comparable 1-day-alias peak f ± 1 c/d, a period close to the time span);
- ``config.yaml`` and the ``run.json`` marker (command ``domains.astro.ingest``).

Bad objects never stop the run: each unusable object (unreadable file, NaN or infinite catalogue value,
spectrum outside the grid, ...) is recorded with the file and the problem. A run that ingests nothing
raises :class:`~shared.user_errors.NothingProduced`.

:func:`resolve_ingest_dir` is how the model commands find their ingest folder (``--input``, or the
built-in demo ingest, which they announce in one line before building it).
"""

from __future__ import annotations

import csv
import errno
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from domains.astro.catalogue import (
    ALL_COLUMNS,
    ASTROM3_CLASSES,
    META_COLUMNS,
    NON_NUMERIC_COLUMN,
    catalogue_features,
    crossmatch_on_gaia_id,
    crossmatch_on_sky,
    read_asassn_catalogue,
    read_spectrum_index,
)
from domains.astro.input_errors import AstroInputError, MissingAstroFolderError
from domains.astro.lightcurve_readers import LightCurveColumns, read_asassn_lightcurve_arrays
from domains.astro.period_search import estimate_period, period_flags
from domains.astro.preprocessing import (
    SPLIT_SEEDS,
    SUBSET_FACTORS,
    PreparedLightCurve,
    SplitInfo,
    limit_classes,
    prepare_lightcurve,
    prepare_spectrum,
    split_by_gaia_id,
)
from domains.astro.shard_samples import IngestedObject, encode_shard_sample
from domains.astro.spectrum_readers import read_lamost_spectrum
from shared.atomic_files import write_json_atomically, write_text_atomically
from shared.run_folder import RunFolder
from shared.shards import MANIFEST_NAME, ShardWriter
from shared.user_errors import NothingProduced, UserError

INGEST_COMMAND = "domains.astro.ingest"
"""The command name in an ingest folder's ``run.json`` marker."""

DEMO_INGEST_RUN = "ingest-demo"
"""Run name of the built-in demo ingest under ``runs/astro/``."""

_PERIOD_INDEX = ALL_COLUMNS.index("period")
_PROBLEM_COLUMNS = ["sample_id", "asassn_name", "stage", "file", "reason", "detail"]
_OBJECT_REPORT_COLUMNS = [
    "sample_id",
    "asassn_name",
    "label",
    "n_points",
    "baseline_days",
    "period_days",
    "period_source",
    "period_flags",
]


@dataclass
class IngestConfig:
    """Ingest ASAS-SN light curves, LAMOST spectra and the ASAS-SN catalogue into shards and splits.

    The raw input is four distinct things, each with its own flag (rather than one ``--input``): a
    catalogue table, a folder of light curves, a table linking stars to spectra, and a folder of spectra.
    The AstroM3 release keeps them in separate downloads that users unpack in different places.
    """

    catalogue: str | None = None
    """ASAS-SN catalogue CSV with Gaia/2MASS/WISE columns; empty = build and ingest the built-in demo set."""
    lightcurve_dir: str | None = None
    """Folder of ASAS-SN ``<name without spaces>.dat`` light curves (required with ``catalogue``)."""
    spectrum_index: str | None = None
    """CSV linking ``edr3_source_id`` (or ``ra``/``dec`` in degrees) to ``spec_filename``."""
    spectrum_dir: str | None = None
    """Folder holding the LAMOST FITS files named in ``spectrum_index``."""
    run_name: str = DEMO_INGEST_RUN
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
    budget_scope: Literal["train", "all"] = "train"
    """Splits a label budget caps: 'train' (the exact comparison: every budget is scored on the same full
    val and test splits) or 'all' (AstroM3's subsets, which also cap val and test)."""
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
    objects: str | None = None
    """Any survey's light curves: a table (CSV, ECSV or FITS) with one row per star, holding --id_column,
    --label_column, optionally --file_column and any catalogue columns (amplitude, period, lksl_statistic,
    rfr_score, the 34 metadata columns, spec_filename); with it, --lightcurve_dir holds one light-curve table
    per star and --catalogue/--spectrum_index are not used."""
    id_column: str = "id"
    """--objects: column of the star identifiers."""
    label_column: str = "label"
    """--objects: column of the class labels."""
    file_column: str = "file"
    """--objects: column naming each star's light-curve file in --lightcurve_dir (if the column is absent:
    <id><lightcurve_suffix>)."""
    lightcurve_suffix: str = ".txt"
    """--objects: file name suffix when there is no --file_column."""
    lightcurve_format: str = "auto"
    """--objects: astropy table format of the light curves; auto: by suffix (.csv, .ecsv, .fits), anything
    else read as whitespace-separated text with an optional header line (astropy 'ascii')."""
    columns: LightCurveColumns = field(default_factory=LightCurveColumns)
    """--objects: the light-curve column map (--columns.time MJD --columns.time_format mjd --columns.mag Mag
    --columns.mag_err Err ...); flux columns win over magnitude columns when both exist."""
    column_map: str | None = None
    """--objects: YAML file with the column map (keys as --columns.*); its keys replace the flags'."""
    modalities: list[str] = field(default_factory=lambda: ["photometry"])
    """--objects: modalities to ingest: photometry plus optionally spectra (needs a spec_filename column and
    --spectrum_dir) and metadata (needs the 34 metadata columns in the table). Others are stored as zeros."""


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


@dataclass(frozen=True)
class _Sources:
    catalogue: Path
    lightcurve_dir: Path
    spectrum_index: Path
    spectrum_dir: Path


def check_ingest_config(config: IngestConfig) -> None:
    """Refuse out-of-range settings, naming the flag."""
    checks = (
        ("--shard_max_samples", config.shard_max_samples >= 1, "must be >= 1"),
        ("--min_lightcurve_points", config.min_lightcurve_points >= 2, "must be >= 2"),
        ("--min_spectrum_coverage", 0 < config.min_spectrum_coverage <= 1, "must be in (0, 1]"),
        ("--max_separation_arcsec", config.max_separation_arcsec > 0, "must be > 0"),
        ("--limit", config.limit is None or config.limit >= 1, "must be >= 1 (or empty for all)"),
        ("--demo_stars", config.demo_stars >= 1, "must be >= 1"),
        ("--classes", bool(config.classes), "give at least one class"),
        ("--seeds", bool(config.seeds), "give at least one split seed"),
        ("--subsets", bool(config.subsets), "give at least one subset"),
    )
    for flag, ok, problem in checks:
        if not ok:
            raise UserError(f"{flag}: {problem}, got {getattr(config, flag[2:])!r}")
    unknown = [subset for subset in config.subsets if subset not in SUBSET_FACTORS]
    if unknown:
        raise UserError(f"--subsets: unknown {unknown}; choose from {list(SUBSET_FACTORS)}")


def _raw_sources(config: IngestConfig) -> _Sources:
    """The four raw inputs: the user's (each checked to exist and be a file or folder) or the demo set's."""
    if config.catalogue is None:
        from domains.astro.demo import DemoSpec, build_demo_dataset

        demo = build_demo_dataset(DemoSpec(n_stars=config.demo_stars, seed=config.demo_seed))
        return _Sources(demo.catalogue, demo.lightcurve_dir, demo.spectrum_index, demo.spectrum_dir)
    missing = [name for name in ("lightcurve_dir", "spectrum_index", "spectrum_dir") if getattr(config, name) is None]
    if missing:
        raise UserError(f"--catalogue given: also give --{' --'.join(missing)}")
    for name, kind in (
        ("catalogue", "file"),
        ("lightcurve_dir", "dir"),
        ("spectrum_index", "file"),
        ("spectrum_dir", "dir"),
    ):
        path = Path(getattr(config, name))
        if not path.exists():
            raise UserError(f"--{name} {path}: no such {'file' if kind == 'file' else 'folder'}")
        if kind == "file" and not path.is_file():
            raise UserError(f"--{name} {path}: is a folder, expected a CSV file")
        if kind == "dir" and not path.is_dir():
            raise UserError(f"--{name} {path}: is a file, expected a folder")
    return _Sources(
        Path(config.catalogue),
        Path(config.lightcurve_dir),  # type: ignore[arg-type]
        Path(config.spectrum_index),  # type: ignore[arg-type]
        Path(config.spectrum_dir),  # type: ignore[arg-type]
    )


def problem_row(row: pd.Series | dict[str, Any], stage: str, file: str, reason: str, detail: str) -> dict[str, str]:
    """One row of ``problems.csv``: which object (Gaia id and name), at which stage, which file, why."""
    return {
        "sample_id": str(row.get("edr3_source_id", "")),
        "asassn_name": str(row.get("asassn_name", "")),
        "stage": stage,
        "file": file,
        "reason": reason,
        "detail": detail,
    }


def reason_of(error: AstroInputError) -> str:
    """A short, stable category for the manifest's per-reason counts."""
    text = error.problem.lower()
    for needle, reason in (
        ("empty light curve", "empty light curve"),
        ("outside wavelength range", "spectrum outside wavelength range"),
        ("nan-only", "NaN-only column"),
        ("non-finite feature", "non-finite metadata"),
        ("constant", "constant flux"),
        ("distinct point", "too few points"),
        ("cannot read", "missing or unreadable file"),
        ("no such file", "missing or unreadable file"),
    ):
        if needle in text:
            return reason
    return "unparseable file"


def prepare_checked_lightcurve(
    time_days: np.ndarray, flux: np.ndarray, flux_err: np.ndarray, path: Path, min_points: int
) -> PreparedLightCurve:
    """The light curve of ``path`` prepared for the model; raises AstroInputError with fewer than ``min_points``
    distinct points."""
    prepared = prepare_lightcurve(time_days, flux, flux_err, source=str(path))
    if len(prepared.values) < min_points:
        raise AstroInputError(
            path, f"light curve has {len(prepared.values)} distinct point(s); need at least {min_points}"
        )
    return prepared


def read_prepared_spectrum(path: Path, config: IngestConfig) -> tuple[np.ndarray, str]:
    """The LAMOST spectrum at ``path`` as the model's channels, and the file's layout."""
    spectrum = read_lamost_spectrum(path)
    channels = prepare_spectrum(
        spectrum.wavelength.to_value("AA"),
        spectrum.flux,
        spectrum.ivar,
        error_mode=config.spectrum_error_mode,
        min_coverage=config.min_spectrum_coverage,
        source=str(path),
    )
    return channels, spectrum.layout


def check_finite_features(features: np.ndarray, source: str | Path) -> None:
    """Raise AstroInputError naming ``source`` and the columns whose transformed metadata is not finite."""
    if not np.isfinite(features).all():
        names = [name for name, value in zip(ALL_COLUMNS, features) if not np.isfinite(value)]
        raise AstroInputError(source, f"non-finite feature(s) {names} after the AstroM3 transforms")


def lightcurve_report(
    prepared: PreparedLightCurve,
    time_days: np.ndarray,
    flux: np.ndarray,
    flux_err: np.ndarray,
    period: float,
    period_source: str,
) -> dict[str, Any]:
    """The per-object report's light-curve columns (points, time span, period, its source and its flags)."""
    return {
        "n_points": len(prepared.values),
        "n_duplicates_removed": prepared.n_duplicates,
        "baseline_days": float(np.nanmax(time_days) - np.nanmin(time_days)),
        "period_days": float(period),
        "period_source": period_source,
        "period_flags": period_flags(time_days, flux, float(period), flux_err),
    }


def _ingest_one(
    row: pd.Series, features: np.ndarray, config: IngestConfig, sources: _Sources
) -> tuple[IngestedObject, dict[str, Any]]:
    """Read, check and preprocess one object; raises AstroInputError (with the file) on bad input.

    ``features`` is the row's :func:`catalogue_features` vector (computed for all rows at once); its
    log10 period is filled here when the catalogue has no period.
    """
    lightcurve_path = sources.lightcurve_dir / f"{str(row['asassn_name']).replace(' ', '')}.dat"
    curve = read_asassn_lightcurve_arrays(lightcurve_path)
    time_days, flux, flux_err = curve.hjd_days, curve.flux_mjy, curve.flux_err_mjy
    prepared = prepare_checked_lightcurve(time_days, flux, flux_err, lightcurve_path, config.min_lightcurve_points)
    row = row.copy()
    period_source = "catalogue"
    if not (np.isfinite(row["period"]) and row["period"] > 0):
        estimate = estimate_period(time_days, flux, flux_err, variable_type=str(row["variable_type"]))
        row["period"] = estimate.period_days
        period_source = f"lomb_scargle_nterms{estimate.nterms}"
    channels, spectrum_layout = read_prepared_spectrum(sources.spectrum_dir / str(row["spec_filename"]), config)
    features = features.copy()
    features[_PERIOD_INDEX] = np.log10(row["period"])
    check_finite_features(features, sources.catalogue)
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
        **lightcurve_report(prepared, time_days, flux, flux_err, row["period"], period_source),
        "spectrum_layout": spectrum_layout,
        "spectrum_file": str(row["spec_filename"]),
    }
    return obj, extra


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, quoting=csv.QUOTE_MINIMAL)
    write_text_atomically(path, buffer.getvalue())


def write_problem_report(run_dir: Path, problems: list[dict[str, str]]) -> Path:
    """Write ``problems.csv`` (one row per object left out); returns its path."""
    path = run_dir / "problems.csv"
    _write_csv(path, pd.DataFrame(problems, columns=_PROBLEM_COLUMNS))
    return path


def write_object_report(run_dir: Path, object_rows: list[dict[str, Any]]) -> dict[str, int]:
    """Write ``objects.csv``, the per-object report (points, time span, period, its source and its flags: what a
    careful user checks before trusting a fold); returns how many objects carry each kind of period flag."""
    rows = [
        {**{k: row.get(k) for k in _OBJECT_REPORT_COLUMNS}, "period_flags": "; ".join(row.get("period_flags", []))}
        for row in object_rows
    ]
    _write_csv(run_dir / "objects.csv", pd.DataFrame(rows, columns=_OBJECT_REPORT_COLUMNS))
    kinds = Counter(flag.split(" ")[0] for row in object_rows for flag in row.get("period_flags", []))
    return dict(kinds.most_common())


def write_splits(
    catalogue_ids: pd.Series,
    ingested: pd.DataFrame,
    features: dict[str, np.ndarray],
    classes: list[str],
    seeds: list[int],
    subsets: list[str],
    split_dir: Path,
    subset_rule: Literal["paper", "exact"] = "paper",
    budget_scope: Literal["train", "all"] = "train",
) -> dict[str, dict[str, dict[str, int]]]:
    """Write ``{subset}/{seed}/{train,val,test}.csv`` and ``info.json``; return the split sizes.

    Splits are drawn on every catalogue Gaia id (as the paper draws them on the whole ASAS-SN
    catalogue), then restricted to the ingested objects; a label budget caps classes in the train split
    only (``budget_scope="train"``: val and test are the full ones, identical for every budget of a seed)
    or in every split (``"all"``, as AstroM3's released subsets); the standardization is fitted on each
    (subset, seed)'s train split only.
    """
    if budget_scope not in ("train", "all"):
        raise ValueError(f"budget_scope must be 'train' or 'all', got {budget_scope!r}")
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
                factor = SUBSET_FACTORS[subset] if split_name == "train" or budget_scope == "all" else 1
                kept = limit_classes(in_split, factor, seed, subset_rule)
                chosen[split_name] = in_split.loc[kept]
            if chosen["train"].empty:
                raise NothingProduced(f"subset {subset} seed {seed}: the train split is empty; ingest more objects")
            info = SplitInfo.fit(np.stack([features[s] for s in chosen["train"].index]), classes)
            for split_name, split_labels in chosen.items():
                frame = pd.DataFrame({"sample_id": split_labels.index, "label": split_labels.to_numpy()})
                _write_csv(out / f"{split_name}.csv", frame)
                sizes[subset][str(seed)][split_name] = len(frame)
            info.save(out / "info.json")
    return sizes


def _valid_catalogue_rows(
    catalogue: pd.DataFrame, catalogue_path: Path, problems: list[dict[str, str]]
) -> pd.DataFrame:
    """Drop (and report, one problem per object) rows without a Gaia id, with non-numeric, NaN or infinite
    metadata, or with a Gaia id seen before."""
    no_id = catalogue["edr3_source_id"].isna()
    for _, row in catalogue[no_id].iterrows():
        problems.append(
            problem_row(row, "catalogue", str(catalogue_path), "missing Gaia id", "edr3_source_id is empty")
        )
    catalogue = catalogue[~no_id]
    if NON_NUMERIC_COLUMN in catalogue.columns:
        text = catalogue[NON_NUMERIC_COLUMN].fillna("").astype(str) != ""
        for label, row in catalogue[text].iterrows():
            # The frame keeps read_csv's row numbers: data row i is line i + 2 of the file (after the header).
            detail = f"not a number in catalogue line {int(label) + 2}: {row[NON_NUMERIC_COLUMN]}"
            problems.append(problem_row(row, "catalogue", str(catalogue_path), "non-numeric metadata", detail))
        catalogue = catalogue[~text]
    # Metadata must be complete and finite (the paper drops such rows); a missing period is estimated instead.
    required = [c for c in ALL_COLUMNS if c != "period"]
    values = catalogue[required].to_numpy(dtype=np.float64)
    nan, infinite = np.isnan(values), np.isinf(values)
    for position in np.flatnonzero(nan.any(axis=1) | infinite.any(axis=1)):
        row = catalogue.iloc[position]
        if nan[position].any():
            names = [c for c, bad in zip(required, nan[position]) if bad]
            problems.append(problem_row(row, "catalogue", str(catalogue_path), "NaN metadata", f"NaN in {names}"))
        else:
            names = [c for c, bad in zip(required, infinite[position]) if bad]
            detail = f"infinite value in column(s) {names}"
            problems.append(problem_row(row, "catalogue", str(catalogue_path), "non-finite metadata", detail))
    catalogue = catalogue[~(nan.any(axis=1) | infinite.any(axis=1))]
    duplicated = catalogue["edr3_source_id"].duplicated(keep="first")
    for _, row in catalogue[duplicated].iterrows():
        problems.append(problem_row(row, "catalogue", str(catalogue_path), "duplicate Gaia id", "kept the first row"))
    return catalogue[~duplicated]


def _matched_with_spectra(
    catalogue: pd.DataFrame, sources: _Sources, config: IngestConfig
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Catalogue rows joined with their spectrum file (by Gaia id or sky position); also the index read."""
    spectrum_index = read_spectrum_index(sources.spectrum_index)
    if config.crossmatch == "gaia_id":
        if "edr3_source_id" not in spectrum_index.columns:
            raise AstroInputError(sources.spectrum_index, "no edr3_source_id column: use --crossmatch sky")
        return crossmatch_on_gaia_id(catalogue, spectrum_index[["edr3_source_id", "spec_filename"]]), spectrum_index
    for path, table in ((sources.catalogue, catalogue), (sources.spectrum_index, spectrum_index)):
        if not {"ra", "dec"} <= set(table.columns):
            raise AstroInputError(path, "sky cross-match needs 'ra' and 'dec' columns (degrees)")
    index = spectrum_index.drop(columns=["edr3_source_id"], errors="ignore")
    return crossmatch_on_sky(catalogue, index, config.max_separation_arcsec), spectrum_index


def run_ingest(config: IngestConfig) -> IngestResult:
    """Run an ingest (see the module docstring); returns where it wrote and what it left out.

    Raises:
        UserError: a flag out of range, a missing input, or an unreadable catalogue or spectrum index.
        FileExistsError: the run folder already holds shards and ``--overwrite`` is false.
        NothingProduced: no object could be ingested (``problems.csv`` says why for each).
    """
    check_ingest_config(config)
    # The user's inputs are checked first (the built-in set is only built once the output is known free).
    sources = _raw_sources(config) if config.catalogue is not None else None
    shard_dir = Path(config.runs_root) / "astro" / config.run_name / "shards"
    if not config.overwrite and ((shard_dir / MANIFEST_NAME).exists() or any(shard_dir.glob("*.tar"))):
        message = "already holds shards; pass --overwrite true or choose another --run_name"
        raise FileExistsError(errno.EEXIST, message, str(shard_dir))
    sources = sources or _raw_sources(config)
    catalogue = read_asassn_catalogue(sources.catalogue)
    folder = RunFolder.create("astro", config.run_name, config.runs_root)
    shard_dir, split_dir = folder.path / "shards", folder.path / "splits"
    folder.clear_finished()
    folder.save_config(config)
    counts: Counter[str] = Counter()
    problems: list[dict[str, str]] = []

    counts["catalogue_rows"] = len(catalogue)
    if config.limit is not None:
        catalogue = catalogue.head(config.limit)
    catalogue = _valid_catalogue_rows(catalogue, sources.catalogue, problems)
    counts["catalogue_valid"] = len(catalogue)
    catalogue_ids = catalogue["edr3_source_id"]
    matched, _ = _matched_with_spectra(catalogue, sources, config)
    counts["with_spectrum"] = len(matched)
    in_classes = matched["variable_type"].isin(config.classes)
    counts["other_classes"] = int((~in_classes).sum())
    matched = matched[in_classes]

    ingested_rows: list[dict[str, str]] = []
    object_rows: list[dict[str, Any]] = []
    features: dict[str, np.ndarray] = {}
    with ShardWriter(
        shard_dir,
        prefix="astro",
        max_samples=config.shard_max_samples,
        track_json_fields=("label", "period_source", "spectrum_layout"),
        overwrite=config.overwrite,
    ) as writer:
        feature_matrix = catalogue_features(matched).to_numpy(dtype=np.float64)
        for position, (_, row) in enumerate(matched.iterrows()):
            try:
                obj, extra = _ingest_one(row, feature_matrix[position], config, sources)
            except AstroInputError as error:
                reason = reason_of(error)
                if error.source == str(sources.catalogue):
                    stage = "catalogue"
                elif error.source.endswith((".fits", ".fit", ".fits.gz")):
                    stage = "spectrum"
                else:
                    stage = "light curve"
                problems.append(problem_row(row, stage, error.source, reason, error.problem))
                writer.skip(f"{row['asassn_name']} ({error.source})", reason)
                continue
            except ValueError as error:  # e.g. too few points for a period search
                problems.append(problem_row(row, "light curve", "", "unusable light curve", str(error)))
                writer.skip(str(row["asassn_name"]), "unusable light curve")
                continue
            writer.write(encode_shard_sample(obj, extra))
            ingested_rows.append({"sample_id": obj.sample_id, "label": obj.label})
            object_rows.append({"sample_id": obj.sample_id, "label": obj.label, **extra})
            features[obj.sample_id] = obj.features
    counts["ingested"] = len(ingested_rows)
    ingested = pd.DataFrame(ingested_rows, columns=["sample_id", "label"])
    report_path = folder.path / "ingest_report.json"
    problems_path = folder.path / "problems.csv"
    write_problem_report(folder.path, problems)
    flag_counts = write_object_report(folder.path, object_rows)
    report = {
        "sources": {
            "catalogue": str(sources.catalogue),
            "lightcurve_dir": str(sources.lightcurve_dir),
            "spectrum_index": str(sources.spectrum_index),
            "spectrum_dir": str(sources.spectrum_dir),
        },
        "modalities": ["photometry", "spectra", "metadata"],
        "demo_format_version": _demo_format_version() if config.catalogue is None else None,
        "counts": dict(counts),
        "class_counts": ingested["label"].value_counts().to_dict(),
        "problems_by_reason": dict(Counter(p["reason"] for p in problems).most_common()),
        "period_flag_counts": flag_counts,
        "problems": problems,
        "split_sizes": {},
        "meta_columns": list(META_COLUMNS),
    }
    if not len(ingested):
        write_json_atomically(report_path, report)
        reasons = ", ".join(f"{n} {r}" for r, n in Counter(p["reason"] for p in problems).most_common())
        why = reasons or "no object of the --classes has a spectrum"
        raise NothingProduced(
            f"none of the {counts['catalogue_rows']} catalogue objects was ingested ({why}); see {problems_path}"
        )
    report["split_sizes"] = write_splits(
        catalogue_ids,
        ingested,
        features,
        config.classes,
        config.seeds,
        config.subsets,
        split_dir,
        config.subset_rule,
        config.budget_scope,
    )
    write_json_atomically(report_path, report)
    folder.mark_finished(
        command=INGEST_COMMAND,
        outputs=["config.yaml", "ingest_report.json", "problems.csv", "objects.csv", f"shards/{MANIFEST_NAME}"],
        summary={"ingested": len(ingested_rows), "left_out": len(problems)},
    )
    return IngestResult(folder.path, shard_dir, split_dir, len(ingested_rows), problems)


def _demo_format_version() -> int:
    from domains.astro.demo import DEMO_FORMAT_VERSION

    return DEMO_FORMAT_VERSION


def _is_current_demo_ingest(folder: Path) -> bool:
    """Whether ``folder`` holds a finished demo ingest of the current demo files and split rules."""
    report = folder / "ingest_report.json"
    if not RunFolder(folder).is_finished or not report.is_file():
        return False
    return json.loads(report.read_text(encoding="utf-8")).get("demo_format_version") == _demo_format_version()


def demo_ingest_dir(runs_root: str | Path = "runs", demo_stars: int = 2000) -> Path:
    """Where the built-in demo ingest of ``demo_stars`` stars lives (``runs/astro/ingest-demo`` for 2,000)."""
    name = DEMO_INGEST_RUN if demo_stars == 2000 else f"{DEMO_INGEST_RUN}-{demo_stars}"
    return Path(runs_root) / "astro" / name


def resolve_ingest_dir(input_dir: str | None, runs_root: str = "runs", demo_stars: int = 2000) -> Path:
    """The ingest folder a model command reads: ``--input`` when given, else the built-in demo ingest.

    The demo ingest is built on first use; one line says so first, with the ingest command that does the
    same, so no step runs unannounced.

    Raises:
        MissingAstroFolderError: ``input_dir`` is not an ingest folder (no ``shards/`` and ``splits/``).
    """
    if input_dir:
        folder = Path(input_dir)
        if not (folder / "shards").is_dir() or not (folder / "splits").is_dir():
            raise MissingAstroFolderError(
                f"--input {folder}: not an astro ingest folder (expected shards/ and splits/ inside); "
                "create one with: python -m domains.astro.ingest"
            )
        return folder
    folder = demo_ingest_dir(runs_root, demo_stars)
    from shared.distributed import main_process_first

    with main_process_first("the built-in demo ingest"):  # under torchrun: rank 0 builds, the others wait
        # A demo ingest of an older demo format (e.g. one whose budgets capped val/test) is rebuilt, not reused.
        if not _is_current_demo_ingest(folder):
            stars = "" if demo_stars == 2000 else f" --demo_stars {demo_stars}"
            print(
                f"no --input given and no demo ingest in {folder}: ingesting the built-in demo set ({demo_stars} "
                f"stars) first, as `python -m domains.astro.ingest --run_name {folder.name} --runs_root "
                f"{runs_root}{stars}` would",
                flush=True,
            )
            run_ingest(IngestConfig(run_name=folder.name, runs_root=runs_root, demo_stars=demo_stars, overwrite=True))
    return folder
