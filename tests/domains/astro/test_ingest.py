"""``python -m domains.astro.ingest``: shards, splits and a manifest, with bad objects reported, not fatal."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from domains.astro.catalogue import ALL_COLUMNS
from domains.astro.datasets import AstroTrimodalDataset
from domains.astro.demo import DemoSpec, build_demo_dataset
from domains.astro.ingest import main
from domains.astro.ingest_pipeline import IngestConfig, run_ingest
from domains.astro.preprocessing import SplitInfo
from domains.astro.shard_samples import read_ingested_objects
from shared.cli import run_command

SMALL_DEMO = DemoSpec(n_stars=40, min_per_class=4, seed=3)


@pytest.fixture(scope="module")
def broken_demo(tmp_path_factory):
    """A copy of the small demo set with one object broken in each way ingest must survive."""
    demo = build_demo_dataset(SMALL_DEMO, cache_dir=tmp_path_factory.getbasetemp() / "astro-demo-cache")
    root = tmp_path_factory.mktemp("broken-demo")
    shutil.copytree(demo.root, root, dirs_exist_ok=True)
    catalogue = pd.read_csv(root / "asassn_catalog.csv", dtype={"edr3_source_id": "Int64"})
    index = pd.read_csv(root / "lamost_spec.csv", dtype={"edr3_source_id": "Int64"})
    curve = lambda i: root / "vardb_files" / f"{catalogue.at[i, 'asassn_name'].replace(' ', '')}.dat"  # noqa: E731
    broken = {}
    curve(0).write_text("this is not\na light curve\n\x00\x01 garbage\n")
    broken["unparseable file"] = str(catalogue.at[0, "edr3_source_id"])
    curve(1).write_text("#Variable: x\n#HJD MAG MAG_ERR FLUX FLUX_ERR\n")
    broken["empty light curve"] = str(catalogue.at[1, "edr3_source_id"])
    spectrum = root / "spectra" / index.at[2, "spec_filename"]
    wavelength = np.linspace(1000, 3000, 500, dtype=np.float32)
    columns = [
        fits.Column(name=n, format="500E", array=v.reshape(1, -1))
        for n, v in (("FLUX", wavelength / 100), ("IVAR", np.ones(500, np.float32)), ("WAVELENGTH", wavelength))
    ]
    spectrum.unlink()
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(columns, name="COADD")]).writeto(spectrum)
    broken["spectrum outside wavelength range"] = str(catalogue.at[2, "edr3_source_id"])
    catalogue.loc[3, "parallax"] = np.nan
    broken["NaN metadata"] = str(catalogue.at[3, "edr3_source_id"])
    # A one-term class keeps the period search cheap (the EW/EA/EB two-term search is slower).
    row = catalogue.index[(catalogue.index > 3) & catalogue["variable_type"].isin(["RRAB", "RRC"])][0]
    period_missing = str(catalogue.at[row, "edr3_source_id"])
    true_period = float(catalogue.at[row, "period"])
    catalogue.loc[row, "period"] = np.nan
    # An infinite catalogue value is reported for its object (not an anonymous scikit-learn error).
    infinite = next(i for i in catalogue.index if i > 3 and i != row)
    catalogue.loc[infinite, "pmra"] = np.inf
    broken["non-finite metadata"] = str(catalogue.at[infinite, "edr3_source_id"])
    # Text in a number column is reported for its object too; the other objects are still ingested.
    text = next(i for i in catalogue.index if i > 3 and i not in (row, infinite))
    catalogue["w1_mag"] = catalogue["w1_mag"].astype(object)
    catalogue.loc[text, "w1_mag"] = "n/a?"
    broken["non-numeric metadata"] = str(catalogue.at[text, "edr3_source_id"])
    catalogue.to_csv(root / "asassn_catalog.csv", index=False)
    return root, broken, (period_missing, true_period), len(catalogue)


@pytest.fixture(scope="module")
def ingested(broken_demo, tmp_path_factory):
    root, *_ = broken_demo
    config = IngestConfig(
        catalogue=str(root / "asassn_catalog.csv"),
        lightcurve_dir=str(root / "vardb_files"),
        spectrum_index=str(root / "lamost_spec.csv"),
        spectrum_dir=str(root / "spectra"),
        run_name="test-ingest",
        runs_root=str(tmp_path_factory.mktemp("runs")),
        seeds=[42, 0],
        subsets=["full", "sub50"],
        shard_max_samples=16,
    )
    return run_ingest(config)


def test_bad_objects_are_reported_per_object_and_ingest_continues(broken_demo, ingested):
    _, broken, _, total = broken_demo
    by_reason = {p["reason"]: p for p in ingested.problems}
    for reason, sample_id in broken.items():
        assert by_reason[reason]["sample_id"] == sample_id
    assert by_reason["spectrum outside wavelength range"]["file"].endswith(".fits")
    assert by_reason["empty light curve"]["file"].endswith(".dat")
    assert "parallax" in by_reason["NaN metadata"]["detail"]
    assert "pmra" in by_reason["non-finite metadata"]["detail"]
    assert by_reason["non-finite metadata"]["file"].endswith("asassn_catalog.csv")
    assert "w1_mag='n/a?'" in by_reason["non-numeric metadata"]["detail"]
    assert ingested.num_ingested == total - len(broken)
    manifest = json.loads((ingested.shard_dir / "manifest.json").read_text())
    assert manifest["complete"] and manifest["num_samples"] == ingested.num_ingested
    assert manifest["num_shards"] == -(-ingested.num_ingested // 16)
    # The catalogue-level problem is found before any file is read; the three file problems are skips.
    assert manifest["skipped_total"] == 3
    report = json.loads((ingested.run_dir / "ingest_report.json").read_text())
    assert report["counts"]["ingested"] == ingested.num_ingested
    assert len(pd.read_csv(ingested.run_dir / "problems.csv")) == len(broken)


def test_missing_period_is_estimated_from_the_light_curve(broken_demo, ingested):
    _, _, (sample_id, true_period), _ = broken_demo
    import webdataset as wds

    shards = sorted(str(p) for p in ingested.shard_dir.glob("*.tar"))
    infos = {s["__key__"]: json.loads(s["json"]) for s in wds.WebDataset(shards, shardshuffle=False)}
    assert infos[sample_id]["period_source"] == "lomb_scargle_nterms1"
    # An RR Lyrae light curve of a few hundred points gives its period back (or a 1-day alias of it).
    estimate = infos[sample_id]["period_days"]
    aliases = [abs(1 / estimate - 1 / true_period - k) for k in (-1, 0, 1)]
    assert min(aliases) < 1e-3
    assert all(v["period_source"] == "catalogue" for k, v in infos.items() if k != sample_id)


def test_splits_are_disjoint_cover_everything_and_scale_on_train(ingested):
    objects = {o.sample_id: o for o in read_ingested_objects(ingested.shard_dir)}
    assert len(objects) == ingested.num_ingested
    for seed in (42, 0):
        folder = ingested.split_dir / "full" / str(seed)
        parts = {n: pd.read_csv(folder / f"{n}.csv", dtype={"sample_id": str}) for n in ("train", "val", "test")}
        ids = [set(p["sample_id"]) for p in parts.values()]
        assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
        assert set().union(*ids) == set(objects)
        info = SplitInfo.load(folder / "info.json")
        train_features = np.stack([objects[s].features for s in parts["train"]["sample_id"]])
        np.testing.assert_allclose(info.mean, train_features.mean(axis=0), rtol=1e-9, atol=1e-12)
        assert info.all_cols == list(ALL_COLUMNS)
        sub50 = pd.read_csv(ingested.split_dir / "sub50" / str(seed) / "train.csv", dtype={"sample_id": str})
        assert set(sub50["sample_id"]) <= set(parts["train"]["sample_id"])
        assert len(sub50) < len(parts["train"])
    dataset = AstroTrimodalDataset(list(objects.values()), info, parts["test"]["sample_id"].tolist())
    sample = dataset[0]
    assert sample["photometry"].shape == (200, 9) and sample["spectra"].shape == (3, 2575)
    assert sample["sample_id"] == parts["test"]["sample_id"].iloc[0]


def test_sky_crossmatch_finds_the_same_objects(broken_demo, ingested, tmp_path):
    root, *_ = broken_demo
    config = IngestConfig(
        catalogue=str(root / "asassn_catalog.csv"),
        lightcurve_dir=str(root / "vardb_files"),
        spectrum_index=str(root / "lamost_spec.csv"),
        spectrum_dir=str(root / "spectra"),
        runs_root=str(tmp_path),
        crossmatch="sky",
        seeds=[42],
        subsets=["full"],
    )
    by_sky = run_ingest(config)
    assert by_sky.num_ingested == ingested.num_ingested


def test_existing_shards_are_not_overwritten_by_accident(broken_demo, ingested):
    root, *_ = broken_demo
    config = IngestConfig(
        catalogue=str(root / "asassn_catalog.csv"),
        lightcurve_dir=str(root / "vardb_files"),
        spectrum_index=str(root / "lamost_spec.csv"),
        spectrum_dir=str(root / "spectra"),
        run_name=ingested.run_dir.name,
        runs_root=str(ingested.run_dir.parents[1]),
    )
    with pytest.raises(FileExistsError):
        run_ingest(config)


def test_help_documents_every_option(capsys, help_text, assert_help_documents_every_option):
    text = help_text(main, capsys)
    assert_help_documents_every_option(IngestConfig, text)
    for name in IngestConfig.__dataclass_fields__:
        assert f"--{name}" in text
    assert "1/sqrt(IVAR)" in text


def test_catalogue_without_file_folders_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_command(main, ["--catalogue", str(tmp_path / "c.csv"), "--runs_root", str(tmp_path)])
    assert "--lightcurve_dir" in capsys.readouterr().err
