"""AstroM3 preprocessing against hand computations, splits and limited-label subsets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from domains.astro.catalogue import ALL_COLUMNS
from domains.astro.input_errors import AstroInputError
from domains.astro.preprocessing import (
    SPECTRUM_GRID_AA,
    SplitInfo,
    limit_classes,
    photometry_channels,
    prepare_lightcurve,
    prepare_spectrum,
    split_by_gaia_id,
    subset_class_cap,
    window_photometry,
)


def hand_mad(values: np.ndarray) -> float:
    return float(np.median(np.abs(values - np.median(values))))


def test_lightcurve_dedupe_sort_mad_and_time_scaling():
    time = np.array([2457010.0, 2457000.0, 2457005.0, 2457000.0, 2457730.0])
    flux = np.array([12.0, 10.0, 11.0, 10.0, 15.0])
    err = np.array([0.2, 0.1, 0.1, 0.1, 0.3])
    prepared = prepare_lightcurve(time, flux, err)
    assert prepared.n_duplicates == 1
    unique_flux = np.array([10.0, 11.0, 12.0, 15.0])  # sorted by time, duplicate removed
    mad = hand_mad(unique_flux)
    np.testing.assert_allclose(prepared.values[:, 0], [0.0, 5 / 730, 10 / 730, 1.0], rtol=1e-6)
    np.testing.assert_allclose(prepared.values[:, 1], (unique_flux - unique_flux.mean()) / mad, rtol=1e-6)
    np.testing.assert_allclose(prepared.values[:, 2], np.array([0.1, 0.1, 0.2, 0.3]) / mad, rtol=1e-6)
    assert prepared.delta_t_years == pytest.approx(730 / 365)
    assert prepared.log10_mad_flux == pytest.approx(np.log10(mad))
    assert prepared.values.dtype == np.float32


def test_lightcurve_rejects_constant_or_single_point():
    with pytest.raises(AstroInputError, match="MAD = 0"):
        prepare_lightcurve(np.arange(5.0), np.ones(5), np.ones(5), source="x.dat")
    with pytest.raises(AstroInputError, match="1 distinct point"):
        prepare_lightcurve(np.array([1.0, 1.0]), np.array([2.0, 2.0]), np.array([0.1, 0.1]))
    with pytest.raises(AstroInputError, match="empty light curve"):
        prepare_lightcurve(np.array([np.nan]), np.array([1.0]), np.array([0.1]))


def test_nine_channels_in_the_paper_order():
    values = np.arange(12, dtype=np.float32).reshape(4, 3)
    channels = photometry_channels(values, np.array([1.0, 2.0, 3.0, 4.0]), log10_mad_flux=-0.5, delta_t_years=6.0)
    assert channels.shape == (4, 9) and channels.dtype == np.float32
    np.testing.assert_array_equal(channels[:, :3], values)
    np.testing.assert_array_equal(channels[2, 3:], [1.0, 2.0, 3.0, 4.0, -0.5, 6.0])
    with pytest.raises(ValueError, match="4 photometric features"):
        photometry_channels(values, np.zeros(3), 0.0, 0.0)


def test_windows_centre_random_and_padding():
    long = np.arange(305 * 9, dtype=np.float32).reshape(305, 9)
    centre, mask = window_photometry(long, 200, "centre")
    np.testing.assert_array_equal(centre, long[52:252])  # (305 - 200) // 2 = 52
    assert mask.all()
    starts = set()
    rng = np.random.default_rng(0)
    for _ in range(50):
        window, _ = window_photometry(long, 200, "random", rng)
        start = int(window[0, 0]) // 9
        np.testing.assert_array_equal(window, long[start : start + 200])
        starts.add(start)
    assert len(starts) > 10 and min(starts) >= 0 and max(starts) <= 105
    short = np.ones((30, 9), dtype=np.float32)
    padded, mask = window_photometry(short, 200, "random", rng)
    assert mask.sum() == 30 and mask[:30].all() and not mask[30:].any()
    assert padded[:30].sum() == 30 * 9 and not padded[30:].any()


def test_spectrum_grid_channels_and_error_modes():
    assert SPECTRUM_GRID_AA.shape == (2575,) and SPECTRUM_GRID_AA[0] == 3850 and SPECTRUM_GRID_AA[-1] == 8998
    wavelength = np.linspace(3690, 9100, 4000)
    flux = 100 + 20 * np.sin(wavelength / 250.0)
    ivar = np.full_like(wavelength, 0.04)
    flux_spike = flux.copy()
    bad = np.argmin(np.abs(wavelength - 6000))
    flux_spike[bad], ivar_bad = 1e6, ivar.copy()
    ivar_bad[bad] = 0.0

    channels = prepare_spectrum(wavelength, flux, ivar)
    resampled = np.interp(SPECTRUM_GRID_AA, wavelength, flux)
    nonzero = resampled[resampled != 0]
    mad = hand_mad(nonzero)
    assert channels.shape == (3, 2575) and channels.dtype == np.float32
    np.testing.assert_allclose(channels[0], (resampled - resampled.mean()) / mad, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(channels[1], 5.0 / mad, rtol=1e-5)  # σ = 1/sqrt(0.04) = 5
    np.testing.assert_allclose(channels[2], np.log10(mad), rtol=1e-6)

    # A bad pixel (IVAR = 0) does not leak into the default channels, but does in the paper's mode.
    cleaned = prepare_spectrum(wavelength, flux_spike, ivar_bad)
    np.testing.assert_allclose(cleaned, channels, rtol=1e-4, atol=1e-4)
    paper = prepare_spectrum(wavelength, flux, ivar, error_mode="paper_ivar")
    np.testing.assert_allclose(paper[1], 0.04 / mad, rtol=1e-5)


def test_spectrum_outside_the_wavelength_range_is_reported():
    wavelength = np.linspace(3000, 5000, 500)
    with pytest.raises(AstroInputError, match="spectrum outside wavelength range") as caught:
        prepare_spectrum(wavelength, np.ones(500) + wavelength / 1e3, np.ones(500), source="spec-1.fits")
    assert "spec-1.fits" in str(caught.value)
    with pytest.raises(AstroInputError, match="fewer than 2 good pixels"):
        prepare_spectrum(wavelength, np.ones(500), np.zeros(500))


def test_split_info_fits_on_train_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.normal(3.0, 2.0, size=(50, len(ALL_COLUMNS)))
    train[:, 5] = 7.0  # constant column: std 1, not 0
    train[3, 0] = np.nan  # ignored when fitting
    info = SplitInfo.fit(train, ["EW", "SR"])
    expected_mean = np.nanmean(train, axis=0)
    np.testing.assert_allclose(info.mean, expected_mean)
    np.testing.assert_allclose(info.std[1], np.std(train[:, 1]))
    assert info.std[5] == 1.0
    path = info.save(tmp_path / "full" / "42" / "info.json")
    loaded = SplitInfo.load(path)
    assert loaded == info and loaded.all_cols == list(ALL_COLUMNS)
    np.testing.assert_allclose(
        loaded.standardize(train[:2])[:, 1], (train[:2, 1] - expected_mean[1]) / np.std(train[:, 1])
    )
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(AstroInputError, match="broken.json"):
        SplitInfo.load(tmp_path / "broken.json")


def test_splits_are_disjoint_80_10_10_and_seeded():
    ids = [str(10**18 + i) for i in range(1000)] + ["1000000000000000005"]  # one duplicate id
    parts = split_by_gaia_id(ids, seed=42)
    sizes = {name: len(values) for name, values in parts.items()}
    assert sizes == {"train": 800, "val": 100, "test": 100}
    union = set(parts["train"]) | set(parts["val"]) | set(parts["test"])
    assert len(union) == 1000 and union == set(ids)
    again = split_by_gaia_id(ids, seed=42)
    assert all(np.array_equal(parts[k], again[k]) for k in parts)
    other = split_by_gaia_id(ids, seed=66)
    assert set(other["test"]) != set(parts["test"])


# Class counts of the paper's seed-42 splits (dev/notebooks/026-subdataset.ipynb) and the caps it got.
TRAIN_COUNTS = {
    "EW": 4890,
    "SR": 3647,
    "EA": 2343,
    "RRAB": 1886,
    "EB": 1571,
    "ROT": 1454,
    "RRC": 624,
    "HADS": 226,
    "M": 216,
    "DSCT": 206,
}
VAL_COUNTS = {
    "EW": 597,
    "SR": 479,
    "EA": 272,
    "RRAB": 231,
    "EB": 207,
    "ROT": 189,
    "RRC": 93,
    "M": 30,
    "HADS": 29,
    "DSCT": 25,
}
TEST_COUNTS = {
    "EW": 681,
    "SR": 464,
    "EA": 301,
    "RRAB": 234,
    "EB": 198,
    "ROT": 196,
    "RRC": 79,
    "HADS": 26,
    "DSCT": 24,
    "M": 22,
}


@pytest.mark.parametrize(
    ("counts", "expected_caps"),
    [(TRAIN_COUNTS, (1209, 516, 166)), (VAL_COUNTS, (149, 64, 21)), (TEST_COUNTS, (160, 69, 22))],
)
def test_subset_caps_reproduce_the_paper(counts, expected_caps):
    total = sum(counts.values())
    caps = tuple(subset_class_cap(counts, total // factor) for factor in (2, 4, 10))
    assert caps == expected_caps


def test_subset_totals_match_the_reference_table():
    def total(counts, factor):
        cap = subset_class_cap(counts, sum(counts.values()) // factor)
        return sum(min(c, cap) for c in counts.values())

    assert [total(TRAIN_COUNTS, f) for f in (2, 4, 10)] == [8526, 4260, 1660]
    assert [total(VAL_COUNTS, f) for f in (2, 4, 10)] == [1071, 532, 210]
    assert [total(TEST_COUNTS, f) for f in (2, 4, 10)] == [1111, 555, 220]


def test_exact_rule_differs_only_where_the_paper_formula_misbehaves():
    assert subset_class_cap(TRAIN_COUNTS, 17063 // 10, rule="exact") == 170
    assert subset_class_cap(TRAIN_COUNTS, 17063 // 2, rule="exact") == 1209
    small = {"A": 60, "B": 40, "C": 9, "D": 8}
    assert subset_class_cap(small, 117 // 10, rule="paper") == 1  # (11 - 32) // 3 + 8 = 1
    assert subset_class_cap(small, 117 // 10, rule="exact") == 2
    with pytest.raises(ValueError, match="rule"):
        subset_class_cap(small, 10, rule="other")


def test_limit_classes_caps_large_classes_and_keeps_small_ones():
    labels = pd.Series(["A"] * 60 + ["B"] * 30 + ["C"] * 5, index=[f"id{i}" for i in range(95)])
    kept = limit_classes(labels, factor=2, seed=0)
    counts = labels.loc[kept].value_counts().to_dict()
    cap = subset_class_cap(labels.value_counts().to_dict(), 95 // 2)
    assert counts == {"A": cap, "B": cap, "C": 5}
    assert kept.equals(limit_classes(labels, factor=2, seed=0))
    assert not kept.equals(limit_classes(labels, factor=2, seed=1))
    assert limit_classes(labels, factor=1, seed=0).equals(labels.index)
