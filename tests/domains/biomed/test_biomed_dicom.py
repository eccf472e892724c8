"""The DICOM chain: order of the display pipeline, compressed syntaxes, frame policy, bad files, PHI."""

from __future__ import annotations

import json
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from biomed_fixtures import PHI, write_dicom
from pydicom.data import get_testdata_file

from domains.biomed.caption_tables import read_reports_csv
from domains.biomed.dicom import DicomChainConfig, DicomReadError, read_dicom_folder, read_dicom_image


def linear_window(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 LINEAR window onto [0, 1], written out independently of pydicom."""
    out = ((x - (center - 0.5)) / (width - 1) + 0.5).clip(0.0, 1.0)
    out[x <= center - 0.5 - (width - 1) / 2] = 0.0
    out[x > center - 0.5 + (width - 1) / 2] = 1.0
    return out


def grey(image: np.ndarray) -> np.ndarray:
    assert np.array_equal(image[..., 0], image[..., 2]), "a monochrome input must give three equal channels"
    return image[..., 0].astype(np.float64) / 255.0


def test_rescale_window_then_monochrome1_inversion(tmp_path: Path) -> None:
    stored = np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 16  # 0 .. 4080
    path = write_dicom(tmp_path / "cr.dcm", stored, PhotometricInterpretation="MONOCHROME1", RescaleSlope=2,
                       RescaleIntercept=-1000, WindowCenter=2000, WindowWidth=3000)  # fmt: skip
    image = read_dicom_image(path, DicomChainConfig(image_size=16))
    expected = 1.0 - linear_window(stored * 2.0 - 1000.0, 2000.0, 3000.0)
    np.testing.assert_allclose(grey(image.frames[0]), expected, atol=1 / 255 + 1e-9)
    assert image.steps[1:5] == ["rescale slope=2 intercept=-1000", "VOI window 0 (center 2000, width 3000, LINEAR)",
                                "scale to [0, 1]", "invert (MONOCHROME1)"]  # fmt: skip
    # Inverting before the window would have made the darkest stored values black instead of white.
    assert image.frames[0][0, 0, 0] == 255


def test_window_index_and_named_preset(tmp_path: Path) -> None:
    hu = np.linspace(-1200, 1200, 32 * 32).reshape(32, 32).round().astype(np.int16)
    path = write_dicom(tmp_path / "ct.dcm", hu, RescaleSlope=1, RescaleIntercept=0,
                       WindowCenter=[40, -600], WindowWidth=[400, 1500])  # fmt: skip
    second = read_dicom_image(path, DicomChainConfig(image_size=32, window_index=1))
    np.testing.assert_allclose(grey(second.frames[0]), linear_window(hu.astype(float), -600, 1500), atol=1 / 255 + 1e-9)
    bone = read_dicom_image(path, DicomChainConfig(image_size=32, voi="bone"))
    np.testing.assert_allclose(grey(bone.frames[0]), linear_window(hu.astype(float), 400, 1800), atol=1 / 255 + 1e-9)
    assert "VOI preset bone (center 400 HU, width 1800 HU)" in bone.steps
    with pytest.raises(DicomReadError, match="window_index 2 requested but the header has 2"):
        read_dicom_image(path, DicomChainConfig(image_size=32, window_index=2))


def test_inverse_presentation_lut_and_minmax_fallback(tmp_path: Path) -> None:
    stored = np.array([[0, 100], [200, 300]], dtype=np.uint16).repeat(8, 0).repeat(8, 1)
    path = write_dicom(tmp_path / "mr.dcm", stored, Modality="MR", PresentationLUTShape="INVERSE")
    image = read_dicom_image(path, DicomChainConfig(image_size=16))
    np.testing.assert_allclose(grey(image.frames[0]), 1.0 - stored / 300.0, atol=1 / 255 + 1e-9)
    assert "VOI: min-max of the frame" in image.steps and "invert (INVERSE presentation LUT)" in image.steps


def test_voi_lut_sequence_is_used_when_present() -> None:
    image = read_dicom_image(get_testdata_file("vlut_04.dcm"), DicomChainConfig(image_size=64))
    assert "VOI LUT sequence item 0" in image.steps


@pytest.mark.parametrize("variant", ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"])
def test_lossless_compressed_syntaxes_match_uncompressed(variant: str) -> None:
    config = DicomChainConfig(image_size=64)
    reference = read_dicom_image(get_testdata_file("MR_small.dcm"), config)
    compressed = read_dicom_image(get_testdata_file(variant), config)
    np.testing.assert_array_equal(compressed.frames[0], reference.frames[0])


def test_frame_policy(tmp_path: Path) -> None:
    frames = np.stack([np.full((8, 8), value, dtype=np.uint16) for value in (0, 500, 1000)])
    frames[:, 0, 0] = 1000  # a full range in every frame, so min-max scaling keeps the frames apart
    frames[:, 0, 1] = 0
    path = write_dicom(tmp_path / "multi.dcm", frames, Modality="MR")
    middle = read_dicom_image(path, DicomChainConfig(image_size=8, frame_policy="middle"))
    assert middle.frame_indices == [1] and middle.frames[0][4, 4, 0] == 128
    first = read_dicom_image(path, DicomChainConfig(image_size=8, frame_policy="first"))
    assert first.frame_indices == [0] and first.frames[0][4, 4, 0] == 0
    every = read_dicom_image(path, DicomChainConfig(image_size=8, frame_policy="all"))
    assert every.frame_indices == [0, 1, 2] and [f[4, 4, 0] for f in every.frames] == [0, 128, 255]


def test_letterbox_keeps_aspect_ratio() -> None:
    image = read_dicom_image(get_testdata_file("JPEG2000.dcm"), DicomChainConfig(image_size=64))  # 1024 × 256
    frame = image.frames[0]
    assert frame.shape == (64, 64, 3)
    assert frame[:, :20].max() == 0 and frame[:, 44:].max() == 0  # padding left and right of the 16 px wide body


def test_bad_files_are_listed_with_reasons_and_the_walk_continues(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_bytes(b"not a dicom file at all" * 10)
    (tmp_path / "random.dcm").write_bytes(np.random.default_rng(0).bytes(4096))
    truncated = get_testdata_file("MR_truncated.dcm")
    (tmp_path / "truncated.dcm").write_bytes(Path(truncated).read_bytes())
    (tmp_path / "plan.dcm").write_bytes(Path(get_testdata_file("rtplan.dcm")).read_bytes())
    write_dicom(tmp_path / "hsv.dcm", np.zeros((4, 4), np.uint16), PhotometricInterpretation="HSV")
    write_dicom(tmp_path / "sub" / "good.dcm", np.arange(64, dtype=np.uint16).reshape(8, 8))
    ct = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    (tmp_path / "cut_in_pixels.dcm").write_bytes(ct[: len(ct) // 2])  # cut inside the pixel data
    (tmp_path / "cut_before_pixels.dcm").write_bytes(ct[:5000])  # cut between header and pixel data
    skipped = []
    samples = list(read_dicom_folder(tmp_path, DicomChainConfig(image_size=8), skipped=skipped))
    assert len(samples) == 1
    reasons = {item.source: item.reason for item in skipped}
    assert reasons["notes.txt"].startswith("not a DICOM file")
    assert reasons["random.dcm"].startswith("not a DICOM file")
    # truncated files say so, whether the cut is inside the pixel data or before it
    assert reasons["truncated.dcm"] == "truncated (pixel data holds 8130 of the 8192 bytes the header describes)"
    assert reasons["cut_in_pixels.dcm"].startswith("truncated (pixel data holds ")
    assert reasons["cut_before_pixels.dcm"].startswith("truncated (the header describes a 128x128 image")
    assert reasons["plan.dcm"].startswith("no pixel data")
    assert reasons["hsv.dcm"] == "unsupported photometric interpretation 'HSV'"


def test_reports_csv_captions_and_errors(tmp_path: Path) -> None:
    write_dicom(tmp_path / "in" / "a" / "scan1.dcm", np.arange(64, dtype=np.uint16).reshape(8, 8))
    reports = tmp_path / "reports.csv"
    reports.write_text("id,report\na/scan1,Small nodule in the right upper lobe.\n")
    samples = list(read_dicom_folder(tmp_path / "in", DicomChainConfig(image_size=8), read_reports_csv(reports)))
    assert samples[0].caption == "Small nodule in the right upper lobe."
    assert samples[0].metadata["caption_source"] == "report"
    reports.write_text("id,report\nx,one\nx,two\n")
    with pytest.raises(ValueError, match=r"reports.csv:3: duplicate id 'x'"):
        read_reports_csv(reports)


def _all_text_of(shard_dir: Path) -> str:
    texts = [(shard_dir / "manifest.json").read_text()]
    for shard in sorted(shard_dir.glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                if member.name.endswith((".txt", ".json")):
                    texts.append(tar.extractfile(member).read().decode())
                texts.append(member.name)
    return "\n".join(texts)


def test_ingest_keeps_patient_identifiers_out_of_shards_manifest_and_log(tmp_path: Path, monkeypatch, capsys) -> None:
    from domains.biomed import ingest

    monkeypatch.chdir(tmp_path)
    pixels = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32)
    write_dicom(tmp_path / "in" / "scan.dcm", pixels, StudyDescription="CHEST PA Doe", SeriesDescription="Jane chest",
                BodyPartExamined="CHEST", **PHI)  # fmt: skip
    manifest = ingest.main(["--input", "in", "--dicom.image_size", "32", "--run_name", "phi"])
    log = capsys.readouterr().out
    text = _all_text_of(manifest.parent)
    summary = json.loads(manifest.read_text())
    assert summary["num_samples"] == 1
    for value in PHI.values():
        for part in value.replace("^", " ").split():
            assert part.lower() not in text.lower(), f"{part!r} leaked into the shards or manifest"
            assert part.lower() not in log.lower(), f"{part!r} leaked into the log"
    assert "digital radiograph" not in text and "CT of the chest. CHEST PA. chest" in text
    # the header's descriptive fields and the chain's steps are recorded
    assert '"BodyPartExamined": "CHEST"' in text and "scale to [0, 1]" in text

    # ... and nothing identifying reaches the embedding store either
    from domains.biomed.embedding import embed_into_store
    from domains.biomed.model import BiomedClipModel
    from domains.biomed.open_clip_loading import load_open_clip_model
    from shared.store import EmbeddingStore

    loaded = load_open_clip_model("tiny", pretrained_towers=False)
    store_path = tmp_path / "store.duckdb"
    embed_into_store(BiomedClipModel(loaded.model), loaded, str(manifest.parent), store_path, "phi", "tiny", "v1")
    store = EmbeddingStore(store_path)
    tables = [row for row in store.sql("SELECT table_name FROM information_schema.tables")["table_name"]]
    frames = [store.sql(f'SELECT * FROM "{table}"') for table in tables]  # noqa: S608
    dump = "\n".join(frame.drop(columns=["vec"], errors="ignore").astype(str).to_csv() for frame in frames)
    store.close()
    assert "CT of the chest" in dump
    for value in PHI.values():
        for part in value.replace("^", " ").split():
            assert part.lower() not in dump.lower(), f"{part!r} leaked into the store"


def test_pydicom_warnings_quoting_header_values_are_silenced(tmp_path: Path, capfd) -> None:
    with pytest.warns(UserWarning, match="Invalid value for VR DA"):  # pydicom warns while writing it
        write_dicom(tmp_path / "in" / "odd.dcm", np.zeros((8, 8), np.uint16), PatientBirthDate="Janeday1961")
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        samples = list(read_dicom_folder(tmp_path / "in", DicomChainConfig(image_size=8)))
    captured = capfd.readouterr()
    assert len(samples) == 1 and "Janeday1961" not in captured.err + captured.out
    assert not [w for w in caught if "Janeday1961" in str(w.message)]
