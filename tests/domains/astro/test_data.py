"""Readers, feature transforms, cross-matching, period search and the trimodal dataset (domains.astro readers, shard samples and datasets)."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
import torch
from astropy.io import fits
from astropy.table import QTable, Table
from astropy.time import Time

from domains.astro.catalogue import (
    ALL_COLUMNS,
    META_COLUMNS,
    catalogue_features,
    crossmatch_on_gaia_id,
    crossmatch_on_sky,
    read_asassn_catalogue,
    read_spectrum_index,
)
from domains.astro.datasets import AstroTrimodalDataset
from domains.astro.input_errors import AstroInputError
from domains.astro.lightcurve_readers import LightCurveColumns, read_asassn_lightcurve, read_lightcurve_table
from domains.astro.period_search import estimate_period
from domains.astro.preprocessing import SplitInfo, prepare_spectrum
from domains.astro.shard_samples import IngestedObject, decode_shard_sample, encode_shard_sample
from domains.astro.spectrum_readers import read_lamost_spectrum

VBAND_TEXT = """#Variable: ASASSN-V J052614.62-691503.1
#HJD\tMAG\tMAG_ERR\tFLUX\tFLUX_ERR
2457000.10000 13.512 0.020 14.61000 0.27000
2457001.20000 >17.498 99.990 -0.05000 0.30000
2457002.30000 13.601 0.021 13.47000 0.26000
2457002.30000 13.601 0.021 13.47000 0.26000
"""

GBAND_TEXT = """#Variable: ASASSN-V J000000.19+320847.2
#HJD camera mag mag_err flux flux_err FWHM IMAGE
2458400.5 bs 14.10 0.03 8.200 0.21 1.6 bs123
2458401.5 bt 14.20 0.03 7.500 0.20 1.7 bt456
"""


def test_vband_lightcurve_values_units_and_upper_limits(tmp_path):
    path = tmp_path / "ASASSN-VJ052614.62-691503.1.dat"
    path.write_text(VBAND_TEXT)
    series = read_asassn_lightcurve(path)
    assert series.meta["band"] == "V"
    assert series.meta["n_upper_limits"] == 1
    assert series["flux"].unit == u.mJy and series["mag"].unit == u.mag
    np.testing.assert_allclose(series.time.jd, [2457000.1, 2457001.2, 2457002.3, 2457002.3])
    np.testing.assert_allclose(series["flux"].value, [14.61, -0.05, 13.47, 13.47])
    np.testing.assert_allclose(series["flux_err"].value, [0.27, 0.30, 0.26, 0.26])
    assert np.isnan(series["mag"].value[1]) and series["mag"].value[0] == pytest.approx(13.512)


def test_gband_variant_is_detected_from_its_columns(tmp_path):
    path = tmp_path / "g.dat"
    path.write_text(GBAND_TEXT)
    series = read_asassn_lightcurve(path)
    assert series.meta["band"] == "g"
    assert series.meta["cameras"] == ["bs", "bt"]
    np.testing.assert_allclose(series["flux"].to_value(u.mJy), [8.2, 7.5])
    np.testing.assert_allclose(series["mag"].value, [14.10, 14.20])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("#a\n#b\n", "empty light curve"),
        ("#a\n#b\n1 2 3\n", r"expected 5 \(V band\) or 8 \(g band\) columns"),
        ("#a\n#b\nx y z w v\nq r s t u\n", "no numeric HJD"),
        ("#a\n#b\n2457000.1 13 0.1 nan 0.1\n2457000.2 13 0.1 nan 0.1\n", "NaN-only flux column"),
        ("#a\n#b\n2457000.1 13 0.1 nan 0.1\n2457000.3 13 0.1 3.0 nan\n", "empty light curve"),
    ],
)
def test_bad_lightcurves_raise_naming_the_file(tmp_path, text, message):
    path = tmp_path / "bad.dat"
    path.write_text(text)
    with pytest.raises(AstroInputError, match=message) as caught:
        read_asassn_lightcurve(path)
    assert str(path) in str(caught.value)


def test_missing_lightcurve_file_is_an_input_error(tmp_path):
    with pytest.raises(AstroInputError, match="cannot read file"):
        read_asassn_lightcurve(tmp_path / "absent.dat")


def test_generic_tables_csv_ecsv_fits_with_column_mapping(tmp_path):
    mjd = np.array([57000.0, 57001.5, 57003.25])
    flux_jy = np.array([0.010, 0.012, 0.011])
    csv_path = tmp_path / "lc.csv"
    pd.DataFrame({"mjd": mjd, "f": flux_jy * 1000, "df": [0.1, 0.1, 0.2]}).to_csv(csv_path, index=False)
    mapping = LightCurveColumns(time="mjd", flux="f", flux_err="df", time_format="mjd")
    from_csv = read_lightcurve_table(csv_path, mapping)
    np.testing.assert_allclose(from_csv.time.jd, mjd + 2400000.5)
    np.testing.assert_allclose(from_csv["flux"].to_value(u.mJy), flux_jy * 1000)

    # ECSV carries units: Jy is converted to mJy.
    ecsv_path = tmp_path / "lc.ecsv"
    QTable({"mjd": mjd, "f": flux_jy * u.Jy, "df": [1e-4, 1e-4, 2e-4] * u.Jy}).write(ecsv_path)
    from_ecsv = read_lightcurve_table(ecsv_path, mapping)
    np.testing.assert_allclose(from_ecsv["flux"].to_value(u.mJy), flux_jy * 1000)
    np.testing.assert_allclose(from_ecsv["flux_err"].to_value(u.mJy), [0.1, 0.1, 0.2])

    # FITS with magnitudes only: relative flux 10**(-0.4 m).
    fits_path = tmp_path / "lc.fits"
    Table({"t": mjd + 2400000.5, "m": [15.0, 15.5, 16.0], "dm": [0.01, 0.02, 0.03]}).write(fits_path)
    by_mag = read_lightcurve_table(fits_path, LightCurveColumns(time="t", flux="absent", mag="m", mag_err="dm"))
    np.testing.assert_allclose(by_mag["flux"].value, 10 ** (-0.4 * np.array([15.0, 15.5, 16.0])))
    np.testing.assert_allclose(
        by_mag["flux_err"].value / by_mag["flux"].value, np.array([0.01, 0.02, 0.03]) * np.log(10) / 2.5
    )


def test_generic_table_errors_name_the_file(tmp_path):
    path = tmp_path / "lc.csv"
    pd.DataFrame({"time": [1.0, 2.0], "flux": [np.nan, np.nan], "flux_err": [1.0, 1.0]}).to_csv(path, index=False)
    with pytest.raises(AstroInputError, match="NaN-only flux"):
        read_lightcurve_table(path)
    with pytest.raises(AstroInputError, match=r"missing column\(s\) \['mjd'\]"):
        read_lightcurve_table(path, LightCurveColumns(time="mjd"))
    with pytest.raises(AstroInputError, match="cannot guess the table format"):
        read_lightcurve_table(tmp_path / "lc.xyz")


def _lamost_arrays(n_pixels: int = 3909) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    coeff0, coeff1 = np.log10(3700.0), 1e-4
    wavelength = 10 ** (coeff0 + coeff1 * np.arange(n_pixels))
    rng = np.random.default_rng(3)
    flux = (1000 + 200 * np.sin(wavelength / 300.0) + rng.normal(0, 5, n_pixels)).astype(np.float32)
    ivar = np.full(n_pixels, 1 / 25.0, dtype=np.float32)
    ivar[100:110] = 0.0
    return wavelength, flux, ivar, coeff0, coeff1


def write_lamost_image(path, wavelength, flux, ivar, coeff0, coeff1):
    header = fits.Header({"COEFF0": coeff0, "COEFF1": coeff1, "OBSID": 1})
    zeros = np.zeros_like(flux)
    fits.PrimaryHDU(np.vstack([flux, ivar, wavelength.astype(np.float32), zeros, zeros]), header=header).writeto(path)


def write_lamost_coadd(path, wavelength, flux, ivar):
    n = len(flux)
    columns = [
        fits.Column(name=name, format=f"{n}E", array=values.reshape(1, n).astype(np.float32))
        for name, values in (("FLUX", flux), ("IVAR", ivar), ("WAVELENGTH", wavelength), ("ANDMASK", 0 * flux))
    ]
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(columns, name="COADD")]).writeto(path)


def test_lamost_both_layouts_give_the_same_spectrum(tmp_path):
    wavelength, flux, ivar, coeff0, coeff1 = _lamost_arrays()
    write_lamost_image(tmp_path / "old.fits", wavelength, flux, ivar, coeff0, coeff1)
    write_lamost_coadd(tmp_path / "new.fits", wavelength, flux, ivar)
    old = read_lamost_spectrum(tmp_path / "old.fits")
    new = read_lamost_spectrum(tmp_path / "new.fits")
    assert (old.layout, new.layout) == ("image", "coadd")
    # Image layout: wavelengths rebuilt from the header as 10**(COEFF0 + COEFF1 * i).
    np.testing.assert_allclose(old.wavelength.to_value(u.AA), 3700.0 * 10 ** (1e-4 * np.arange(3909)), rtol=1e-12)
    np.testing.assert_allclose(new.wavelength.to_value(u.AA), old.wavelength.to_value(u.AA), rtol=1e-6)
    np.testing.assert_array_equal(old.flux, new.flux)
    # σ = 1/sqrt(IVAR) where IVAR > 0; bad pixels NaN.
    assert np.isnan(old.sigma[100:110]).all()
    np.testing.assert_allclose(old.sigma[:100], 5.0, rtol=1e-6)
    np.testing.assert_allclose(
        prepare_spectrum(old.wavelength.value, old.flux, old.ivar),
        prepare_spectrum(new.wavelength.value, new.flux, new.ivar),
        atol=1e-4,  # the COADD table stores wavelengths as float32
    )


def test_lamost_bad_files(tmp_path):
    (tmp_path / "junk.fits").write_bytes(b"not a fits file at all" * 200)
    with pytest.raises(AstroInputError, match="junk.fits"):
        read_lamost_spectrum(tmp_path / "junk.fits")
    wavelength, flux, ivar, coeff0, coeff1 = _lamost_arrays(50)
    write_lamost_image(tmp_path / "nan.fits", wavelength, np.full(50, np.nan, np.float32), ivar, coeff0, coeff1)
    with pytest.raises(AstroInputError, match="NaN-only flux"):
        read_lamost_spectrum(tmp_path / "nan.fits")
    fits.PrimaryHDU(np.vstack([flux, ivar])).writeto(tmp_path / "nocoeff.fits")
    with pytest.raises(AstroInputError, match="COEFF0/COEFF1"):
        read_lamost_spectrum(tmp_path / "nocoeff.fits")


def catalogue_row(**overrides) -> dict:
    row = {name: 1.0 for name in ALL_COLUMNS}
    row.update(asassn_name="ASASSN-V J1", edr3_source_id=4295806720038768640, variable_type="RRAB")
    row.update(overrides)
    return row


def test_catalogue_keeps_19_digit_gaia_ids_and_lists_missing_columns(tmp_path):
    path = tmp_path / "cat.csv"
    pd.DataFrame([catalogue_row(), catalogue_row(edr3_source_id=5999999999999999999)]).to_csv(path, index=False)
    frame = read_asassn_catalogue(path)
    assert frame["edr3_source_id"].tolist() == [4295806720038768640, 5999999999999999999]
    pd.DataFrame([catalogue_row()]).drop(columns=["ruwe", "w4_mag"]).to_csv(path, index=False)
    with pytest.raises(AstroInputError, match=r"lacks column\(s\) \['w4_mag', 'ruwe'\]"):
        read_asassn_catalogue(path)
    pd.DataFrame({"edr3_source_id": [1]}).to_csv(tmp_path / "spec.csv", index=False)
    with pytest.raises(AstroInputError, match="spec_filename"):
        read_spectrum_index(tmp_path / "spec.csv")
    pd.DataFrame({"spec_filename": ["a.fits"], "ra": [1.0]}).to_csv(tmp_path / "spec.csv", index=False)
    with pytest.raises(AstroInputError, match="edr3_source_id or ra/dec"):
        read_spectrum_index(tmp_path / "spec.csv")
    pd.DataFrame({"spec_filename": ["a.fits"], "ra": [1.0], "dec": [2.0]}).to_csv(tmp_path / "spec.csv", index=False)
    assert read_spectrum_index(tmp_path / "spec.csv")["spec_filename"].tolist() == ["a.fits"]


def test_catalogue_features_match_hand_computed_transforms():
    frame = pd.DataFrame(
        [
            catalogue_row(parallax=2.0, mean_vmag=10.0, w4_mag=7.0, l=60.0, b=30.0, period=0.5, pm=3.0),
            catalogue_row(parallax=-0.3, mean_vmag=10.0, l=0.0, b=-90.0, period=100.0),
        ]
    )
    features = catalogue_features(frame)
    assert list(features.columns) == list(ALL_COLUMNS)
    assert features.at[0, "mean_vmag"] == pytest.approx(10.0 - 10.0 + 5 * np.log10(2.0))
    assert features.at[0, "w4_mag"] == pytest.approx(7.0 - 10.0 + 5 * np.log10(2.0))
    assert features.at[1, "mean_vmag"] == pytest.approx(0.0)  # parallax ≤ 0 → 1 mas
    assert features.at[0, "l"] == pytest.approx(0.5)  # cos 60°
    assert features.at[0, "b"] == pytest.approx(0.5)  # sin 30°
    assert features.at[1, "b"] == pytest.approx(-1.0)
    assert features.at[0, "period"] == pytest.approx(np.log10(0.5))
    assert features.at[1, "period"] == pytest.approx(2.0)
    assert features.at[0, "pm"] == 3.0 and features.at[0, "parallax"] == 2.0  # not transformed


def test_crossmatch_on_sky_applies_the_separation_cut():
    left = pd.DataFrame({"name": ["a", "b", "c"], "ra": [10.0, 20.0, 30.0], "dec": [0.0, 10.0, -5.0]})
    right = pd.DataFrame(
        {
            "spec": ["s_a", "s_b", "s_c"],
            "ra": [10.0 + 1.0 / 3600, 20.0, 31.0],
            "dec": [0.0, 10.0 + 5.0 / 3600, -5.0],
        }
    )
    matched = crossmatch_on_sky(left, right, max_separation_arcsec=3.0)
    assert matched["name"].tolist() == ["a"]
    assert matched["spec"].tolist() == ["s_a"]
    assert matched["separation_arcsec"].iloc[0] == pytest.approx(1.0, rel=1e-3)
    assert crossmatch_on_sky(left, right, max_separation_arcsec=6.0)["name"].tolist() == ["a", "b"]


def test_crossmatch_on_gaia_id_keeps_first_duplicate():
    left = pd.DataFrame({"edr3_source_id": [1, 2, 3], "x": [10, 20, 30]})
    right = pd.DataFrame({"edr3_source_id": [2, 2, 3, 9], "spec_filename": ["first", "second", "c", "z"]})
    joined = crossmatch_on_gaia_id(left, right)
    assert joined[["edr3_source_id", "spec_filename"]].values.tolist() == [[2, "first"], [3, "c"]]


def test_period_search_single_term_multi_term_and_short_periods():
    rng = np.random.default_rng(0)
    t = np.sort(rng.uniform(0, 120, 250))
    sinusoid = 0.3 * np.sin(2 * np.pi * t / 0.7) + rng.normal(0, 0.02, t.size)
    estimate = estimate_period(t, sinusoid, np.full(t.size, 0.02), variable_type="RRC")
    assert estimate.period_days == pytest.approx(0.7, rel=1e-3)
    assert estimate.nterms == 1 and estimate.false_alarm_probability < 1e-10

    # A W UMa curve has two equal-ish minima per orbit: a one-term search finds P/2, two terms find P.
    phase = (t / 0.35) % 1.0
    ew = 0.4 * np.cos(4 * np.pi * phase) + 0.08 * np.cos(2 * np.pi * phase) + rng.normal(0, 0.02, t.size)
    assert estimate_period(t, ew, variable_type="ROT").period_days == pytest.approx(0.175, rel=2e-3)
    two_term = estimate_period(t, ew, variable_type="EW")
    assert two_term.nterms == 2 and two_term.period_days == pytest.approx(0.35, rel=2e-3)

    # δ Scuti: 0.05 d = 20 cycles/day, above the default 10/day limit.
    dsct = 0.1 * np.sin(2 * np.pi * t / 0.05) + rng.normal(0, 0.01, t.size)
    assert estimate_period(t, dsct, variable_type="DSCT").period_days == pytest.approx(0.05, rel=1e-3)
    with pytest.raises(ValueError, match="at least 5"):
        estimate_period(t[:3], dsct[:3])


def _objects(n: int, rng: np.random.Generator) -> list[IngestedObject]:
    labels = ["EW", "RRAB", "M"]
    return [
        IngestedObject(
            sample_id=str(1000 + i),
            label=labels[i % 3],
            photometry=rng.normal(size=(150 + 40 * i, 3)).astype(np.float32),
            log10_mad_flux=float(i),
            delta_t_years=2.0 + i,
            spectrum=rng.normal(size=(3, 2575)).astype(np.float32),
            features=rng.normal(size=len(ALL_COLUMNS)),
        )
        for i in range(n)
    ]


def test_trimodal_dataset_sample_contract_and_scaling():
    rng = np.random.default_rng(1)
    objects = _objects(6, rng)
    info = SplitInfo.fit(np.stack([o.features for o in objects[:4]]), ["EW", "RRAB", "M"])
    dataset = AstroTrimodalDataset(objects, info, [o.sample_id for o in objects], window="centre")
    sample = dataset[0]
    assert sample["photometry"].shape == (200, 9) and sample["photometry"].dtype == torch.float32
    assert sample["photometry_mask"].shape == (200,) and sample["photometry_mask"].dtype == torch.bool
    assert sample["spectra"].shape == (3, 2575) and sample["metadata"].shape == (34,)
    assert sample["label"].dtype == torch.int64 and sample["label"].item() == 0 and sample["sample_id"] == "1000"
    # Object 0 has 150 points: 150 real steps, 50 zero-padded ones in every channel.
    assert sample["photometry_mask"].sum().item() == 150
    assert torch.count_nonzero(sample["photometry"][150:]) == 0
    train = np.stack([o.features for o in objects[:4]])
    expected = (objects[5].features - train.mean(axis=0)) / train.std(axis=0)
    np.testing.assert_allclose(dataset[5]["metadata"].numpy(), expected[: len(META_COLUMNS)], rtol=1e-5)
    np.testing.assert_allclose(dataset[5]["photometry"][0, 3:7].numpy(), expected[len(META_COLUMNS) :], rtol=1e-5)
    assert dataset[5]["photometry"][0, 7].item() == pytest.approx(5.0)  # log10 MAD
    assert dataset[5]["photometry"][0, 8].item() == pytest.approx(7.0)  # delta_t in years
    # Object 5 has 350 points: centre window starts at (350 - 200) // 2 = 75.
    np.testing.assert_array_equal(dataset[5]["photometry"][:, :3].numpy(), objects[5].photometry[75:275])
    batch = torch.utils.data.default_collate([dataset[i] for i in range(3)])
    assert batch["photometry"].shape == (3, 200, 9) and batch["sample_id"] == ["1000", "1001", "1002"]
    assert dataset.labels.tolist() == [0, 1, 2, 0, 1, 2]


def test_random_windows_are_reproducible_per_epoch():
    rng = np.random.default_rng(2)
    objects = _objects(6, rng)
    info = SplitInfo.fit(np.stack([o.features for o in objects]), ["EW", "RRAB", "M"])
    first = AstroTrimodalDataset(objects, info, window="random", seed=7)
    second = AstroTrimodalDataset(objects, info, window="random", seed=7)
    torch.testing.assert_close(first[5]["photometry"], second[5]["photometry"])
    windows = set()
    for epoch in range(6):
        first.set_epoch(epoch)
        window = first[5]["photometry"][:, :3].numpy()
        starts = [s for s in range(151) if np.array_equal(objects[5].photometry[s : s + 200], window)]
        assert len(starts) == 1
        windows.add(starts[0])
    assert len(windows) > 1


def test_dataset_rejects_unknown_split_ids():
    objects = _objects(3, np.random.default_rng(0))
    info = SplitInfo.fit(np.stack([o.features for o in objects]), ["EW", "RRAB", "M"])
    with pytest.raises(KeyError, match="not among the ingested objects"):
        AstroTrimodalDataset(objects, info, ["1000", "424242"])


def test_shard_sample_round_trip_through_npy_bytes():
    import io
    import json

    obj = _objects(1, np.random.default_rng(4))[0]
    encoded = encode_shard_sample(obj, {"period_days": 0.5})

    def to_bytes(array: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        np.save(buffer, array)
        return buffer.getvalue()

    raw = {k: to_bytes(v) for k, v in encoded.items() if k.endswith(".npy")}
    raw["json"] = json.dumps(encoded["json"]).encode()
    decoded = decode_shard_sample(raw)
    assert decoded.sample_id == obj.sample_id and decoded.label == obj.label
    np.testing.assert_array_equal(decoded.photometry, obj.photometry)
    np.testing.assert_array_equal(decoded.features, obj.features)
    assert encoded["json"]["period_days"] == 0.5


def test_time_is_kept_as_hjd_in_jd_format(tmp_path):
    path = tmp_path / "v.dat"
    path.write_text(VBAND_TEXT)
    series = read_asassn_lightcurve(path)
    assert isinstance(series.time, Time) and series.time.format == "jd"
    assert series.meta["time_reference"] == "HJD"
