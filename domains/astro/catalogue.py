"""The ASAS-SN variable-star catalogue and the LAMOST spectrum index: reading, AstroM3's feature
transforms and cross-matching.

- :func:`read_asassn_catalogue`: the catalogue CSV with Gaia EDR3, 2MASS and WISE columns; every feature
  column must hold numbers (a non-numeric cell is refused, naming the file, column and row).
- :func:`read_spectrum_index`: the table that links Gaia source ids to spectrum files (``lamost_spec.csv``).
- :func:`catalogue_features`: the AstroM3 transforms (absolute magnitudes, cos l / sin b, log10 period)
  giving the 34 metadata + 4 photometric columns.
- :func:`crossmatch_on_gaia_id` / :func:`crossmatch_on_sky` join tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import astropy.units as u
import numpy as np
import pandas as pd

from domains.astro.input_errors import AstroInputError

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


def _not_utf8(error: UnicodeDecodeError) -> str:
    return f"not UTF-8 text (byte {error.start}: {error.reason}); save the table as UTF-8 CSV"


def read_asassn_catalogue(path: str | Path) -> pd.DataFrame:
    """Read the ASAS-SN variable-star catalogue (CSV) joined with Gaia EDR3, 2MASS and WISE columns.

    Required columns: ``asassn_name, edr3_source_id, variable_type``, the 34 :data:`META_COLUMNS` and
    the 4 :data:`PHOTO_COLUMNS` (raw: period in days, amplitude in mag). ``edr3_source_id`` is read as
    a 64-bit integer (nullable), never as a float that would round 19-digit ids.

    A feature cell that is not a number (e.g. ``abc``) becomes NaN and is described in the extra column
    :data:`NON_NUMERIC_COLUMN` (``column='value'``, empty for clean rows); non-finite numbers (``inf``) are
    read as they are. Ingest reports both kinds of objects one by one and goes on with the rest.

    Raises:
        AstroInputError: unreadable file or missing columns (all of them are listed).
    """
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype={"edr3_source_id": "Int64", "asassn_name": str, "variable_type": str})
    except UnicodeDecodeError as error:
        raise AstroInputError(path, _not_utf8(error)) from None
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise AstroInputError(path, f"unreadable catalogue ({error})") from error
    missing = [c for c in CATALOGUE_ID_COLUMNS + ALL_COLUMNS if c not in frame.columns]
    if missing:
        raise AstroInputError(path, f"catalogue lacks column(s) {missing}")
    return coerce_numeric_columns(frame, path)


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
    except UnicodeDecodeError as error:
        raise AstroInputError(path, _not_utf8(error)) from None
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise AstroInputError(path, f"unreadable spectrum index ({error})") from error
    columns = set(frame.columns)
    if "spec_filename" not in columns or not ("edr3_source_id" in columns or {"ra", "dec"} <= columns):
        raise AstroInputError(
            path, f"spectrum index needs spec_filename and edr3_source_id or ra/dec; has {sorted(columns)}"
        )
    return frame


NON_NUMERIC_COLUMN = "non_numeric_cells"
"""Column :func:`read_asassn_catalogue` adds: the row's feature cells that are not numbers, as
``column='value'`` separated by ``; `` (empty when there are none)."""


def coerce_numeric_columns(
    frame: pd.DataFrame, path: str | Path, columns: tuple[str, ...] = ALL_COLUMNS
) -> pd.DataFrame:
    """The feature columns as floats; cells that are not numbers become NaN and are listed, per row, in
    :data:`NON_NUMERIC_COLUMN` (so ingest can report each object instead of refusing the whole table)."""
    notes: dict[object, list[str]] = {}
    for column in columns:
        if pd.api.types.is_numeric_dtype(frame[column]):
            continue
        values = pd.to_numeric(frame[column], errors="coerce")
        for row in frame.index[values.isna() & frame[column].notna()]:
            notes.setdefault(row, []).append(f"{column}={frame.at[row, column]!r}")
        frame[column] = values
    frame[NON_NUMERIC_COLUMN] = ["; ".join(notes.get(row, [])) for row in frame.index]
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
