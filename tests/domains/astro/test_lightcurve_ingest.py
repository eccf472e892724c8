"""Any survey's light curves through the CLI: plain ``MJD Mag Err`` text files (not the ASAS-SN layout), ids
and labels from a small table, photometry only; then fine-tuning on them and embedding them with a pretrained
model, every step through ``run_command``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from domains.astro import embed, finetune, ingest
from domains.astro.clip_pretraining import PretrainConfig, run_pretrain
from domains.astro.model import AstroModelConfig
from domains.astro.training_budget import with_epoch_budget
from shared.cli import run_command
from shared.run_folder import RunFolder
from shared.store import EmbeddingStore
from shared.trainer import TrainerConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PERIODS = {"PULS": 0.37, "ROTV": 7.3, "ECL": 1.9}


def write_survey(folder: Path, per_class: int = 8) -> tuple[Path, Path]:
    """A folder of ``<id>.txt`` light curves (``MJD Mag Err``, whitespace) and an ``objects.csv`` of ids and
    labels; one file is unreadable and one id has no file."""
    rng = np.random.default_rng(5)
    curves = folder / "curves"
    curves.mkdir(parents=True)
    rows = []
    for label, period in PERIODS.items():
        for index in range(per_class):
            star = f"{label.lower()}-{index:02d}"
            mjd = np.sort(rng.uniform(58000, 58400, int(rng.integers(60, 120))))
            phase = (mjd / period) % 1.0
            shape = (
                np.sin(2 * np.pi * phase)
                if label != "ECL"
                else -np.exp(-0.5 * (np.minimum(phase, 1 - phase) / 0.05) ** 2)
            )
            mag = 14.0 + 0.4 * shape + rng.normal(0, 0.02, len(mjd))
            lines = ["MJD Mag Err"] + [f"{t:.5f} {m:.4f} 0.0200" for t, m in zip(mjd, mag)]
            (curves / f"{star}.txt").write_text("\n".join(lines) + "\n")
            rows.append({"id": star, "label": label})
    (curves / "puls-00.txt").write_text("MJD Mag Err\n58000.1 abc 0.02\n58001.1 def 0.02\n")
    rows.append({"id": "no-file-star", "label": "PULS"})
    objects = folder / "objects.csv"
    pd.DataFrame(rows).to_csv(objects, index=False)
    return objects, curves


def ingest_argv(objects: Path, curves: Path, runs_root: Path, *extra: str) -> list[str]:
    return [
        "--objects", str(objects), "--lightcurve_dir", str(curves), "--runs_root", str(runs_root),
        "--run_name", "survey", "--seeds", "[1]", "--subsets", "[full]", "--min_lightcurve_points", "10",
        *extra,
    ]  # fmt: skip


COLUMN_FLAGS = [
    "--columns.time",
    "MJD",
    "--columns.time_format",
    "mjd",
    "--columns.mag",
    "Mag",
    "--columns.mag_err",
    "Err",
]


def test_plain_text_light_curves_ingest_photometry_only_and_embed_with_a_pretrained_model(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    write_astro_ingest: Callable[..., Path],
    tiny_astro_config: Callable[[], AstroModelConfig],
) -> None:
    objects, curves = write_survey(tmp_path / "survey")
    runs = tmp_path / "runs"
    run_command(ingest.main, ingest_argv(objects, curves, runs, *COLUMN_FLAGS))
    out = capsys.readouterr().out
    survey = runs / "astro" / "survey"
    assert "ingested 23 objects" in out and "finetune --mode photo" in out
    assert RunFolder(survey).is_finished
    report = json.loads((survey / "ingest_report.json").read_text())
    assert report["modalities"] == ["photometry"]
    reasons = {p["sample_id"]: p["reason"] for p in report["problems"]}
    assert set(reasons) == {"puls-00", "no-file-star"}
    assert reasons["no-file-star"] == "missing or unreadable file"
    per_object = pd.read_csv(survey / "objects.csv")
    assert len(per_object) == 23 and set(per_object["period_source"]) == {"lomb_scargle"}
    # The Lomb-Scargle periods of the clean pulsators come back from the text files.
    pulsators = per_object[per_object["label"] == "PULS"]
    np.testing.assert_allclose(pulsators["period_days"], PERIODS["PULS"], rtol=0.01)
    classes = json.loads((survey / "splits" / "full" / "1" / "info.json").read_text())["classes"]
    assert sorted(classes) == sorted(PERIODS)

    # The same column map as a YAML file gives the same objects.
    column_map = tmp_path / "columns.yaml"
    column_map.write_text("time: MJD\ntime_format: mjd\nmag: Mag\nmag_err: Err\n")
    argv = ingest_argv(objects, curves, runs, "--column_map", str(column_map))
    run_command(ingest.main, [*argv, "--run_name", "survey-yaml"])
    capsys.readouterr()
    again = pd.read_csv(runs / "astro" / "survey-yaml" / "objects.csv")
    pd.testing.assert_frame_equal(again, per_object)

    # Photometry alone is enough to fine-tune a photometry classifier; other modes are refused, naming --mode.
    common = ["--input", str(survey), "--runs_root", str(runs), "--seeds", "[1]", "--batch_size", "8",
              "--trainer.max_epochs", "null", "--trainer.max_steps", "2", "--trainer.warmup_epochs", "null",
              "--trainer.validate_every_epochs", "null", "--trainer.checkpoint_every_epochs", "null",
              "--model.photometry.seq_len", "32", "--model.photometry.d_model", "8", "--model.photometry.n_layers", "1",
              "--model.photometry.d_ff", "16", "--model.photometry.n_heads", "2"]  # fmt: skip
    run_command(finetune.main, [*common, "--mode", "photo", "--run_name", "photo"])
    assert RunFolder(runs / "astro" / "photo").is_finished
    with pytest.raises(SystemExit) as refused:
        run_command(finetune.main, [*common, "--mode", "spectra", "--run_name", "spectra"])
    assert refused.value.code == 2
    assert "--mode spectra" in capsys.readouterr().err

    # A (tiny) pretrained AstroM3 embeds the survey's light curves: photometry and its fused vector only.
    clip = run_pretrain(
        PretrainConfig(
            run_name="clip",
            runs_root=str(runs),
            input=str(write_astro_ingest(tmp_path / "trimodal", n_objects=48, seeds=(1,))),
            seed=1,
            batch_size=16,
            model=tiny_astro_config(),
            trainer=with_epoch_budget(
                TrainerConfig(progress_bar=False, select_metric="val_loss", select_mode="min"), max_epochs=1
            ),
        )
    )
    store = tmp_path / "store.duckdb"
    run_command(embed.main, ["--run", str(clip.run_dir), "--input", str(survey), "--store", str(store),
                             "--map_method", "pca", "--top_k", "2"])  # fmt: skip
    assert "23 objects x 2 modalities (photometry, fused)" in capsys.readouterr().out
    inventory = EmbeddingStore(store).sql(
        "SELECT modality, sum(num_vectors) AS n FROM embedding_inventory GROUP BY modality"
    )
    assert dict(zip(inventory["modality"], inventory["n"])) == {"photometry": 23, "fused": 23}
    samples = EmbeddingStore(store).sql("SELECT sample_id, anomaly_lof, map_x FROM samples_astro")
    assert len(samples) == 23 and samples["anomaly_lof"].notna().all() and samples["map_x"].notna().all()


def test_csv_light_curves_with_metadata_columns_ingest_two_modalities_and_report_bad_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from domains.astro.catalogue import ALL_COLUMNS, META_COLUMNS
    from domains.astro.datasets import ingest_modalities, load_astro_splits

    rng = np.random.default_rng(2)
    curves = tmp_path / "curves"
    curves.mkdir()
    rows = []
    for index in range(30):
        label = ("A", "B", "C")[index % 3]
        hjd = np.sort(rng.uniform(2458000, 2458300, 80))
        flux = 10 + np.sin(2 * np.pi * hjd / (0.3 + index % 3)) + rng.normal(0, 0.05, 80)
        pd.DataFrame({"hjd": hjd, "f": flux, "ef": 0.05}).to_csv(curves / f"lc_{index}.csv", index=False)
        row = {"star": f"s{index}", "cls": label, "file": f"lc_{index}.csv", "period": 0.3 + index % 3}
        row.update({column: 1.0 + rng.normal(0, 0.1) for column in META_COLUMNS})
        rows.append(row)
    rows[4]["parallax"] = "n/a"  # reported for its object, not a failed ingest
    objects = tmp_path / "objects.csv"
    pd.DataFrame(rows).to_csv(objects, index=False)
    argv = [
        "--objects", str(objects), "--lightcurve_dir", str(curves), "--runs_root", str(tmp_path / "runs"),
        "--run_name", "meta", "--id_column", "star", "--label_column", "cls", "--seeds", "[1]", "--subsets", "[full]",
        "--columns.time", "hjd", "--columns.flux", "f", "--columns.flux_err", "ef", "--columns.flux_unit", "",
        "--modalities", "[photometry,metadata]",
    ]  # fmt: skip
    run_command(ingest.main, argv)
    assert "ingested 29 objects" in capsys.readouterr().out
    folder = tmp_path / "runs" / "astro" / "meta"
    assert ingest_modalities(folder) == ["photometry", "metadata"]
    report = json.loads((folder / "ingest_report.json").read_text())
    (problem,) = report["problems"]
    assert (
        problem["sample_id"] == "s4" and problem["reason"] == "non-numeric metadata" and "parallax" in problem["detail"]
    )
    splits = load_astro_splits(folder, "full", 1, seq_len=32)
    features = np.stack([obj.features for obj in splits.train.objects])
    # Metadata came from the table (transformed), the period from its column (log10), not from a search.
    assert np.abs(features[:, : len(META_COLUMNS)]).sum() > 0
    np.testing.assert_allclose(
        sorted(set(np.round(features[:, ALL_COLUMNS.index("period")], 6))), np.round(np.log10([0.3, 1.3, 2.3]), 6)
    )
    # Asking for a modality the table cannot feed is refused, naming the flag.
    with pytest.raises(SystemExit) as refused:
        run_command(ingest.main, [*argv[:-1], "[photometry,spectra]", "--run_name", "spectra"])
    assert refused.value.code == 2 and "--spectrum_dir" in capsys.readouterr().err
