"""Light-curve readers: ASAS-SN variable-star database files and generic tables, as arrays with units.

- :func:`read_asassn_lightcurve` / :func:`read_asassn_lightcurve_arrays`: ASAS-SN ``.dat`` files, V band
  (``HJD MAG MAG_ERR FLUX FLUX_ERR``) and g band (``HJD camera mag mag_err flux flux_err FWHM IMAGE``).
- :func:`read_lightcurve_table`: any CSV / ECSV / FITS table, through a :class:`LightCurveColumns` mapping.

Each raises :class:`~domains.astro.input_errors.AstroInputError` naming the file and the problem. Times
are heliocentric Julian dates in days, fluxes in mJy.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import astropy.units as u
import numpy as np
import pandas as pd
from astropy.table import Table
from astropy.time import Time
from astropy.timeseries import TimeSeries

from domains.astro.input_errors import AstroInputError

_VBAND_COLUMNS = ("HJD", "MAG", "MAG_ERR", "FLUX", "FLUX_ERR")
_GBAND_COLUMNS = ("HJD", "camera", "mag", "mag_err", "flux", "flux_err", "FWHM", "IMAGE")
_GBAND_NUMERIC = ("HJD", "mag", "mag_err", "flux", "flux_err", "FWHM")


@dataclass
class LightCurveArrays:
    """A light curve as plain arrays (the cheap form bulk ingest uses; see :func:`read_asassn_lightcurve`).

    Attributes:
        hjd_days: Heliocentric Julian dates (days).
        flux_mjy: Flux in mJy.
        flux_err_mjy: Flux uncertainty in mJy.
        mag: Magnitude (NaN for upper limits), or None when the source has none.
        mag_err: Magnitude uncertainty (NaN for upper limits), or None.
        meta: ``source``, ``band``, ``n_upper_limits``, ``n_dropped_nonfinite`` (and ``cameras`` for g band).
    """

    hjd_days: np.ndarray
    flux_mjy: np.ndarray
    flux_err_mjy: np.ndarray
    mag: np.ndarray | None
    mag_err: np.ndarray | None
    meta: dict[str, Any]

    def to_timeseries(self) -> TimeSeries:
        """The same light curve as an astropy TimeSeries with units (time as JD, HJD in ``meta``)."""
        data: dict[str, Any] = {"flux": self.flux_mjy * u.mJy, "flux_err": self.flux_err_mjy * u.mJy}
        if self.mag is not None and self.mag_err is not None:
            data["mag"] = self.mag * u.mag
            data["mag_err"] = self.mag_err * u.mag
        # HJD is a heliocentric Julian date on the UTC scale; astropy has no "heliocentric" flag, so the
        # reference point is recorded in meta instead of silently converting.
        series = TimeSeries(time=Time(self.hjd_days, format="jd", scale="utc"), data=data)
        series.meta.update(self.meta)
        series.meta.setdefault("time_reference", "HJD")
        return series


def _finite_rows(
    hjd_days: np.ndarray,
    flux_mjy: np.ndarray,
    flux_err_mjy: np.ndarray,
    mag: np.ndarray | None,
    mag_err: np.ndarray | None,
    meta: dict[str, Any],
    source: str | Path,
) -> LightCurveArrays:
    for name, values in (("time", hjd_days), ("flux", flux_mjy), ("flux error", flux_err_mjy)):
        if len(values) and np.isnan(values).all():
            raise AstroInputError(source, f"NaN-only {name} column")
    keep = np.isfinite(hjd_days) & np.isfinite(flux_mjy) & np.isfinite(flux_err_mjy)
    meta["n_dropped_nonfinite"] = int((~keep).sum())
    if not keep.any():
        raise AstroInputError(source, "empty light curve (no row with finite time, flux and flux error)")
    return LightCurveArrays(
        hjd_days=hjd_days[keep],
        flux_mjy=flux_mjy[keep],
        flux_err_mjy=flux_err_mjy[keep],
        mag=None if mag is None else mag[keep],
        mag_err=None if mag_err is None else mag_err[keep],
        meta=meta,
    )


def read_asassn_lightcurve(path: str | Path, band: Literal["auto", "V", "g"] = "auto") -> TimeSeries:
    """Read an ASAS-SN variable-star database light curve (``vardb_files/<name>.dat``).

    The file has two header lines, then whitespace-separated rows: ``HJD MAG MAG_ERR FLUX FLUX_ERR``
    (V band) or ``HJD camera mag mag_err flux flux_err FWHM IMAGE`` (g band). Upper limits written as
    ``>17.5`` become NaN magnitudes (their fluxes are kept, as AstroM3 does); rows whose time or flux is
    not finite are dropped and counted in ``meta["n_dropped_nonfinite"]``.

    Args:
        path: The ``.dat`` file.
        band: ``"V"``, ``"g"``, or ``"auto"`` to decide from the number of columns.

    Returns:
        A TimeSeries with ``time`` (HJD, JD format), ``flux`` and ``flux_err`` in mJy, ``mag`` and
        ``mag_err`` in mag; ``meta`` holds ``source``, ``band``, ``n_upper_limits``.

    Raises:
        AstroInputError: unreadable file, wrong column count, or no usable row.
    """
    return read_asassn_lightcurve_arrays(path, band).to_timeseries()


def read_asassn_lightcurve_arrays(path: str | Path, band: Literal["auto", "V", "g"] = "auto") -> LightCurveArrays:
    """Read an ASAS-SN ``.dat`` light curve into plain arrays (no TimeSeries: ~5× cheaper for bulk ingest).

    Same parsing, checks and errors as :func:`read_asassn_lightcurve`.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise AstroInputError(path, f"cannot read file ({error.strerror or error})") from error
    return parse_asassn_lightcurve(text, source=path, band=band)


def parse_asassn_lightcurve(
    text: str, source: str | Path, band: Literal["auto", "V", "g"] = "auto"
) -> LightCurveArrays:
    """Parse the text of an ASAS-SN ``.dat`` light curve; see :func:`read_asassn_lightcurve`."""
    lines = text.splitlines()
    if len(lines) < 3:
        raise AstroInputError(source, "empty light curve (expected 2 header lines and at least one data row)")
    n_columns = len(lines[2].split())
    if band == "auto":
        band = {5: "V", 8: "g"}.get(n_columns, "")  # type: ignore[assignment]
        if not band:
            raise AstroInputError(source, f"expected 5 (V band) or 8 (g band) columns, found {n_columns}")
    expected = _VBAND_COLUMNS if band == "V" else _GBAND_COLUMNS
    if n_columns != len(expected):
        raise AstroInputError(source, f"{band}-band file must have {len(expected)} columns, found {n_columns}")
    body = "\n".join(lines[2:])
    n_upper_limits = body.count(">")
    meta: dict[str, Any] = {"source": str(source), "band": band, "n_upper_limits": n_upper_limits}
    numeric_names = ("HJD", "MAG", "MAG_ERR", "FLUX", "FLUX_ERR") if band == "V" else _GBAND_NUMERIC
    # Upper limits (">17.5") are rewritten as negative magnitudes, which no real measurement has, so that
    # every used column parses as a float in the C reader; they become NaN below.
    parse_body = body.replace(">", "-") if n_upper_limits else body
    try:
        if band == "V":
            table = np.loadtxt(io.StringIO(parse_body), dtype=np.float64, ndmin=2)
            if table.shape[1] != 5:
                raise ValueError(f"found {table.shape[1]} columns")
            columns = dict(zip(numeric_names, table.T))
        else:
            frame = pd.read_csv(
                io.StringIO(parse_body),
                sep=r"\s+",
                header=None,
                names=list(expected),
                dtype={name: np.float64 for name in numeric_names} | {"camera": object, "IMAGE": object},
            )
            columns = {name: frame[name].to_numpy() for name in numeric_names}
            meta["cameras"] = sorted(set(frame["camera"].astype(str)))
    except ValueError:
        columns = _coerce_columns(body, expected, numeric_names, source)
        if band == "g":
            meta["cameras"] = sorted(set(columns.pop("camera")))
    hjd_days, mag, mag_err, flux, flux_err = (columns[name] for name in numeric_names[:5])
    if np.isnan(hjd_days).all():
        raise AstroInputError(source, "unparseable light curve: no numeric HJD value")
    upper_limit = mag < 0
    mag = np.where(upper_limit, np.nan, mag)
    mag_err = np.where(upper_limit, np.nan, mag_err)
    return _finite_rows(hjd_days, flux, flux_err, mag, mag_err, meta, source)


def _coerce_columns(
    body: str, expected: tuple[str, ...], numeric_names: tuple[str, ...], source: str | Path
) -> dict[str, np.ndarray]:
    """Slow path for files with stray text in numeric cells: everything read as text, then coerced."""
    try:
        frame = pd.read_csv(io.StringIO(body), sep=r"\s+", header=None, dtype=object, comment="#")
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise AstroInputError(source, f"unparseable light-curve rows ({error})") from error
    if frame.shape[1] != len(expected):
        raise AstroInputError(source, f"rows have {frame.shape[1]} columns, expected {len(expected)}")
    frame.columns = list(expected)
    columns = {}
    for name in numeric_names:
        text = frame[name].astype(str)
        values = pd.to_numeric(text.str.lstrip(">"), errors="coerce").to_numpy(dtype=np.float64)
        columns[name] = np.where(text.str.startswith(">").to_numpy(), -values, values)
    if "camera" in frame:
        columns["camera"] = frame["camera"].astype(str).to_numpy()
    return columns


@dataclass(frozen=True)
class LightCurveColumns:
    """Which columns of a generic light-curve table hold time, flux (or magnitude) and their errors."""

    time: str = "time"
    """Time column (plain numbers in time_format/time_scale, or an astropy Time column)."""
    flux: str = "flux"
    """Flux column (its unit, else flux_unit); when the table has none, the magnitude columns are used."""
    flux_err: str = "flux_err"
    """Flux-uncertainty column (same unit as the flux)."""
    time_format: str = "jd"
    """astropy Time format of plain-number times: jd, mjd, ..."""
    time_scale: str = "utc"
    """astropy Time scale of plain-number times: utc, tdb, ..."""
    flux_unit: str = "mJy"
    """Unit assumed for flux columns without one ('' = relative flux)."""
    mag: str | None = None
    """Magnitude column, used when the table has no flux column."""
    mag_err: str | None = None
    """Magnitude-uncertainty column."""


def read_lightcurve_table(
    path: str | Path, columns: LightCurveColumns | None = None, format: str | None = None
) -> TimeSeries:
    """Read a light curve from a CSV, ECSV, FITS or whitespace-text table with a column mapping.

    Args:
        path: Table file; the format is guessed from the suffix (``.csv``, ``.ecsv``, ``.fits``/``.fit``,
            ``.txt``/``.dat`` as whitespace-separated text) unless ``format`` (an astropy ``Table.read``
            format) is given.
        columns: The column mapping (defaults: ``time``, ``flux``, ``flux_err``, JD, mJy).
        format: Explicit astropy table format, e.g. ``"ascii.csv"``.

    Returns:
        A TimeSeries like :func:`read_asassn_lightcurve` returns (flux in mJy when the unit allows,
        else relative flux from magnitudes: ``10**(-0.4 mag)``).

    Raises:
        AstroInputError: unreadable table, missing columns, or no usable row.
    """
    path = Path(path)
    columns = columns or LightCurveColumns()
    if format is None:
        suffix = path.suffix.lower()
        format = {
            ".csv": "ascii.csv",
            ".ecsv": "ascii.ecsv",
            ".fits": "fits",
            ".fit": "fits",
            ".txt": "ascii",
            ".dat": "ascii",
        }.get(suffix)
        if format is None:
            raise AstroInputError(path, f"cannot guess the table format from suffix {suffix!r}; pass format=")
    try:
        table = Table.read(path, format=format)
    except Exception as error:  # astropy raises many types for malformed tables
        raise AstroInputError(path, f"unparseable table ({type(error).__name__}: {error})") from error
    names = set(table.colnames)
    use_mag = columns.flux not in names and columns.mag is not None
    needed = [columns.time] + ([columns.mag, columns.mag_err] if use_mag else [columns.flux, columns.flux_err])
    missing = [name for name in needed if name is None or name not in names]
    if missing:
        raise AstroInputError(path, f"missing column(s) {missing}; table has {sorted(names)}")
    time_column = table[columns.time]
    if isinstance(time_column, Time):
        hjd_days = np.asarray(time_column.jd, dtype=np.float64)
    else:
        values = np.ma.filled(np.asarray(time_column, dtype=np.float64), np.nan)
        hjd_days = Time(values, format=columns.time_format, scale=columns.time_scale).jd

    def in_unit(name: str, fallback: str) -> tuple[np.ndarray, u.UnitBase]:
        column = table[name]
        unit = column.unit if column.unit is not None else u.Unit(fallback)
        values = np.ma.filled(np.ma.asarray(column, dtype=np.float64), np.nan)
        return values, unit

    mag = mag_err = None
    if use_mag:
        mag, _ = in_unit(columns.mag, "mag")
        mag_err, _ = in_unit(columns.mag_err, "mag")
        flux = 10.0 ** (-0.4 * mag)
        flux_err = flux * mag_err / 1.0857362047581294  # 2.5 / ln 10
        flux_unit: u.UnitBase = u.dimensionless_unscaled
    else:
        flux, flux_unit = in_unit(columns.flux, columns.flux_unit)
        flux_err, err_unit = in_unit(columns.flux_err, columns.flux_unit)
        if flux_unit.is_equivalent(u.mJy):
            flux = (flux * flux_unit).to_value(u.mJy)
            flux_err = (flux_err * err_unit).to_value(u.mJy)
            flux_unit = u.mJy
    if np.isnan(flux).all():
        raise AstroInputError(path, "NaN-only flux column")
    meta = {"source": str(path), "band": "unknown"}
    series = _finite_rows(hjd_days, flux, flux_err, mag, mag_err, meta, path).to_timeseries()
    if flux_unit != u.mJy:
        series["flux"] = series["flux"].value * flux_unit
        series["flux_err"] = series["flux_err"].value * flux_unit
    return series
