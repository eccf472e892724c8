"""Ingest any survey's light curves: one table file per star (CSV, ECSV, FITS or whitespace text) with a
column map, identifiers and labels from a small object table, and any subset of modalities (the work of
``python -m domains.astro.ingest --objects ...``).

Photometry alone is a valid dataset: it can be fine-tuned (``--mode photo``), embedded with a pretrained
model, searched for neighbours and anomalies. Spectra (LAMOST FITS named in a ``spec_filename`` column) and
metadata (the 34 AstroM3 catalogue columns in the object table) are added only when ``--modalities`` asks for
them; the object table needs only the columns the chosen modalities use. A modality that is not ingested is
stored as zeros and recorded in ``ingest_report.json`` (``modalities``), so the model commands refuse the
modes that would read it.

The four photometric features each photometry step carries (amplitude, period, Lafler–Kinman statistic,
random-forest score) are read from the object table when it has them; otherwise the period comes from a
Lomb–Scargle search, the amplitude is the 5–95 percentile range of the light curve in magnitudes, the
Lafler–Kinman statistic is computed on the fold, and the random-forest score (an ASAS-SN classifier's
confidence) is 0 for every object.

Writes the same run folder as the ASAS-SN ingest (:mod:`domains.astro.ingest_pipeline`): ``shards/``,
``splits/``, ``ingest_report.json``, ``problems.csv``, ``objects.csv``, ``config.yaml``, ``run.json``.
"""

from __future__ import annotations

import dataclasses
import errno
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from domains.astro.catalogue import (
    ALL_COLUMNS,
    META_COLUMNS,
    NON_NUMERIC_COLUMN,
    catalogue_features,
    coerce_numeric_columns,
)
from domains.astro.demo import lafler_kinman_statistic
from domains.astro.ingest_pipeline import (
    INGEST_COMMAND,
    IngestConfig,
    IngestResult,
    check_finite_features,
    check_ingest_config,
    lightcurve_report,
    prepare_checked_lightcurve,
    problem_row,
    read_prepared_spectrum,
    reason_of,
    write_object_report,
    write_problem_report,
    write_splits,
)
from domains.astro.input_errors import AstroInputError
from domains.astro.lightcurve_readers import LightCurveColumns, read_lightcurve_table
from domains.astro.model import MODALITIES
from domains.astro.period_search import estimate_period
from domains.astro.shard_samples import IngestedObject, encode_shard_sample
from shared.atomic_files import write_json_atomically
from shared.run_folder import RunFolder
from shared.shards import MANIFEST_NAME, ShardWriter
from shared.user_errors import NothingProduced, UserError

_SPECTRUM_SHAPE = (3, 2575)
_TABLE_FORMATS = {".csv": "ascii.csv", ".ecsv": "ascii.ecsv", ".fits": "fits", ".fit": "fits"}
_INDEX = {name: i for i, name in enumerate(ALL_COLUMNS)}


def lightcurve_columns(config: IngestConfig) -> LightCurveColumns:
    """The column map: ``--columns.*`` flags, replaced key by key by the YAML file ``--column_map``."""
    columns = config.columns
    if config.column_map is None:
        return columns
    path = Path(config.column_map)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise UserError(f"--column_map {path}: cannot read a YAML mapping ({error})") from None
    known = {f.name for f in dataclasses.fields(LightCurveColumns)}
    unknown = sorted(set(values) - known) if isinstance(values, dict) else ["(not a mapping)"]
    if unknown:
        raise UserError(f"--column_map {path}: unknown key(s) {unknown}; known: {sorted(known)}")
    return dataclasses.replace(columns, **values)


def read_object_table(config: IngestConfig) -> pd.DataFrame:
    """The object table (CSV, ECSV or FITS): one row per star, with its id, label and optional columns."""
    from astropy.table import Table

    path = Path(config.objects)  # type: ignore[arg-type]
    if not path.is_file():
        raise UserError(f"--objects {path}: no such file")
    try:
        table = Table.read(path, format=_TABLE_FORMATS.get(path.suffix.lower(), "ascii"))
    except Exception as error:  # astropy raises many types for malformed tables
        raise UserError(f"--objects {path}: unreadable table ({type(error).__name__}: {error})") from None
    frame = table.to_pandas()
    missing = [c for c in (config.id_column, config.label_column) if c not in frame.columns]
    if missing:
        raise UserError(
            f"--objects {path}: no column(s) {missing} (set --id_column/--label_column); has {list(frame.columns)}"
        )
    frame[config.id_column] = frame[config.id_column].astype(str)
    frame[config.label_column] = frame[config.label_column].astype(str)
    return frame


def _check_modalities(config: IngestConfig, frame: pd.DataFrame) -> list[str]:
    chosen = list(dict.fromkeys(config.modalities))
    unknown = [m for m in chosen if m not in MODALITIES]
    if unknown or "photometry" not in chosen:
        raise UserError(f"--modalities: photometry plus any of spectra, metadata; got {config.modalities}")
    if "spectra" in chosen:
        if config.spectrum_dir is None or not Path(config.spectrum_dir).is_dir():
            raise UserError(f"--spectrum_dir {config.spectrum_dir}: needed (a folder) when --modalities has spectra")
        if "spec_filename" not in frame.columns:
            raise UserError(
                f"--objects {config.objects}: --modalities has spectra but there is no spec_filename column"
            )
    if "metadata" in chosen:
        missing = [c for c in META_COLUMNS if c not in frame.columns]
        if missing:
            raise UserError(
                f"--objects {config.objects}: --modalities has metadata but the table lacks column(s) {missing}"
            )
    return [m for m in MODALITIES if m in chosen]


def _lightcurve_path(config: IngestConfig, row: pd.Series) -> Path:
    folder = Path(config.lightcurve_dir)  # type: ignore[arg-type]
    if config.file_column in row.index and isinstance(row[config.file_column], str) and row[config.file_column]:
        return folder / row[config.file_column]
    return folder / f"{row[config.id_column]}{config.lightcurve_suffix}"


def _table_format(path: Path, config: IngestConfig) -> str:
    if config.lightcurve_format != "auto":
        return config.lightcurve_format
    # Anything that is not CSV, ECSV or FITS is read as whitespace-separated text (header line optional).
    return _TABLE_FORMATS.get(path.suffix.lower(), "ascii")


def _amplitude_mag(flux: np.ndarray) -> float:
    """5–95 percentile range of the light curve in magnitudes (flux ratios; robust to outliers)."""
    low, high = np.nanpercentile(flux, [5, 95])
    if low > 0:
        return float(2.5 * np.log10(high / low))
    return float(high - low)


def _one_object(
    row: pd.Series, raw: dict[str, float], config: IngestConfig, columns: LightCurveColumns, modalities: list[str]
) -> tuple[IngestedObject, dict[str, Any]]:
    path = _lightcurve_path(config, row)
    if not path.is_file():
        raise AstroInputError(path, "no such file (light curve named by --objects)")
    series = read_lightcurve_table(path, columns, format=_table_format(path, config))
    time_days = np.asarray(series.time.jd, dtype=np.float64)
    flux = np.asarray(series["flux"].value, dtype=np.float64)
    flux_err = np.asarray(series["flux_err"].value, dtype=np.float64)
    prepared = prepare_checked_lightcurve(time_days, flux, flux_err, path, config.min_lightcurve_points)
    label = str(row[config.label_column])
    period = raw.get("period", np.nan)
    period_source = "objects table"
    if not (np.isfinite(period) and period > 0):
        period = estimate_period(time_days, flux, flux_err, variable_type=label).period_days
        period_source = "lomb_scargle"
    photometric = {
        "amplitude": raw.get("amplitude", np.nan),
        "lksl_statistic": raw.get("lksl_statistic", np.nan),
        "rfr_score": raw.get("rfr_score", np.nan),
    }
    if not np.isfinite(photometric["amplitude"]):
        photometric["amplitude"] = _amplitude_mag(flux)
    if not np.isfinite(photometric["lksl_statistic"]):
        photometric["lksl_statistic"] = lafler_kinman_statistic(time_days, flux, period)
    if not np.isfinite(photometric["rfr_score"]):
        photometric["rfr_score"] = 0.0
    features = np.zeros(len(ALL_COLUMNS))
    if "metadata" in modalities:
        frame = pd.DataFrame([{name: raw.get(name, np.nan) for name in ALL_COLUMNS} | {"period": period}])
        features = catalogue_features(frame).to_numpy(dtype=np.float64)[0]
    for name, value in photometric.items():
        features[_INDEX[name]] = value
    features[_INDEX["period"]] = np.log10(period)
    check_finite_features(features, config.objects or "")
    spectrum = np.zeros(_SPECTRUM_SHAPE, dtype=np.float32)
    if "spectra" in modalities:
        spectrum_path = Path(config.spectrum_dir) / str(row["spec_filename"])  # type: ignore[arg-type]
        spectrum, _ = read_prepared_spectrum(spectrum_path, config)
    obj = IngestedObject(
        sample_id=str(row[config.id_column]),
        label=label,
        photometry=prepared.values,
        log10_mad_flux=prepared.log10_mad_flux,
        delta_t_years=prepared.delta_t_years,
        spectrum=spectrum,
        features=features,
    )
    extra = {
        "asassn_name": str(row[config.id_column]),
        "lightcurve_file": str(path),
        **lightcurve_report(prepared, time_days, flux, flux_err, period, period_source),
        "modalities": modalities,
    }
    return obj, extra


def run_lightcurve_ingest(config: IngestConfig) -> IngestResult:
    """Ingest the light curves an object table names (see the module docstring).

    Raises:
        UserError: a missing or unreadable input, a bad column map, or modalities the table cannot feed.
        FileExistsError: the run folder already holds shards and ``--overwrite`` is false.
        NothingProduced: no object could be ingested (``problems.csv`` says why for each).
    """
    check_ingest_config(config)
    if config.lightcurve_dir is None or not Path(config.lightcurve_dir).is_dir():
        raise UserError(f"--lightcurve_dir {config.lightcurve_dir}: needed with --objects (a folder of light curves)")
    columns = lightcurve_columns(config)
    frame = read_object_table(config)
    modalities = _check_modalities(config, frame)
    present = tuple(c for c in ALL_COLUMNS if c in frame.columns)
    frame = coerce_numeric_columns(frame, str(config.objects), present)
    shard_dir = Path(config.runs_root) / "astro" / config.run_name / "shards"
    if not config.overwrite and ((shard_dir / MANIFEST_NAME).exists() or any(shard_dir.glob("*.tar"))):
        message = "already holds shards; pass --overwrite true or choose another --run_name"
        raise FileExistsError(errno.EEXIST, message, str(shard_dir))
    folder = RunFolder.create("astro", config.run_name, config.runs_root)
    folder.clear_finished()
    folder.save_config(config)
    problems: list[dict[str, str]] = []
    object_rows: list[dict[str, Any]] = []
    ingested_rows: list[dict[str, str]] = []
    features: dict[str, np.ndarray] = {}
    counts: Counter[str] = Counter(object_rows=len(frame))
    duplicated = frame[config.id_column].duplicated(keep="first")
    required = [c for c in present if c in META_COLUMNS] if "metadata" in modalities else []
    with ShardWriter(
        folder.path / "shards",
        prefix="astro",
        max_samples=config.shard_max_samples,
        track_json_fields=("label", "period_source"),
        overwrite=config.overwrite,
    ) as writer:
        for (_, row), is_duplicate in zip(frame.iterrows(), duplicated, strict=True):
            ids = {"edr3_source_id": row[config.id_column], "asassn_name": row[config.id_column]}
            if is_duplicate:
                problems.append(problem_row(ids, "objects", str(config.objects), "duplicate id", "kept the first row"))
                continue
            if row.get(NON_NUMERIC_COLUMN):
                detail = f"not a number: {row[NON_NUMERIC_COLUMN]}"
                problems.append(problem_row(ids, "objects", str(config.objects), "non-numeric metadata", detail))
                continue
            bad = [c for c in required if not np.isfinite(row[c])]
            if bad:
                detail = f"NaN or infinite value in column(s) {bad}"
                problems.append(problem_row(ids, "objects", str(config.objects), "non-finite metadata", detail))
                continue
            raw = {c: float(row[c]) for c in present}
            try:
                obj, extra = _one_object(row, raw, config, columns, modalities)
            except AstroInputError as error:
                stage = (
                    "spectrum"
                    if error.source.endswith((".fits", ".fit")) and "spectra" in modalities
                    else "light curve"
                )
                problems.append(problem_row(ids, stage, error.source, reason_of(error), error.problem))
                writer.skip(f"{row[config.id_column]} ({error.source})", reason_of(error))
                continue
            except ValueError as error:  # e.g. too few points for a period search
                problems.append(problem_row(ids, "light curve", "", "unusable light curve", str(error)))
                writer.skip(str(row[config.id_column]), "unusable light curve")
                continue
            writer.write(encode_shard_sample(obj, extra))
            ingested_rows.append({"sample_id": obj.sample_id, "label": obj.label})
            object_rows.append({"sample_id": obj.sample_id, "label": obj.label, **extra})
            features[obj.sample_id] = obj.features
    counts["ingested"] = len(ingested_rows)
    ingested = pd.DataFrame(ingested_rows, columns=["sample_id", "label"])
    problems_path = write_problem_report(folder.path, problems)
    flag_counts = write_object_report(folder.path, object_rows)
    labels_seen = set(ingested["label"])
    classes = [c for c in config.classes if c in labels_seen] + sorted(labels_seen - set(config.classes))
    report: dict[str, Any] = {
        "sources": {"objects": str(config.objects), "lightcurve_dir": str(config.lightcurve_dir)},
        "modalities": modalities,
        "column_map": dataclasses.asdict(columns),
        "counts": dict(counts),
        "class_counts": ingested["label"].value_counts().to_dict(),
        "problems_by_reason": dict(Counter(p["reason"] for p in problems).most_common()),
        "period_flag_counts": flag_counts,
        "problems": problems,
        "split_sizes": {},
        "meta_columns": list(META_COLUMNS),
    }
    report_path = folder.path / "ingest_report.json"
    if not len(ingested):
        write_json_atomically(report_path, report)
        reasons = ", ".join(f"{n} {r}" for r, n in Counter(p["reason"] for p in problems).most_common())
        raise NothingProduced(f"none of the {len(frame)} objects was ingested ({reasons}); see {problems_path}")
    report["split_sizes"] = write_splits(
        ingested["sample_id"],
        ingested,
        features,
        classes,
        config.seeds,
        config.subsets,
        folder.path / "splits",
        config.subset_rule,
        config.budget_scope,
    )
    write_json_atomically(report_path, report)
    folder.mark_finished(
        command=INGEST_COMMAND,
        outputs=["config.yaml", "ingest_report.json", "problems.csv", "objects.csv", f"shards/{MANIFEST_NAME}"],
        summary={"ingested": len(ingested_rows), "left_out": len(problems), "modalities": modalities},
    )
    return IngestResult(folder.path, folder.path / "shards", folder.path / "splits", len(ingested_rows), problems)
