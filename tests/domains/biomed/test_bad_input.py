"""Bad input to every biomed command, run in-process through the one top-level handler (``run_command``).

Each case must end in one line on stderr that names the file or flag, no traceback, exit 2 for a user
error and exit 1 (with no "next:" hint) when the step produced nothing.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from biomed_fixtures import PHI, biomedica_sample, write_dicom
from command_contract import expect_command_failure

from domains.biomed import embed, evaluate, export, ingest, pretrain
from shared.shards import ShardWriter

TINY = ["--model.source", "tiny", "--model.pretrained_towers", "false", "--data.batch_size", "4",
        "--trainer.log_every", "1", "--trainer.warmup_steps", "0", "--evaluate_untrained", "false",
        "--zero_shot", "none", "--export", "false", "--embed", "false"]  # fmt: skip


def good_shards(folder: Path, count: int = 6) -> Path:
    with ShardWriter(folder, prefix="ok", max_samples=count) as writer:
        for index in range(count):
            writer.write(biomedica_sample(f"k{index}", caption=f"caption number {index}"))
    return folder


def corrupt_shards(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bad-000000.tar").write_bytes(np.random.default_rng(0).bytes(4096))
    return folder


def one_dicom(folder: Path) -> Path:
    write_dicom(folder / "a" / "scan1.dcm", np.arange(64, dtype=np.uint16).reshape(8, 8), **PHI)
    return folder


def setup_files(tmp: Path) -> None:
    """Every input the cases below point at, inside the test's working folder."""
    (tmp / "empty").mkdir()
    (tmp / "binary").mkdir()
    (tmp / "binary" / "scan.dcm").write_bytes(np.random.default_rng(1).bytes(3000))
    one_dicom(tmp / "dicom")
    (tmp / "reports_latin1.csv").write_bytes("id,report\na/scan1,Épanchement pleural gauche\n".encode("latin-1"))
    (tmp / "reports_utf16.csv").write_text("id,report\na/scan1,pleural effusion\n", encoding="utf-16")
    (tmp / "reports_columns.csv").write_text("name,notes\na/scan1,pleural effusion\n")
    (tmp / "reports_empty.csv").write_text("")
    (tmp / "reports_binary.csv").write_bytes(np.random.default_rng(2).bytes(500))
    (tmp / "reports_folder.csv").mkdir()
    (tmp / "captions_huge.csv").write_text("filepath,title\na.png," + "x" * 200_000 + "\n")
    (tmp / "captions.txt").write_text("filepath,title\na.png,a caption\n")
    (tmp / "captions_bad.jsonl").write_text('{"filepath": "a.png", "title": "ok"}\n{not json\n')
    (tmp / "bad.yaml").write_text("trainer: [1, 2\n  max_steps: }\n")
    (tmp / "not_a_model.json").write_bytes(b"\xff\xfe{\x00}\x00")
    (tmp / "broken_model.json").write_text('{"model_cfg": {"embed_dim": 8, "vision_cfg": {}, "text_cfg": {}, "x": 1}')
    (tmp / "checkpoint.pt").write_bytes(np.random.default_rng(3).bytes(600))
    (tmp / "a_file").write_text("not a folder")
    (tmp / "store.duckdb").write_bytes(np.random.default_rng(4).bytes(5000))
    (tmp / "not_a_run").mkdir()
    good_shards(tmp / "shards")
    corrupt_shards(tmp / "corrupt")


# (command, argv, expected exit code, a string the one error line must contain: the file or flag)
CASES = [
    # ingest
    ("ingest", ["--input", "empty"], 1, "--input empty"),
    ("ingest", ["--input", "binary"], 1, "--input"),
    ("ingest", ["--input", "missing_folder"], 2, "missing_folder"),
    ("ingest", ["--input", "a_file"], 2, "a_file"),
    ("ingest", [], 2, "--input"),
    ("ingest", ["--input", "dicom", "--reports", "reports_latin1.csv"], 2, "reports_latin1.csv"),
    ("ingest", ["--input", "dicom", "--reports", "reports_utf16.csv"], 2, "reports_utf16.csv"),
    ("ingest", ["--input", "dicom", "--reports", "reports_columns.csv"], 2, "reports_columns.csv"),
    ("ingest", ["--input", "dicom", "--reports", "reports_empty.csv"], 2, "reports_empty.csv"),
    ("ingest", ["--input", "dicom", "--reports", "reports_binary.csv"], 2, "reports_binary.csv"),
    ("ingest", ["--input", "dicom", "--reports", "reports_folder.csv"], 2, "reports_folder.csv"),
    ("ingest", ["--input", "dicom", "--reports", "no_such_reports.csv"], 2, "no_such_reports.csv"),
    ("ingest", ["--input", "dicom", "--captions", "captions_huge.csv"], 2, "captions_huge.csv"),
    ("ingest", ["--input", "dicom", "--captions", "captions.txt"], 2, "captions.txt"),
    ("ingest", ["--input", "dicom", "--captions", "captions_bad.jsonl"], 2, "captions_bad.jsonl:2"),
    ("ingest", ["--input", "dicom", "--captions", "captions.txt", "--reports", "reports_columns.csv"], 2, "--reports"),
    ("ingest", ["--input", "dicom", "--max_samples_per_shard", "lots"], 2, "max_samples_per_shard"),
    ("ingest", ["--input", "dicom", "--max_samples_per_shard", "0"], 2, "--max_samples_per_shard"),
    ("ingest", ["--input", "dicom", "--dicom.voi", "sunset"], 2, "--dicom.voi"),
    ("ingest", ["--input", "dicom", "--out_dir", "a_file"], 2, "a_file"),
    ("ingest", ["--input", "dicom", "--shards", "x"], 2, "--shards"),
    ("ingest", ["--config", "bad.yaml"], 2, "config"),
    ("ingest", ["--input", "dicom", "--run_name", "../escape"], 2, "--run_name"),
    # pretrain
    ("pretrain", [*TINY, "--data.train", "shards", "--trainer.resume", "latest"], 2, "--trainer.resume"),
    ("pretrain", [*TINY, "--data.train", "shards", "--trainer.resume", "no/such.pt"], 2, "--trainer.resume"),
    ("pretrain", [*TINY, "--data.train", "no_such_shards"], 2, "--data.train"),
    ("pretrain", [*TINY, "--data.train", "empty"], 2, "--data.train"),
    ("pretrain", [*TINY, "--data.train", "corrupt"], 2, "--data.train corrupt/bad-000000.tar: not a tar shard"),
    ("pretrain", [*TINY, "--data.train", "binary/scan.dcm"], 2, "--data.train binary/scan.dcm: not a tar shard"),
    ("pretrain", [*TINY, "--data.train", "reports_utf16.csv"], 2, "--data.train reports_utf16.csv: not a tar shard"),
    ("pretrain", [*TINY, "--data.train", "shards", "--data.validation", "no_such_shards"], 2, "--data.validation"),
    ("pretrain", [*TINY, "--data.train", "shards", "--trainer.max_steps", "0"], 2, "--trainer.max_steps"),
    ("pretrain", [*TINY, "--data.train", "shards", "--trainer.max_steps", "ten"], 2, "trainer.max_steps"),
    ("pretrain", [*TINY, "--data.train", "shards", "--trainer.max_epochs", "1"], 2, "--trainer.max_epochs"),
    ("pretrain", [*TINY, "--data.train", "shards", "--zero_shot", "xray"], 2, "--zero_shot"),
    ("pretrain", [*TINY, "--data.train", "shards", "--model.wise_ft_alpha", "1.5"], 2, "--model.wise_ft_alpha"),
    ("pretrain", [*TINY, "--data.train", "shards", "--model.wise_ft_alpha", "inf"], 2, "wise_ft_alpha"),
    ("pretrain", [*TINY, "--data.train", "shards", "--data.batch_size", "0"], 2, "--data.batch_size"),
    ("pretrain", [*TINY, "--data.train", "shards", "--data.mode", "sometimes"], 2, "--data.mode"),
    (
        "pretrain",
        [*TINY, "--data.train", "shards", "--data.license_subsets", "[academic]"],
        2,
        "--data.license_subsets",
    ),
    ("pretrain", [*TINY, "--data.train", "shards", "--model.source", "no_such_model.json"], 2, "no_such_model.json"),
    ("pretrain", [*TINY, "--data.train", "shards", "--model.source", "not_a_model.json"], 2, "not_a_model.json"),
    ("pretrain", [*TINY, "--data.train", "shards", "--model.source", "broken_model.json"], 2, "broken_model.json"),
    ("pretrain", [*TINY, "--data.train", "shards", "--model.checkpoint", "checkpoint.pt"], 2, "checkpoint.pt"),
    ("pretrain", [*TINY, "--data.train", "shards", "--model.checkpoint", "empty"], 2, "empty"),
    ("pretrain", ["--config", "bad.yaml"], 2, "config"),
    ("pretrain", ["--config", "no_such.yaml"], 2, "no_such.yaml"),
    ("pretrain", ["--trainer.unknown_option", "1"], 2, "--trainer.unknown_option"),
    # evaluate
    ("evaluate", ["--run", "no_such_run", "--input", "shards"], 2, "--run no_such_run"),
    ("evaluate", ["--run", "not_a_run", "--input", "shards"], 2, "--run not_a_run"),
    ("evaluate", ["--run", "a_file", "--input", "shards"], 2, "--run a_file"),
    ("evaluate", ["--run", "not_a_run", "--model", "tiny"], 2, "--model"),
    ("evaluate", ["--model", "no_such_model.json", "--input", "shards"], 2, "--model no_such_model.json"),
    ("evaluate", ["--model", "broken_model.json", "--input", "shards"], 2, "broken_model.json"),
    ("evaluate", ["--model", "tiny", "--input", "no_such_shards"], 2, "--input no_such_shards"),
    ("evaluate", ["--model", "tiny", "--input", "empty"], 2, "--input empty"),
    ("evaluate", ["--model", "tiny", "--input", "corrupt", "--zero_shot", "none"], 1, "--input corrupt"),
    ("evaluate", ["--model", "tiny", "--input", "shards", "--ks", "[0]"], 2, "--ks"),
    ("evaluate", ["--model", "tiny", "--input", "shards", "--zero_shot", "xray"], 2, "--zero_shot"),
    ("evaluate", ["--model", "tiny", "--input", "shards", "--zero_shot", "custom"], 2, "--zero_shot"),
    ("evaluate", ["--model", "tiny", "--input", "shards", "--batch_size", "0"], 2, "--batch_size"),
    ("evaluate", ["--model", "tiny", "--input", "shards", "--label_field", "label"], 2, "--zero_shot"),
    ("evaluate", ["--shards", "shards"], 2, "--shards"),
    ("evaluate", ["--config", "bad.yaml"], 2, "config"),
    # export
    ("export", ["--run", "no_such_run"], 2, "--run no_such_run"),
    ("export", ["--run", "not_a_run"], 2, "--run not_a_run"),
    ("export", ["--model", "tiny", "--out_dir", "a_file"], 2, "a_file"),
    ("export", ["--model", "not_a_model.json"], 2, "not_a_model.json"),
    ("export", ["--model", "tiny", "--run", "not_a_run"], 2, "--run"),
    ("export", ["--config", "bad.yaml"], 2, "config"),
    # embed
    ("embed", ["--model", "tiny", "--input", "shards", "--store", "store.duckdb"], 2, "store.duckdb"),
    ("embed", ["--model", "tiny", "--input", "shards", "--store", "empty"], 2, "--store empty"),
    ("embed", ["--model", "tiny", "--input", "no_such_shards", "--store", "new.duckdb"], 2, "--input no_such_shards"),
    ("embed", ["--model", "tiny", "--input", "corrupt", "--store", "new.duckdb"], 1, "--input corrupt"),
    ("embed", ["--run", "no_such_run", "--store", "new.duckdb"], 2, "--run no_such_run"),
    ("embed", ["--model", "tiny", "--input", "shards", "--batch_size", "-1"], 2, "--batch_size"),
    ("embed", ["--config", "bad.yaml"], 2, "config"),
]
COMMANDS = {"ingest": ingest, "pretrain": pretrain, "evaluate": evaluate, "export": export, "embed": embed}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bad_input")
    setup_files(folder)
    return folder


@pytest.mark.parametrize(
    ("command", "argv", "code", "names"), CASES, ids=[f"{c[0]}:{' '.join(c[1])}"[:90] for c in CASES]
)
def test_bad_input_gives_one_line_naming_the_file_or_flag(
    command: str, argv: list[str], code: int, names: str, inputs: Path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(inputs)
    failure = expect_command_failure(COMMANDS[command].main, argv, capsys, code, (names,))
    for value in PHI.values():  # the DICOM inputs carry identifiers: no message may quote them
        for part in value.replace("^", " ").split():
            assert not re.search(rf"\b{re.escape(part)}\b", failure.line, flags=re.IGNORECASE), part


def test_nothing_is_marked_finished_after_bad_input(inputs: Path, monkeypatch, capsys) -> None:
    """A failed ingest or pretrain leaves no run.json: the explorer never picks up a run that did not finish."""
    monkeypatch.chdir(inputs)
    expect_command_failure(ingest.main, ["--input", "binary", "--run_name", "failed-ingest"], capsys, code=1)
    expect_command_failure(
        pretrain.main, [*TINY, "--data.train", "corrupt", "--run_name", "failed-pretrain"], capsys, code=2
    )
    for name in ("failed-ingest", "failed-pretrain"):
        assert not (inputs / "runs" / "biomed" / name / "run.json").exists()
    assert not os.path.exists(inputs / "runs" / "biomed" / "failed-pretrain" / "model.safetensors")
