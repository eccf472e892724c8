"""Raw astronomy formats → validated arrays with units, and the trimodal sample the model consumes.

Readers (each raises :class:`AstroInputError` naming the file and the problem):

- :func:`read_asassn_lightcurve`: ASAS-SN variable-star database ``.dat`` files, V band
  (``HJD MAG MAG_ERR FLUX FLUX_ERR``) and g band (``HJD camera mag mag_err flux flux_err FWHM IMAGE``).
- :func:`read_lightcurve_table`: any CSV / ECSV / FITS table, through a :class:`LightCurveColumns` mapping.
- :func:`read_lamost_spectrum`: LAMOST low-resolution spectra in both FITS layouts.
- :func:`read_asassn_catalogue`: the ASAS-SN variable-star catalogue with Gaia EDR3, 2MASS and WISE columns.
- :func:`read_spectrum_index`: the table that links Gaia source ids to spectrum files (``lamost_spec.csv``).

Then :func:`catalogue_features` applies the AstroM3 transforms (absolute magnitudes, cos l / sin b,
log10 period) to give the 34 metadata + 4 photometric columns, :func:`crossmatch_on_gaia_id` /
:func:`crossmatch_on_sky` join tables, and :func:`estimate_period` fills missing periods.

:class:`AstroTrimodalDataset` turns ingested objects (see ``domains.astro.ingest``) into the samples the
towers take; the contract is written down in ``domains/astro/README_data.md``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import astropy.units as u
import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time
from astropy.timeseries import TimeSeries

#: AstroM3's ten classes, in the paper's order (most to least frequent in the ASAS-SN × LAMOST set).
ASTROM3_CLASSES: tuple[str, ...] = ("EW", "SR", "EA", "RRAB", "EB", "ROT", "RRC", "HADS", "M", "DSCT")

#: The 34 metadata features, in the order the metadata tower expects them.
META_COLUMNS: tuple[str, ...] = (
    "mean_vmag",
    "phot_g_mean_mag",
    "e_phot_g_mean_mag",
    "phot_bp_mean_mag",
    "e_phot_bp_mean_mag",
    "phot_rp_mean_mag",
    "e_phot_rp_mean_mag",
    "bp_rp",
    "parallax",
    "parallax_error",
    "parallax_over_error",
    "pmra",
    "pmra_error",
    "pmdec",
    "pmdec_error",
    "j_mag",
    "e_j_mag",
    "h_mag",
    "e_h_mag",
    "k_mag",
    "e_k_mag",
    "w1_mag",
    "e_w1_mag",
    "w2_mag",
    "e_w2_mag",
    "w3_mag",
    "w4_mag",
    "j_k",
    "w1_w2",
    "w3_w4",
    "pm",
    "ruwe",
    "l",
    "b",
)

#: The 4 photometric features tiled along every light-curve step (period is log10-transformed).
PHOTO_COLUMNS: tuple[str, ...] = ("amplitude", "period", "lksl_statistic", "rfr_score")

#: All 38 standardized columns: metadata then photometric.
ALL_COLUMNS: tuple[str, ...] = META_COLUMNS + PHOTO_COLUMNS

#: Apparent magnitudes turned into absolute ones with M = m − 10 + 5·log10(parallax / mas).
ABSOLUTE_MAGNITUDE_COLUMNS: tuple[str, ...] = (
    "mean_vmag",
    "phot_g_mean_mag",
    "phot_bp_mean_mag",
    "phot_rp_mean_mag",
    "j_mag",
    "h_mag",
    "k_mag",
    "w1_mag",
    "w2_mag",
    "w3_mag",
    "w4_mag",
)

#: Catalogue columns every reader call requires besides the 38 features.
CATALOGUE_ID_COLUMNS: tuple[str, ...] = ("asassn_name", "edr3_source_id", "variable_type")

#: Eclipsing classes: their Lomb–Scargle period search uses a two-term model (one term peaks at P/2).
ECLIPSING_CLASSES: frozenset[str] = frozenset({"EW", "EA", "EB", "ELL"})
#: Short-period pulsators: their period search goes up to tens of cycles per day.
SHORT_PERIOD_CLASSES: frozenset[str] = frozenset({"DSCT", "HADS", "SXPHE"})

_VBAND_COLUMNS = ("HJD", "MAG", "MAG_ERR", "FLUX", "FLUX_ERR")
_GBAND_COLUMNS = ("HJD", "camera", "mag", "mag_err", "flux", "flux_err", "FWHM", "IMAGE")
_GBAND_NUMERIC = ("HJD", "mag", "mag_err", "flux", "flux_err", "FWHM")


class AstroInputError(ValueError):
    """A raw astronomy file (or catalogue row) that cannot be used; the message names the source."""

    def __init__(self, source: str | Path, problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{source}: {problem}")


# --------------------------------------------------------------------------------------------------
# Light curves
# --------------------------------------------------------------------------------------------------


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
    """Which columns of a generic light-curve table hold time, flux and flux error.

    Attributes:
        time: Time column (numbers in ``time_format``/``time_scale``, or an astropy Time column).
        flux: Flux column; if the table gives no unit, ``flux_unit`` is assumed.
        flux_err: Flux-uncertainty column (same unit as ``flux``).
        time_format: astropy Time format of plain-number times (``"jd"``, ``"mjd"``...).
        time_scale: astropy Time scale of plain-number times.
        flux_unit: Unit assumed for unitless flux columns (converted to mJy when it is a spectral flux
            density; ``""`` means relative flux, kept dimensionless).
        mag: Optional magnitude column, used for flux when ``flux`` is absent from the table.
        mag_err: Optional magnitude-uncertainty column.
    """

    time: str = "time"
    flux: str = "flux"
    flux_err: str = "flux_err"
    time_format: str = "jd"
    time_scale: str = "utc"
    flux_unit: str = "mJy"
    mag: str | None = None
    mag_err: str | None = None


def read_lightcurve_table(
    path: str | Path, columns: LightCurveColumns | None = None, format: str | None = None
) -> TimeSeries:
    """Read a light curve from a CSV, ECSV or FITS table with a column mapping.

    Args:
        path: Table file; the format is guessed from the suffix (``.csv``, ``.ecsv``, ``.fits``/``.fit``)
            unless ``format`` (an astropy ``Table.read`` format) is given.
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
        format = {".csv": "ascii.csv", ".ecsv": "ascii.ecsv", ".fits": "fits", ".fit": "fits"}.get(suffix)
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


# --------------------------------------------------------------------------------------------------
# Spectra
# --------------------------------------------------------------------------------------------------


@dataclass
class LamostSpectrum:
    """One LAMOST low-resolution spectrum.

    Attributes:
        wavelength: Vacuum, heliocentric wavelengths (Quantity in Å), increasing.
        flux: Flux per pixel (LAMOST's relative flux calibration; unit from ``BUNIT`` when given).
        ivar: Inverse variance of ``flux`` per pixel (0 marks a bad pixel).
        layout: ``"image"`` (primary image HDU, older DRs) or ``"coadd"`` (``COADD`` binary table).
        header: The primary header (OBSID, DESIG, RA, DEC, Z...).
        source: The file it came from.
    """

    wavelength: u.Quantity
    flux: np.ndarray
    ivar: np.ndarray
    layout: str
    header: fits.Header = field(repr=False)
    source: str = ""

    @property
    def sigma(self) -> np.ndarray:
        """Per-pixel flux uncertainty 1/√IVAR where IVAR > 0, NaN where the pixel is flagged bad."""
        sigma = np.full_like(self.flux, np.nan, dtype=np.float64)
        good = self.ivar > 0
        sigma[good] = 1.0 / np.sqrt(self.ivar[good])
        return sigma


def read_lamost_spectrum(path: str | Path) -> LamostSpectrum:
    """Read a LAMOST low-resolution spectrum from either FITS layout.

    Layout ``image`` (older data releases): the primary HDU is a 2-D image whose rows are flux, inverse
    variance, wavelength, and-mask, or-mask; the wavelength grid is log-linear,
    ``10**(COEFF0 + COEFF1 · arange(NAXIS1))`` Å, from the header. Layout ``coadd`` (newer releases): an
    empty primary header and a binary table (``COADD``) with one row of array columns ``FLUX, IVAR,
    WAVELENGTH, ANDMASK, ORMASK, NORMALIZATION``.

    Raises:
        AstroInputError: unreadable file, neither layout, or NaN-only flux.
    """
    path = Path(path)
    try:
        with fits.open(path, memmap=False) as hdus:
            primary = hdus[0]
            header = primary.header.copy()
            if primary.data is not None and primary.data.ndim == 2:
                layout = "image"
                data = np.asarray(primary.data, dtype=np.float64)
                if data.shape[0] < 2:
                    raise AstroInputError(path, f"image layout needs flux and ivar rows, found shape {data.shape}")
                if "COEFF0" not in header or "COEFF1" not in header:
                    raise AstroInputError(path, "image layout without COEFF0/COEFF1 wavelength keywords")
                n_pixels = int(header.get("NAXIS1", data.shape[1]))
                wavelength = 10.0 ** (header["COEFF0"] + header["COEFF1"] * np.arange(n_pixels))
                flux, ivar = data[0, :n_pixels], data[1, :n_pixels]
            else:
                tables = [h for h in hdus[1:] if isinstance(h, fits.BinTableHDU)]
                named = [h for h in tables if h.name.upper() == "COADD"]
                if not (named or tables):
                    raise AstroInputError(path, "neither a 2-D primary image nor a COADD binary table")
                table = (named or tables)[0]
                names = {name.upper(): name for name in table.columns.names}
                missing = [c for c in ("FLUX", "IVAR", "WAVELENGTH") if c not in names]
                if missing or len(table.data) == 0:
                    raise AstroInputError(path, f"COADD table lacks {missing or 'rows'}")
                layout = "coadd"
                row = table.data[0]
                flux = np.asarray(row[names["FLUX"]], dtype=np.float64)
                ivar = np.asarray(row[names["IVAR"]], dtype=np.float64)
                wavelength = np.asarray(row[names["WAVELENGTH"]], dtype=np.float64)
    except AstroInputError:
        raise
    except (OSError, ValueError, TypeError, KeyError, IndexError, fits.verify.VerifyError) as error:
        raise AstroInputError(path, f"unreadable FITS ({type(error).__name__}: {error})") from error
    if not (flux.shape == ivar.shape == wavelength.shape):
        raise AstroInputError(
            path, f"flux/ivar/wavelength lengths differ: {flux.shape}/{ivar.shape}/{wavelength.shape}"
        )
    if not np.isfinite(flux).any():
        raise AstroInputError(path, "NaN-only flux")
    order = np.argsort(wavelength, kind="stable")
    ivar = np.where(np.isfinite(ivar), ivar, 0.0)
    return LamostSpectrum(
        wavelength=wavelength[order] * u.AA,
        flux=flux[order],
        ivar=ivar[order],
        layout=layout,
        header=header,
        source=str(path),
    )


# --------------------------------------------------------------------------------------------------
# Catalogues and cross-matching
# --------------------------------------------------------------------------------------------------


def read_asassn_catalogue(path: str | Path) -> pd.DataFrame:
    """Read the ASAS-SN variable-star catalogue (CSV) joined with Gaia EDR3, 2MASS and WISE columns.

    Required columns: ``asassn_name, edr3_source_id, variable_type``, the 34 :data:`META_COLUMNS` and
    the 4 :data:`PHOTO_COLUMNS` (raw: period in days, amplitude in mag). ``edr3_source_id`` is read as
    a 64-bit integer (nullable), never as a float that would round 19-digit ids.

    Raises:
        AstroInputError: unreadable file or missing columns (all of them are listed).
    """
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype={"edr3_source_id": "Int64", "asassn_name": str, "variable_type": str})
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise AstroInputError(path, f"unreadable catalogue ({error})") from error
    missing = [c for c in CATALOGUE_ID_COLUMNS + ALL_COLUMNS if c not in frame.columns]
    if missing:
        raise AstroInputError(path, f"catalogue lacks column(s) {missing}")
    return frame


def read_spectrum_index(path: str | Path) -> pd.DataFrame:
    """Read the table linking stars to spectrum files (``lamost_spec.csv``).

    Required: ``spec_filename`` and either ``edr3_source_id`` (Gaia cross-match) or ``ra``/``dec`` in
    degrees (sky cross-match); ids are read as exact 64-bit integers.

    Raises:
        AstroInputError: unreadable file or missing columns.
    """
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype={"edr3_source_id": "Int64", "spec_filename": str})
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise AstroInputError(path, f"unreadable spectrum index ({error})") from error
    columns = set(frame.columns)
    if "spec_filename" not in columns or not ("edr3_source_id" in columns or {"ra", "dec"} <= columns):
        raise AstroInputError(
            path, f"spectrum index needs spec_filename and edr3_source_id or ra/dec; has {sorted(columns)}"
        )
    return frame


def catalogue_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Apply AstroM3's feature transforms; returns the 38 :data:`ALL_COLUMNS` (not yet standardized).

    - Absolute magnitudes for :data:`ABSOLUTE_MAGNITUDE_COLUMNS`: ``M = m − 10 + 5·log10(parallax/mas)``,
      with parallax ≤ 0 replaced by 1 mas (the paper's choice; it leaves those magnitudes apparent − 10).
    - ``l → cos(l)``, ``b → sin(b)`` (input in degrees).
    - ``period → log10(period / day)``.
    """
    features = frame.loc[:, list(ALL_COLUMNS)].astype(np.float64).copy()
    parallax_mas = features["parallax"].to_numpy()
    parallax_mas = np.where(parallax_mas > 0, parallax_mas, 1.0)
    distance_modulus_term = 5.0 * np.log10(parallax_mas) - 10.0
    for column in ABSOLUTE_MAGNITUDE_COLUMNS:
        features[column] = features[column] + distance_modulus_term
    features["l"] = np.cos(np.deg2rad(features["l"]))
    features["b"] = np.sin(np.deg2rad(features["b"]))
    with np.errstate(divide="ignore", invalid="ignore"):
        features["period"] = np.log10(features["period"])
    return features


def crossmatch_on_gaia_id(
    left: pd.DataFrame, right: pd.DataFrame, on: str = "edr3_source_id", how: Literal["inner", "left"] = "inner"
) -> pd.DataFrame:
    """Join two tables on the Gaia source id, keeping the first row of each id on the right side."""
    deduped = right.dropna(subset=[on]).drop_duplicates(subset=[on], keep="first")
    return left.merge(deduped, on=on, how=how, suffixes=("", "_right"))


def crossmatch_on_sky(
    left: pd.DataFrame,
    right: pd.DataFrame,
    max_separation_arcsec: float = 3.0,
    left_coordinates: tuple[str, str] = ("ra", "dec"),
    right_coordinates: tuple[str, str] = ("ra", "dec"),
) -> pd.DataFrame:
    """Match each left row to its nearest right row on the sky, keeping pairs closer than the cut.

    Uses :meth:`astropy.coordinates.SkyCoord.match_to_catalog_sky` (ICRS degrees in both tables).

    Args:
        left: Table with right ascension / declination columns in degrees.
        right: Table to match against.
        max_separation_arcsec: Largest accepted separation (AstroM3-style matching uses ≈3″).
        left_coordinates: Names of ``left``'s (ra, dec) columns.
        right_coordinates: Names of ``right``'s (ra, dec) columns.

    Returns:
        Matched left rows with the right columns appended (``_right`` suffix on clashes) and the
        separation in ``separation_arcsec``.
    """
    from astropy.coordinates import SkyCoord

    if len(left) == 0 or len(right) == 0:
        return left.iloc[0:0].assign(separation_arcsec=pd.Series(dtype=float))
    left_sky = SkyCoord(left[left_coordinates[0]].to_numpy() * u.deg, left[left_coordinates[1]].to_numpy() * u.deg)
    right_sky = SkyCoord(right[right_coordinates[0]].to_numpy() * u.deg, right[right_coordinates[1]].to_numpy() * u.deg)
    index, separation, _ = left_sky.match_to_catalog_sky(right_sky)
    separation_arcsec = separation.to_value(u.arcsec)
    keep = separation_arcsec < max_separation_arcsec
    matched_right = right.iloc[index[keep]].reset_index(drop=True)
    matched_left = left.loc[keep].reset_index(drop=True)
    clashes = set(matched_left.columns) & set(matched_right.columns)
    matched_right = matched_right.rename(columns={c: f"{c}_right" for c in clashes})
    result = pd.concat([matched_left, matched_right], axis=1)
    result["separation_arcsec"] = separation_arcsec[keep]
    return result


@dataclass(frozen=True)
class PeriodEstimate:
    """A Lomb–Scargle period estimate.

    Attributes:
        period_days: Best period in days.
        power: Periodogram power at the peak.
        false_alarm_probability: Baluev false-alarm probability of the peak (single-term search only,
            NaN for multi-term models where astropy does not provide it).
        nterms: Number of Fourier terms of the model.
    """

    period_days: float
    power: float
    false_alarm_probability: float
    nterms: int


def estimate_period(
    time_days: np.ndarray,
    values: np.ndarray,
    errors: np.ndarray | None = None,
    variable_type: str | None = None,
    minimum_frequency_per_day: float | None = None,
    maximum_frequency_per_day: float | None = None,
    samples_per_peak: int = 5,
) -> PeriodEstimate:
    """Estimate a period with :class:`astropy.timeseries.LombScargle`, tuned by variable class.

    Eclipsing binaries (EW/EA/EB) use ``nterms=2`` because a one-term periodogram peaks at half their
    period; δ Scuti/HADS search up to 50 cycles/day (their periods are < 0.3 d); other classes up to
    10 cycles/day. The lowest frequency is 2 cycles over the time span. The periodogram uses astropy's
    fast methods (``fast`` for one term, ``fastchi2`` for more): a multi-year survey light curve needs
    ~10⁵ trial frequencies.

    Raises:
        ValueError: fewer than 5 finite points.
    """
    from astropy.timeseries import LombScargle

    time_days = np.asarray(time_days, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(time_days) & np.isfinite(values)
    if errors is not None:
        errors = np.asarray(errors, dtype=np.float64)
        finite &= np.isfinite(errors) & (errors > 0)
    if finite.sum() < 5:
        raise ValueError(f"need at least 5 finite points to estimate a period, got {int(finite.sum())}")
    t, y = time_days[finite], values[finite]
    dy = errors[finite] if errors is not None else None
    span = float(t.max() - t.min()) or 1.0
    nterms = 2 if variable_type in ECLIPSING_CLASSES else 1
    if maximum_frequency_per_day is None:
        maximum_frequency_per_day = 50.0 if variable_type in SHORT_PERIOD_CLASSES else 10.0
    if minimum_frequency_per_day is None:
        minimum_frequency_per_day = 2.0 / span
    periodogram = LombScargle(t, y, dy, nterms=nterms)
    frequency, power = periodogram.autopower(
        minimum_frequency=minimum_frequency_per_day,
        maximum_frequency=maximum_frequency_per_day,
        samples_per_peak=samples_per_peak,
        method="fast" if nterms == 1 else "fastchi2",
    )
    best = int(np.argmax(power))
    fap = float(periodogram.false_alarm_probability(power[best])) if nterms == 1 else float("nan")
    return PeriodEstimate(
        period_days=float(1.0 / frequency[best]), power=float(power[best]), false_alarm_probability=fap, nterms=nterms
    )


# --------------------------------------------------------------------------------------------------
# The trimodal sample
# --------------------------------------------------------------------------------------------------


@dataclass
class IngestedObject:
    """One object after ingest, before split-dependent scaling and windowing.

    Attributes:
        sample_id: Stable id (the Gaia EDR3 source id as a string).
        label: Class name (e.g. ``"RRAB"``).
        photometry: ``(N, 3)`` float32: time scaled to [0, 1], MAD-normalized flux and flux error.
        log10_mad_flux: log10 of the flux MAD (flux in mJy) used for the normalization.
        delta_t_years: Time span of the light curve in years.
        spectrum: ``(3, 2575)`` float32 preprocessed spectrum (see ``preprocessing.prepare_spectrum``).
        features: ``(38,)`` float64 transformed, not yet standardized :data:`ALL_COLUMNS`.
    """

    sample_id: str
    label: str
    photometry: np.ndarray
    log10_mad_flux: float
    delta_t_years: float
    spectrum: np.ndarray
    features: np.ndarray


def encode_shard_sample(obj: IngestedObject, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Webdataset sample (for ``shared.shards.ShardWriter.write``) holding one ingested object."""
    info = {
        "sample_id": obj.sample_id,
        "label": obj.label,
        "log10_mad_flux": float(obj.log10_mad_flux),
        "delta_t_years": float(obj.delta_t_years),
        **dict(extra or {}),
    }
    return {
        "__key__": obj.sample_id,
        "photometry.npy": np.ascontiguousarray(obj.photometry, dtype=np.float32),
        "spectra.npy": np.ascontiguousarray(obj.spectrum, dtype=np.float32),
        "features.npy": np.ascontiguousarray(obj.features, dtype=np.float64),
        "json": info,
    }


def decode_shard_sample(raw: Mapping[str, Any]) -> IngestedObject:
    """Inverse of :func:`encode_shard_sample` for a raw webdataset sample (values are bytes)."""

    def array(key: str) -> np.ndarray:
        value = raw[key]
        return value if isinstance(value, np.ndarray) else np.load(io.BytesIO(value), allow_pickle=False)

    info = raw["json"]
    if isinstance(info, (bytes, bytearray, str)):
        info = json.loads(info)
    return IngestedObject(
        sample_id=str(info["sample_id"]),
        label=str(info["label"]),
        photometry=array("photometry.npy"),
        log10_mad_flux=float(info["log10_mad_flux"]),
        delta_t_years=float(info["delta_t_years"]),
        spectrum=array("spectra.npy"),
        features=array("features.npy"),
    )


def read_ingested_objects(shard_dir: str | Path) -> list[IngestedObject]:
    """Read every object from the ``*.tar`` shards an ingest wrote (in shard and key order)."""
    import webdataset as wds

    shard_dir = Path(shard_dir)
    shards = sorted(str(p) for p in shard_dir.glob("*.tar"))
    if not shards:
        raise AstroInputError(shard_dir, "no .tar shards found (run `python -m domains.astro.ingest` first)")
    dataset = wds.WebDataset(shards, shardshuffle=False, empty_check=False)
    return [decode_shard_sample(sample) for sample in dataset]


class AstroTrimodalDataset:
    """Map-style torch dataset of AstroM3 samples for one split.

    Each item is ``{"photometry": (T, 9) float32, "photometry_mask": (T,) bool, "spectra": (3, 2575)
    float32, "metadata": (34,) float32, "label": int64, "sample_id": str}`` as torch tensors (the
    sample id stays a string). The photometry channels are ``t, flux, flux_err, amplitude,
    log10(period), lksl_statistic, rfr_score, log10(MAD), delta_t`` (the 4 catalogue features
    standardized with the split's train statistics); padded steps are all zero with mask ``False``.

    Args:
        objects: Ingested objects (e.g. from :func:`read_ingested_objects`).
        info: The split's :class:`~domains.astro.preprocessing.SplitInfo` (classes and train mean/std).
        sample_ids: Ids in this split (order kept); ``None`` keeps every object whose label is a class.
        window: ``"random"`` (training: a random ``seq_len`` window, reseeded per epoch and index) or
            ``"centre"`` (evaluation: the centred window).
        seq_len: Steps per light curve (AstroM3: 200).
        seed: Seed of the random windows.
    """

    def __init__(
        self,
        objects: Sequence[IngestedObject],
        info: Any,
        sample_ids: Sequence[str] | None = None,
        window: Literal["random", "centre"] = "centre",
        seq_len: int = 200,
        seed: int = 0,
    ) -> None:
        by_id = {obj.sample_id: obj for obj in objects}
        if sample_ids is None:
            chosen = [obj for obj in objects if obj.label in info.classes]
        else:
            missing = [s for s in sample_ids if s not in by_id]
            if missing:
                raise KeyError(f"{len(missing)} split ids are not among the ingested objects, e.g. {missing[:3]}")
            chosen = [by_id[s] for s in sample_ids]
        if window not in ("random", "centre"):
            raise ValueError(f"window must be 'random' or 'centre', got {window!r}")
        self.objects = chosen
        self.info = info
        self.window = window
        self.seq_len = seq_len
        self.seed = seed
        self.epoch = 0
        self.class_to_index = {name: i for i, name in enumerate(info.classes)}
        self._scaled = info.standardize(np.stack([obj.features for obj in chosen])) if chosen else np.zeros((0, 38))

    def set_epoch(self, epoch: int) -> None:
        """Reseed the random windows for ``epoch`` (so a resumed run sees the same windows)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.objects)

    @property
    def labels(self) -> np.ndarray:
        """Integer labels of all items, in order."""
        return np.array([self.class_to_index[obj.label] for obj in self.objects], dtype=np.int64)

    def __getitem__(self, index: int) -> dict[str, Any]:
        import torch

        from domains.astro.preprocessing import photometry_channels, window_photometry

        obj = self.objects[index]
        scaled = self._scaled[index]
        n_meta = len(META_COLUMNS)
        channels = photometry_channels(obj.photometry, scaled[n_meta:], obj.log10_mad_flux, obj.delta_t_years)
        rng = np.random.default_rng((self.seed, self.epoch, index)) if self.window == "random" else None
        values, mask = window_photometry(channels, self.seq_len, self.window, rng)
        return {
            "photometry": torch.from_numpy(values),
            "photometry_mask": torch.from_numpy(mask),
            "spectra": torch.from_numpy(np.asarray(obj.spectrum, dtype=np.float32)),
            "metadata": torch.from_numpy(scaled[:n_meta].astype(np.float32)),
            "label": torch.tensor(self.class_to_index[obj.label], dtype=torch.int64),
            "sample_id": obj.sample_id,
        }
