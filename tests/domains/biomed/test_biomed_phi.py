"""Patient data stays out of every output: report scrubbing, burned-in text, unmatched reports."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from biomed_fixtures import PHI, write_dicom
from pydicom.uid import CTImageStorage, UltrasoundImageStorage

from domains.biomed.report_scrubbing import REPLACEMENT, scrub_report_text

HEADER = {
    **PHI,
    "OtherPatientIDs": "OID-777-31337",
    "PerformingPhysicianName": "Wilson^James",
    "SeriesDate": "20240106",
}
#: A report repeating the header's identifiers in the spellings people use.
REPORT = (
    "Patient: DOE, JANE Q. (jane doe), MRN0042424242, other ID OID77731337, born 3 February 1961 "
    "(DOB 02/03/1961, 1961-02-03, 19610203). Seen at Mercy General Hospital on 2024-01-05 and Jan 6, 2024, "
    "accession ACC-98765. Referred by Dr. Gregory House; performed by Dr Wilson. "
    "Findings: small nodule in the right upper lobe, 5 mm."
)
#: Strings (case-insensitive) that must appear in no output file, log line or store row.
FORBIDDEN = ("jane", "doe,", "doe ", "quincy", "0042424242", "31337", "1961", "19610203", "02/03", "mercy",
             "98765", "gregory", "house", "wilson", "2024-01-05", "jan 6", "20240105", "20240106", "elm street")  # fmt: skip


def _every_output_text(root: Path) -> str:
    """Every file under ``root`` as text; tar shards member by member (names and contents)."""
    texts = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        texts.append(str(path.relative_to(root)))
        if path.suffix == ".tar":
            with tarfile.open(path) as tar:
                for member in tar.getmembers():
                    texts.append(member.name)
                    if not member.name.endswith(".jpg"):
                        texts.append(tar.extractfile(member).read().decode())
        elif path.suffix in (".json", ".yaml", ".csv", ".txt", ".md", ".log"):
            texts.append(path.read_text(encoding="utf-8"))
    return "\n".join(texts)


def _leaks(text: str) -> list[str]:
    lowered = text.lower()
    return [value for value in FORBIDDEN if value in lowered]


def test_scrubbing_replaces_header_values_in_any_spelling_and_common_shapes() -> None:
    identifiers = {"names": ["Doe^Jane^Quincy", "House^Gregory"], "ids": ["MRN0042424242", "ACC98765"],
                   "dates": ["19610203"], "texts": ["Mercy General Hospital"]}  # fmt: skip
    text = ("JANE DOE and doe, jane; Doe^Jane seen by GREGORY house at mercy general hospital. "
            "IDs mrn-0042424242 / ACC 98765; born Feb 3rd, 1961, 3.2.1961, 2/3/61. Right upper lobe, T2, 5 mm.")  # fmt: skip
    scrubbed = scrub_report_text(text, identifiers)
    assert not _leaks(scrubbed.text) and "0042424242" not in scrubbed.text and "98765" not in scrubbed.text
    assert "Right upper lobe, T2, 5 mm." in scrubbed.text and REPLACEMENT in scrubbed.text
    assert scrubbed.spans_replaced >= 12
    # common shapes go whatever the header says
    generic = scrub_report_text(
        "MRN: 55512345. DOB 1970-01-02, admitted March 4, 1980, tel 555-123-4567, mail j.smith@example.org, "
        "SSN 123-45-6789. Case 2019/4411. Study of the left knee.",
        {},
    )
    for value in ("55512345", "1970", "1980", "4567", "example.org", "6789", "4411"):
        assert value not in generic.text, value
    assert generic.text.endswith("Study of the left knee.") and generic.spans_replaced == 7
    # hyphenated names part by part; a short numeric study ID does not eat measurements
    other = scrub_report_text("Smith and SMITH-JONES; 12 mm lesion.", {"names": ["Smith-Jones^Ann"], "ids": ["12"]})
    assert other.text == f"{REPLACEMENT} and {REPLACEMENT}; 12 mm lesion." and other.spans_replaced == 2
    # text without identifiers is left alone, and says so
    plain = scrub_report_text("Small nodule in the right upper lobe.", identifiers)
    assert plain == type(plain)("Small nodule in the right upper lobe.", 0)


def test_report_identifiers_reach_no_output_file_log_or_store(tmp_path: Path, monkeypatch, capsys) -> None:
    from domains.biomed import ingest
    from domains.biomed.embedding import embed_into_store
    from domains.biomed.model import BiomedClipModel
    from domains.biomed.open_clip_loading import load_open_clip_model
    from shared.store import EmbeddingStore

    monkeypatch.chdir(tmp_path)
    pixels = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32)
    write_dicom(tmp_path / "in" / "scan.dcm", pixels, BodyPartExamined="CHEST", SOPClassUID=CTImageStorage, **HEADER)
    (tmp_path / "reports.csv").write_text("id,report\n" + f'scan,"{REPORT}"\n', encoding="utf-8")
    manifest_path = ingest.main(["--input", "in", "--reports", "reports.csv", "--dicom.image_size", "32",
                                 "--run_name", "phi-report"])  # fmt: skip
    log = capsys.readouterr()
    manifest = json.loads(manifest_path.read_text())
    (record,) = manifest["samples"]
    assert record["caption_source"] == "report" and record["caption_scrub"]["ran"] is True
    assert record["caption_scrub"]["spans_replaced"] >= 15  # a count, never the spans
    outputs = _every_output_text(tmp_path / "runs")
    assert "small nodule in the right upper lobe, 5 mm." in outputs  # the clinical content survives
    assert not _leaks(outputs), "identifiers in the run folder, shards or manifest"
    assert not _leaks(log.out + log.err), "identifiers in the log"

    loaded = load_open_clip_model("tiny", pretrained_towers=False)
    store_path = tmp_path / "store.duckdb"
    embed_into_store(BiomedClipModel(loaded.model), loaded, str(manifest_path.parent), store_path, "phi", "tiny", "v1")
    store = EmbeddingStore(store_path)
    tables = list(store.sql("SELECT table_name FROM information_schema.tables")["table_name"])
    frames = [store.sql(f'SELECT * FROM "{table}"') for table in tables]  # noqa: S608
    dump = "\n".join(frame.drop(columns=["vec"], errors="ignore").astype(str).to_csv() for frame in frames)
    store.close()
    assert "small nodule" in dump and not _leaks(dump), "identifiers in the store"


def test_burned_in_text_is_skipped_by_default_and_flagged(tmp_path: Path, monkeypatch, capsys) -> None:
    from domains.biomed import ingest

    monkeypatch.chdir(tmp_path)
    pixels = np.arange(16 * 16, dtype=np.uint16).reshape(16, 16)
    write_dicom(tmp_path / "in" / "burned.dcm", pixels, Modality="US", BurnedInAnnotation="YES")
    write_dicom(tmp_path / "in" / "us_undeclared.dcm", pixels, Modality="US", SOPClassUID=UltrasoundImageStorage)
    write_dicom(tmp_path / "in" / "sc_undeclared.dcm", pixels, Modality="CT")  # secondary capture SOP class
    write_dicom(tmp_path / "in" / "ct_clean.dcm", pixels, SOPClassUID=CTImageStorage)
    write_dicom(tmp_path / "in" / "us_declared_no.dcm", pixels, Modality="US", BurnedInAnnotation="NO")

    manifest = json.loads(ingest.main(["--input", "in", "--dicom.image_size", "16", "--run_name", "b"]).read_text())
    assert manifest["num_samples"] == 4
    (skip,) = [item for item in manifest["skipped"] if item["source"] == "burned.dcm"]
    assert skip["reason"].startswith("burned-in annotation (BurnedInAnnotation = YES")
    assert "--dicom.include_burned_in" in skip["reason"]
    assert manifest["burned_in_annotation"] == {"included": False, "skipped": 1}
    flags = sorted(tuple(record["flags"]) for record in manifest["samples"])
    assert flags == [(), (), ("burned_in_annotation_unknown",), ("burned_in_annotation_unknown",)]
    assert "burned-in annotation: 1" in capsys.readouterr().out

    manifest = json.loads(ingest.main(["--input", "in", "--dicom.image_size", "16", "--run_name", "b2",
                                       "--dicom.include_burned_in", "true"]).read_text())  # fmt: skip
    assert manifest["num_samples"] == 5 and manifest["burned_in_annotation"] == {"included": True, "skipped": 0}
    declared = [r for r in manifest["samples"] if r["burned_in_annotation"] == "YES"]
    assert [r["flags"] for r in declared] == [["burned_in_annotation_declared"]]


def test_reports_that_name_no_file_are_listed(tmp_path: Path, monkeypatch, capsys) -> None:
    from domains.biomed import ingest

    monkeypatch.chdir(tmp_path)
    write_dicom(tmp_path / "in" / "a" / "scan1.dcm", np.arange(64, dtype=np.uint16).reshape(8, 8))
    (tmp_path / "in" / "broken.dcm").write_bytes(b"DICM" * 4)
    (tmp_path / "reports.csv").write_text(
        "id,report\na/scan1,Nodule.\nbroken,Unreadable file.\nscan_2,No such file.\nghost.dcm,Nor this.\n"
    )
    manifest_path = ingest.main(["--input", "in", "--reports", "reports.csv", "--dicom.image_size", "8"])
    manifest = json.loads(manifest_path.read_text())
    # 'broken' names a file (which was skipped, and is listed as such); the other two name nothing
    assert manifest["unmatched_reports"] == ["ghost.dcm", "scan_2"]
    assert [item["source"] for item in manifest["skipped"]] == ["broken.dcm"]
    assert "2 report(s) in --reports name no file" in capsys.readouterr().out
    assert "No such file." not in manifest_path.read_text()  # ids are listed, report texts are not


@pytest.mark.parametrize("modality", ["US", "SC", "OT"])
def test_modalities_with_common_burned_in_text_are_flagged_when_undeclared(tmp_path: Path, modality: str) -> None:
    from domains.biomed.dicom import DicomChainConfig, read_dicom_folder

    write_dicom(tmp_path / "x.dcm", np.zeros((8, 8), np.uint16), Modality=modality, SOPClassUID=CTImageStorage)
    (sample,) = read_dicom_folder(tmp_path, DicomChainConfig(image_size=8))
    assert sample.manifest_record["flags"] == ["burned_in_annotation_unknown"]
    assert sample.metadata["dicom"]["burned_in_annotation"] == "absent"
