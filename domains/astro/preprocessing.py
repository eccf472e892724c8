"""AstroM3 preprocessing, step for step as the paper's code does it, plus the splits and label subsets.

- Light curves: :func:`prepare_lightcurve` (dedupe + sort, MAD normalization, time to [0, 1], span in
  years), :func:`photometry_channels` (the 9 channels per step), :func:`window_photometry` (200-step random
  or centred window, zero padding and mask).
- Spectra: :func:`prepare_spectrum` (3850–9000 Å at 2 Å = 2,575 pixels, 3 channels), with the inverse
  variance handled correctly by default and the paper's treatment available for parity.
- Metadata: :class:`SplitInfo` (z-scores fitted on the train split only, saved as the paper's
  ``info.json``).
- Splits: :func:`split_by_gaia_id` (80/10/10 by unique Gaia id, one of the five seeds),
  :func:`subset_class_cap` and :func:`limit_classes` (the sub50/sub25/sub10 limited-label subsets).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from astropy.stats import median_absolute_deviation

from domains.astro.catalogue import ALL_COLUMNS, META_COLUMNS, PHOTO_COLUMNS
from domains.astro.input_errors import AstroInputError
from shared.atomic_files import write_json_atomically

#: The five split seeds of the paper.
SPLIT_SEEDS: tuple[int, ...] = (42, 66, 0, 12, 123)
#: Limited-label subsets: name → divisor of each split's size (full keeps everything).
SUBSET_FACTORS: dict[str, int] = {"full": 1, "sub50": 2, "sub25": 4, "sub10": 10}
#: Light-curve steps per sample.
SEQ_LEN = 200
#: Spectrum grid: 3850 Å up to (not including) 9000 Å in 2 Å steps → 2,575 pixels.
SPECTRUM_GRID_AA: np.ndarray = np.arange(3850, 9000, 2, dtype=np.float64)
#: Number of photometry channels per step.
PHOTOMETRY_CHANNELS = 9
_DAYS_PER_YEAR = 365.0


@dataclass(frozen=True)
class PreparedLightCurve:
    """A light curve after AstroM3's normalization (before the split-dependent features are added).

    Attributes:
        values: ``(N, 3)`` float32: time scaled to [0, 1], ``(flux − mean)/MAD``, ``flux_err/MAD``.
        log10_mad_flux: log10 of the flux MAD (in the input flux unit, mJy for ASAS-SN).
        delta_t_years: ``(t_max − t_min) / 365`` in years.
        n_duplicates: Exact duplicate rows removed.
    """

    values: np.ndarray
    log10_mad_flux: float
    delta_t_years: float
    n_duplicates: int


def prepare_lightcurve(
    time_days: np.ndarray, flux: np.ndarray, flux_err: np.ndarray, source: str = "light curve"
) -> PreparedLightCurve:
    """Normalize one light curve as AstroM3 does.

    1. Remove duplicate ``(time, flux, flux_err)`` rows and sort by time.
    2. ``flux ← (flux − mean)/MAD``, ``flux_err ← flux_err/MAD`` with
       ``MAD = median(|flux − median(flux)|)`` (unscaled, as ``scipy.stats.median_abs_deviation``; computed
       with astropy's equivalent, which skips scipy's per-call NaN-policy overhead).
    3. ``delta_t = (t_max − t_min)/365`` years; time min-max scaled to [0, 1].

    Args:
        time_days: Observation times in days (HJD).
        flux: Fluxes (any unit; ASAS-SN gives mJy).
        flux_err: Flux uncertainties in the same unit.
        source: Name used in error messages.

    Raises:
        AstroInputError: fewer than 2 distinct finite points, or constant flux (MAD = 0).
    """
    rows = np.column_stack([time_days, flux, flux_err]).astype(np.float64)
    rows = rows[np.isfinite(rows).all(axis=1)]
    if len(rows) == 0:
        raise AstroInputError(source, "empty light curve")
    # np.unique on rows both drops exact duplicates and sorts lexicographically, i.e. by time first.
    unique_rows = np.unique(rows, axis=0)
    n_duplicates = len(rows) - len(unique_rows)
    if len(unique_rows) < 2:
        raise AstroInputError(source, f"light curve has {len(unique_rows)} distinct point(s); need at least 2")
    t, f, e = unique_rows.T
    mad = float(median_absolute_deviation(f))
    if not np.isfinite(mad) or mad <= 0:
        raise AstroInputError(source, "constant flux (MAD = 0): cannot normalize")
    span_days = float(t[-1] - t[0])
    scaled_time = (t - t[0]) / span_days if span_days > 0 else np.zeros_like(t)
    values = np.column_stack([scaled_time, (f - f.mean()) / mad, e / mad]).astype(np.float32)
    return PreparedLightCurve(
        values=values,
        log10_mad_flux=float(np.log10(mad)),
        delta_t_years=span_days / _DAYS_PER_YEAR,
        n_duplicates=int(n_duplicates),
    )


def photometry_channels(
    values: np.ndarray, photo_features: np.ndarray, log10_mad_flux: float, delta_t_years: float
) -> np.ndarray:
    """Stack the 9 AstroM3 channels per step: ``t, flux, flux_err`` + 4 standardized photometric features
    (``amplitude, log10 period, lksl_statistic, rfr_score``) + ``log10(MAD), delta_t``, the last six tiled.

    Args:
        values: ``(N, 3)`` from :func:`prepare_lightcurve`.
        photo_features: ``(4,)`` standardized photometric features.
        log10_mad_flux: From :func:`prepare_lightcurve`.
        delta_t_years: From :func:`prepare_lightcurve`.

    Returns:
        ``(N, 9)`` float32.
    """
    photo_features = np.asarray(photo_features, dtype=np.float32).reshape(-1)
    if photo_features.shape != (len(PHOTO_COLUMNS),):
        raise ValueError(f"expected {len(PHOTO_COLUMNS)} photometric features, got {photo_features.shape}")
    per_object = np.concatenate([photo_features, np.array([log10_mad_flux, delta_t_years], dtype=np.float32)])
    tiled = np.broadcast_to(per_object, (len(values), len(per_object)))
    return np.concatenate([np.asarray(values, dtype=np.float32), tiled], axis=1)


def window_photometry(
    channels: np.ndarray,
    seq_len: int = SEQ_LEN,
    mode: Literal["random", "centre"] = "centre",
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut or pad a ``(N, C)`` sequence to ``seq_len`` steps.

    Longer sequences give a random window (``mode="random"``, training; start uniform in
    ``[0, N − seq_len]``) or the centred one (``start = (N − seq_len)//2``, evaluation). Shorter ones are
    zero-padded at the end in every channel.

    Returns:
        ``(values (seq_len, C) float32, mask (seq_len,) bool)``, mask True on real steps.
    """
    n_steps = len(channels)
    if n_steps > seq_len:
        if mode == "random":
            rng = rng if rng is not None else np.random.default_rng()
            start = int(rng.integers(0, n_steps - seq_len + 1))
        elif mode == "centre":
            start = (n_steps - seq_len) // 2
        else:
            raise ValueError(f"mode must be 'random' or 'centre', got {mode!r}")
        return np.ascontiguousarray(channels[start : start + seq_len], dtype=np.float32), np.ones(seq_len, bool)
    values = np.zeros((seq_len, channels.shape[1]), dtype=np.float32)
    values[:n_steps] = channels
    mask = np.zeros(seq_len, dtype=bool)
    mask[:n_steps] = True
    return values, mask


def prepare_spectrum(
    wavelength_aa: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
    error_mode: Literal["sigma", "paper_ivar"] = "sigma",
    min_coverage: float = 0.95,
    source: str = "spectrum",
) -> np.ndarray:
    """Resample a spectrum onto 3850–9000 Å at 2 Å and build AstroM3's 3 channels.

    Channels: ``(flux − mean)/MAD``, ``second/MAD``, ``log10(MAD)`` repeated, where
    ``MAD = median_abs_deviation(flux[flux ≠ 0])`` on the resampled grid (``np.interp``).

    ``error_mode="sigma"`` (default, physically right): the second array is σ = 1/√IVAR, and pixels with
    IVAR ≤ 0 (LAMOST's bad pixels) are left out of the interpolation of both flux and σ.
    ``error_mode="paper_ivar"`` reproduces the paper: the inverse variance itself is interpolated (bad
    pixels included) and divided by the flux MAD, as if it were an error.

    Args:
        wavelength_aa: Wavelengths in Å (increasing).
        flux: Flux per pixel.
        ivar: Inverse variance per pixel.
        error_mode: ``"sigma"`` or ``"paper_ivar"``.
        min_coverage: Smallest fraction of the 3850–9000 Å grid the good pixels must span.
        source: Name used in error messages.

    Returns:
        ``(3, 2575)`` float32.

    Raises:
        AstroInputError: the spectrum covers too little of the grid, has no good pixel, or constant flux.
    """
    wavelength_aa = np.asarray(wavelength_aa, dtype=np.float64)
    flux = np.asarray(flux, dtype=np.float64)
    ivar = np.asarray(ivar, dtype=np.float64)
    if error_mode == "sigma":
        good = np.isfinite(flux) & np.isfinite(ivar) & (ivar > 0) & np.isfinite(wavelength_aa)
    elif error_mode == "paper_ivar":
        good = np.isfinite(flux) & np.isfinite(ivar) & np.isfinite(wavelength_aa)
    else:
        raise ValueError(f"error_mode must be 'sigma' or 'paper_ivar', got {error_mode!r}")
    if good.sum() < 2:
        raise AstroInputError(source, "spectrum has fewer than 2 good pixels")
    w = wavelength_aa[good]
    grid = SPECTRUM_GRID_AA
    covered = float(np.mean((grid >= w.min()) & (grid <= w.max())))
    if covered < min_coverage:
        raise AstroInputError(
            source,
            f"spectrum outside wavelength range: {w.min():.0f}–{w.max():.0f} Å covers {covered:.0%} of "
            f"{grid[0]:.0f}–{grid[-1] + 2:.0f} Å (need {min_coverage:.0%})",
        )
    flux_grid = np.interp(grid, w, flux[good])
    second = 1.0 / np.sqrt(ivar[good]) if error_mode == "sigma" else ivar[good]
    second_grid = np.interp(grid, w, second)
    nonzero = flux_grid[flux_grid != 0]
    mad = float(median_absolute_deviation(nonzero)) if len(nonzero) else 0.0
    if not np.isfinite(mad) or mad <= 0:
        raise AstroInputError(source, "constant spectrum flux (MAD = 0): cannot normalize")
    channels = np.stack([(flux_grid - flux_grid.mean()) / mad, second_grid / mad, np.full_like(grid, np.log10(mad))])
    return channels.astype(np.float32)


@dataclass
class SplitInfo:
    """Classes and train-split standardization of one (subset, seed), saved as the paper's ``info.json``.

    Attributes:
        classes: Class names; a label's integer is its index here.
        meta_cols: The 34 metadata columns.
        photo_cols: The 4 photometric columns.
        all_cols: ``meta_cols + photo_cols``.
        metadata_func: Name of the transform applied before scaling (documentation).
        mean: Train mean per column of ``all_cols``.
        std: Train standard deviation per column (1 where a column is constant).
    """

    classes: list[str]
    meta_cols: list[str]
    photo_cols: list[str]
    all_cols: list[str]
    metadata_func: str
    mean: list[float]
    std: list[float]

    @classmethod
    def fit(cls, train_features: np.ndarray, classes: Sequence[str]) -> SplitInfo:
        """Fit z-scores on train features ``(n, 38)`` (NaNs ignored) with scikit-learn's StandardScaler."""
        from sklearn.preprocessing import StandardScaler

        train_features = np.asarray(train_features, dtype=np.float64)
        if train_features.ndim != 2 or train_features.shape[1] != len(ALL_COLUMNS):
            raise ValueError(f"expected (n, {len(ALL_COLUMNS)}) train features, got {train_features.shape}")
        if len(train_features) == 0:
            raise ValueError("cannot fit the standardization on an empty train split")
        scaler = StandardScaler().fit(train_features)
        return cls(
            classes=list(classes),
            meta_cols=list(META_COLUMNS),
            photo_cols=list(PHOTO_COLUMNS),
            all_cols=list(ALL_COLUMNS),
            metadata_func="domains.astro.catalogue.catalogue_features",
            mean=[float(v) for v in scaler.mean_],
            std=[float(v) for v in scaler.scale_],
        )

    def standardize(self, features: np.ndarray) -> np.ndarray:
        """``(x − mean)/std`` per column; ``features`` is ``(n, 38)`` in :data:`ALL_COLUMNS` order."""
        return (np.asarray(features, dtype=np.float64) - np.asarray(self.mean)) / np.asarray(self.std)

    def save(self, path: str | Path) -> Path:
        """Write ``info.json`` atomically."""
        return write_json_atomically(path, asdict(self))

    @classmethod
    def load(cls, path: str | Path) -> SplitInfo:
        """Read an ``info.json`` written by :meth:`save` (or by AstroM3, same keys)."""
        path = Path(path)
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            return cls(**{key: payload[key] for key in cls.__dataclass_fields__})
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
            raise AstroInputError(path, f"not a valid split info.json ({error})") from error


def split_by_gaia_id(gaia_ids: Iterable[object], seed: int) -> dict[str, np.ndarray]:
    """Split unique Gaia ids 80/10/10 into train/val/test as AstroM3 does.

    ``train_test_split(test_size=0.2, random_state=seed)`` on the unique ids (first-appearance order),
    then the held-out fifth split 50/50 into val and test with the same seed. Not stratified.

    Returns:
        ``{"train": ids, "val": ids, "test": ids}`` (arrays of the input id type).
    """
    from sklearn.model_selection import train_test_split

    unique_ids = np.asarray(pd.unique(pd.Series(list(gaia_ids)).dropna()), dtype=object)
    if len(unique_ids) < 3:
        raise ValueError(f"need at least 3 distinct ids to split, got {len(unique_ids)}")
    train, held_out = train_test_split(unique_ids, test_size=0.2, random_state=seed)
    val, test = train_test_split(held_out, test_size=0.5, random_state=seed)
    return {"train": np.asarray(train), "val": np.asarray(val), "test": np.asarray(test)}


def subset_class_cap(
    class_counts: Mapping[str, int] | Sequence[int], goal: int, rule: Literal["paper", "exact"] = "paper"
) -> int:
    """Per-class cap that brings a split to about ``goal`` objects by trimming the largest classes.

    Water-filling over the ascending class counts: raise the cap class by class while the total stays
    below ``goal``, then share the remainder among the classes still above the cap (integer division).

    ``rule="paper"`` is AstroM3's ``calc_threshold`` exactly, including its quirk: when even the smallest
    class exceeds ``goal / n_classes`` the remainder is negative and divided by ``n_classes − 1``
    (17,063 train objects → cap 166, not 170). It reproduces the paper's subset sizes; on small splits
    the quirk can shrink the cap far below ``goal / n_classes``. ``rule="exact"`` divides by the number
    of classes still above the cap (→ 170). The cap is at least 1 either way.
    """
    counts = sorted(int(c) for c in (class_counts.values() if isinstance(class_counts, Mapping) else class_counts))
    if not counts:
        raise ValueError("no classes to cap")
    if rule not in ("paper", "exact"):
        raise ValueError(f"rule must be 'paper' or 'exact', got {rule!r}")
    n_classes = len(counts)
    if goal >= sum(counts):
        return counts[-1]
    if rule == "exact" and goal < n_classes * counts[0]:
        return max(1, goal // n_classes)
    filled = n_classes * counts[0]
    level = 1
    while level < n_classes:
        step = (n_classes - level) * (counts[level] - counts[level - 1])
        if filled + step >= goal:
            break
        filled += step
        level += 1
    if level == n_classes:
        return counts[-1]
    return max(1, (goal - filled) // (n_classes - level) + counts[level - 1])


def limit_classes(labels: pd.Series, factor: int, seed: int, rule: Literal["paper", "exact"] = "paper") -> pd.Index:
    """Index of the rows kept in a limited-label subset of one split.

    Goal ``len(labels) // factor``; classes above :func:`subset_class_cap` are sampled down to the cap
    without replacement (seeded), smaller classes are kept whole.

    Args:
        labels: Class name per row of one split (index = row ids).
        factor: 2 for sub50, 4 for sub25, 10 for sub10 (1 keeps everything).
        seed: Sampling seed.
        rule: Cap rule of :func:`subset_class_cap`.
    """
    if factor <= 1:
        return labels.index
    counts = labels.value_counts()
    cap = subset_class_cap(counts.to_dict(), len(labels) // factor, rule)
    rng = np.random.default_rng(seed)
    kept: list[object] = []
    for name in counts.index:
        rows = labels.index[labels.to_numpy() == name]
        if len(rows) > cap:
            rows = rows[np.sort(rng.choice(len(rows), size=cap, replace=False))]
        kept.extend(rows)
    return labels.index[labels.index.isin(kept)]
