"""Bad input to every astro command, through the one top-level handler (``run_command``) in-process.

Each case must end with exit status 2 (user error) or 1 (nothing produced), exactly one line on stderr
that names the file or flag, no traceback, and no "next:" hint when nothing was produced.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from command_contract import expect_command_failure

from domains.astro import embed, evaluate, finetune, ingest, pretrain, table
from domains.astro.catalogue import ALL_COLUMNS, CATALOGUE_ID_COLUMNS
from shared.run_folder import RunFolder

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BAD_YAML = "trainer: [unclosed\n  - : :\n"


def fails(
    main: Callable[[list[str]], object], argv: list[str], capsys: pytest.CaptureFixture[str], code: int = 2
) -> str:
    """Run a command that must fail; returns its one stderr line after checking the handler's contract."""
    return expect_command_failure(main, argv, capsys, code).line


# ------------------------------------------------------------------------------------------------ ingest


def catalogue_text(values: dict[str, str] | None = None, rows: int = 3) -> str:
    """A catalogue CSV with every required column; ``values`` overrides columns in every row."""
    header = [*CATALOGUE_ID_COLUMNS, *ALL_COLUMNS]
    lines = [",".join(header)]
    for index in range(rows):
        cells = {"asassn_name": f"ASASSN-V J0000{index}", "edr3_source_id": str(1000 + index), "variable_type": "EW"}
        cells.update({column: "1.5" for column in ALL_COLUMNS})
        cells.update(values or {})
        lines.append(",".join(cells[column] for column in header))
    return "\n".join(lines) + "\n"


@pytest.fixture
def raw_inputs(tmp_path: Path) -> dict[str, Path]:
    """Valid light-curve and spectrum folders and spectrum index (the catalogue is what each case breaks)."""
    (tmp_path / "vardb_files").mkdir()
    (tmp_path / "spectra").mkdir()
    index = tmp_path / "lamost_spec.csv"
    index.write_text("edr3_source_id,spec_filename\n1000,a.fits\n1001,b.fits\n1002,c.fits\n", encoding="utf-8")
    return {"lightcurve_dir": tmp_path / "vardb_files", "spectrum_dir": tmp_path / "spectra", "spectrum_index": index}


def ingest_argv(catalogue: Path, raw: dict[str, Path], runs_root: Path) -> list[str]:
    return ["--catalogue", str(catalogue), "--lightcurve_dir", str(raw["lightcurve_dir"]), "--spectrum_index",
            str(raw["spectrum_index"]), "--spectrum_dir", str(raw["spectrum_dir"]), "--runs_root", str(runs_root),
            "--run_name", "bad"]  # fmt: skip


CATALOGUE_FILES: dict[str, Callable[[], bytes]] = {
    "empty file": lambda: b"",
    "binary file": lambda: bytes(range(256)) * 64,
    "latin-1 text": lambda: catalogue_text({"asassn_name": "Étoile"}).encode("latin-1"),
    "UTF-16 text": lambda: catalogue_text().encode("utf-16"),
    "one huge line": lambda: b"x" * 3_000_000,
    "missing columns": lambda: b"asassn_name,edr3_source_id\nASASSN-V J1,1000\n",
}


@pytest.mark.parametrize("case", sorted(CATALOGUE_FILES))
def test_ingest_refuses_an_unusable_catalogue_naming_it(
    case: str, tmp_path: Path, raw_inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    catalogue = tmp_path / "catalogue.csv"
    catalogue.write_bytes(CATALOGUE_FILES[case]())
    line = fails(ingest.main, ingest_argv(catalogue, raw_inputs, tmp_path / "runs"), capsys)
    assert str(catalogue) in line


@pytest.mark.parametrize("value", ["inf", "-inf", "", "abc"])
def test_ingest_with_every_object_non_finite_produces_nothing_and_says_why(
    value: str, tmp_path: Path, raw_inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    catalogue = tmp_path / "catalogue.csv"
    catalogue.write_text(catalogue_text({"parallax": value}), encoding="utf-8")
    line = fails(ingest.main, ingest_argv(catalogue, raw_inputs, tmp_path / "runs"), capsys, code=1)
    reason = {"": "NaN metadata", "abc": "non-numeric metadata"}.get(value, "non-finite metadata")
    assert reason in line and "problems.csv" in line
    problems = (tmp_path / "runs" / "astro" / "bad" / "problems.csv").read_text().splitlines()
    assert len(problems) == 1 + 3 and all("parallax" in row for row in problems[1:])
    assert not RunFolder(tmp_path / "runs" / "astro" / "bad").is_finished


INGEST_FLAG_CASES: dict[str, tuple[Callable[[Path, dict[str, Path]], list[str]], str]] = {
    "nonexistent catalogue": (lambda c, r: ["--catalogue", str(c.parent / "nope.csv")], "--catalogue"),
    "folder for the catalogue": (lambda c, r: ["--catalogue", str(c.parent)], "--catalogue"),
    "file for the light-curve folder": (lambda c, r: ["--lightcurve_dir", str(c)], "--lightcurve_dir"),
    "nonexistent spectrum folder": (lambda c, r: ["--spectrum_dir", str(c.parent / "nope")], "--spectrum_dir"),
    "wrong type": (lambda c, r: ["--limit", "abc"], "limit"),
    "limit out of range": (lambda c, r: ["--limit", "0"], "--limit"),
    "shard size out of range": (lambda c, r: ["--shard_max_samples", "0"], "--shard_max_samples"),
    "coverage out of range": (lambda c, r: ["--min_spectrum_coverage", "1.5"], "--min_spectrum_coverage"),
    "unknown subset": (lambda c, r: ["--subsets", "[sub33]"], "--subsets"),
    "unknown flag": (lambda c, r: ["--bogus", "1"], "bogus"),
}


@pytest.mark.parametrize("case", sorted(INGEST_FLAG_CASES))
def test_ingest_refuses_bad_flags_naming_them(
    case: str, tmp_path: Path, raw_inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    catalogue = tmp_path / "catalogue.csv"
    catalogue.write_text(catalogue_text(), encoding="utf-8")
    extra, named = INGEST_FLAG_CASES[case]
    line = fails(
        ingest.main, ingest_argv(catalogue, raw_inputs, tmp_path / "runs") + extra(catalogue, raw_inputs), capsys
    )
    assert named in line


def test_ingest_needs_all_four_inputs_and_a_readable_config(
    tmp_path: Path, raw_inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    catalogue = tmp_path / "catalogue.csv"
    catalogue.write_text(catalogue_text(), encoding="utf-8")
    argv = ingest_argv(catalogue, raw_inputs, tmp_path / "runs")
    at = argv.index("--spectrum_dir")
    assert "--spectrum_dir" in fails(ingest.main, argv[:at] + argv[at + 2 :], capsys)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text(BAD_YAML, encoding="utf-8")
    assert str(bad_yaml) in fails(ingest.main, ["--config", str(bad_yaml)], capsys)
    raw_inputs["spectrum_index"].write_bytes(b"")
    assert str(raw_inputs["spectrum_index"]) in fails(ingest.main, ingest_argv(catalogue, raw_inputs, tmp_path), capsys)


def test_ingest_refuses_to_overwrite_shards_naming_the_folder_and_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], write_astro_ingest: Callable[..., Path]
) -> None:
    write_astro_ingest(tmp_path / "astro" / "done", n_objects=30, seeds=(1,))
    line = fails(ingest.main, ["--runs_root", str(tmp_path), "--run_name", "done"], capsys)
    assert str(tmp_path / "astro" / "done" / "shards") in line and "--overwrite" in line


# ---------------------------------------------------------------------------------------- model commands


@pytest.fixture(scope="module")
def ingest_dir(tmp_path_factory: pytest.TempPathFactory, write_astro_ingest: Callable[..., Path]) -> Path:
    return write_astro_ingest(tmp_path_factory.mktemp("ingest"), n_objects=60, seeds=(1,))


def common_paths(ingest_dir: Path, tmp_path: Path) -> dict[str, str]:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text(BAD_YAML, encoding="utf-8")
    (tmp_path / "a_file.txt").write_text("not a folder\n", encoding="utf-8")
    (tmp_path / "empty").mkdir(exist_ok=True)
    return {"ingest": str(ingest_dir), "root": str(tmp_path / "runs"), "yaml": str(bad_yaml),
            "file": str(tmp_path / "a_file.txt"), "empty": str(tmp_path / "empty"), "none": str(tmp_path / "nope")}  # fmt: skip


PRETRAIN_CASES: dict[str, tuple[list[str], str]] = {
    "nonexistent input": (["--input", "{none}"], "--input"),
    "file for the input folder": (["--input", "{file}"], "--input"),
    "empty input folder": (["--input", "{empty}"], "--input"),
    "wrong type": (["--batch_size", "abc"], "batch_size"),
    "batch size zero": (["--batch_size", "0"], "--batch_size"),
    "batch larger than the split": (["--batch_size", "100000"], "--batch_size"),
    "unknown subset": (["--subset", "sub33"], "--subset"),
    "split seed not ingested": (["--seed", "999"], "999"),
    "resume without checkpoint": (["--trainer.resume", "latest"], "--trainer.resume"),
    "max_steps against the epoch preset": (["--trainer.max_steps", "3"], "--trainer.max_epochs"),
    "unknown selection metric": (["--trainer.select_metric", "nope"], "--trainer.select_metric"),
    "unknown optimizer": (["--trainer.optimizer", "rmsprop"], "--trainer.optimizer"),
    "unknown device": (["--trainer.device", "warp-drive"], "--trainer.device"),
    "unknown flag": (["--bogus", "1"], "bogus"),
    "unparsable config": (["--config", "{yaml}"], "bad.yaml"),
}


@pytest.mark.parametrize("case", sorted(PRETRAIN_CASES))
def test_pretrain_bad_input(case: str, ingest_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = common_paths(ingest_dir, tmp_path)
    extra, named = PRETRAIN_CASES[case]
    argv = ["--input", paths["ingest"], "--runs_root", paths["root"], "--seed", "1", "--batch_size", "8",
            "--model.photometry.seq_len", "32", *[a.format(**paths) for a in extra]]  # fmt: skip
    assert named in fails(pretrain.main, argv, capsys)


def test_pretrain_refuses_unreadable_shards(
    ingest_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken-ingest"
    shutil.copytree(ingest_dir, broken)
    for shard in (broken / "shards").glob("*.tar"):
        shard.write_bytes(b"\x00garbage" * 100)
    argv = [
        "--input",
        str(broken),
        "--runs_root",
        str(tmp_path / "runs"),
        "--seed",
        "1",
        "--model.photometry.seq_len",
        "32",
    ]
    assert str(broken / "shards") in fails(pretrain.main, argv, capsys)


def fake_finished_run(folder: Path, command: str, config_text: str | bytes = "model: {}\ntrainer: {}\n") -> Path:
    """A run folder with a run.json marker of ``command`` (for the commands that read a run)."""
    folder.mkdir(parents=True)
    if isinstance(config_text, bytes):
        (folder / "config.yaml").write_bytes(config_text)
    else:
        (folder / "config.yaml").write_text(config_text, encoding="utf-8")
    (folder / "model.safetensors").write_bytes(b"\x00" * 16)
    (folder / "run.json").write_text(json.dumps({"command": command}), encoding="utf-8")
    return folder


FINETUNE_CASES: dict[str, tuple[list[str], str]] = {
    "nonexistent pretraining run": (["--run", "{none}"], "--run"),
    "a finetune run for a pretraining run": (["--run", "{finetune_run}"], "domains.astro.finetune"),
    "one pretraining run for several seeds": (["--run", "{none}", "--seeds", "[1,2]"], "--run"),
    "nonexistent input": (["--input", "{none}"], "--input"),
    "unknown mode": (["--mode", "radio"], "--mode"),
    "no seeds": (["--seeds", "[]"], "--seeds"),
    "wrong type": (["--seeds", "abc"], "seeds"),
    "unknown fusion": (["--fusion", "max"], "--fusion"),
    "unknown subset": (["--subset", "sub33"], "--subset"),
    "split seed not ingested": (["--seeds", "[999]"], "--seeds"),
    "resume without checkpoint": (["--trainer.resume", "latest"], "--trainer.resume"),
    "pretraining metric for fine-tuning": (["--trainer.select_metric", "clip_accuracy"], "--trainer.select_metric"),
    "max_steps against the epoch preset": (["--trainer.max_steps", "3"], "--trainer.max_epochs"),
    "unknown flag": (["--bogus", "1"], "bogus"),
    "unparsable config": (["--config", "{yaml}"], "bad.yaml"),
}


@pytest.mark.parametrize("case", sorted(FINETUNE_CASES))
def test_finetune_bad_input(case: str, ingest_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = common_paths(ingest_dir, tmp_path)
    paths["finetune_run"] = str(fake_finished_run(tmp_path / "runs" / "astro" / "ft", "domains.astro.finetune"))
    extra, named = FINETUNE_CASES[case]
    argv = ["--input", paths["ingest"], "--runs_root", paths["root"], "--seeds", "[1]", "--batch_size", "8",
            "--model.photometry.seq_len", "32", *[a.format(**paths) for a in extra]]  # fmt: skip
    assert named in fails(finetune.main, argv, capsys)


@pytest.fixture
def broken_seed_folders(tmp_path: Path) -> dict[str, Path]:
    """Fine-tuning seed folders whose classifier.json is binary, latin-1 or lacks fields."""
    folders = {}
    for name, content in (
        ("binary", bytes(range(256))),
        ("latin-1", '{"mode": "Étoile"}'.encode("latin-1")),
        ("missing fields", b'{"mode": "photo"}'),
    ):
        seed_dir = tmp_path / name.replace(" ", "-") / "seed-1"
        seed_dir.mkdir(parents=True)
        (seed_dir / "classifier.json").write_bytes(content)
        (seed_dir / "model.safetensors").write_bytes(b"\x00" * 16)
        folders[name] = seed_dir
    return folders


EVALUATE_CASES: dict[str, tuple[list[str], str]] = {
    "nonexistent run": (["--run", "{none}"], "--run"),
    "file for the run folder": (["--run", "{file}"], "--run"),
    "folder without seed folders": (["--run", "{empty}"], "--run"),
    "unknown split": (["--run", "{empty}", "--split", "train"], "--split"),
    "batch size zero": (["--run", "{empty}", "--batch_size", "0"], "--batch_size"),
    "unknown device": (["--run", "{empty}", "--device", "warp-drive"], "--device"),
    "wrong type": (["--batch_size", "abc"], "batch_size"),
    "unknown flag": (["--bogus", "1"], "bogus"),
    "unparsable config": (["--config", "{yaml}"], "bad.yaml"),
}


@pytest.mark.parametrize("case", sorted(EVALUATE_CASES))
def test_evaluate_bad_input(case: str, ingest_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = common_paths(ingest_dir, tmp_path)
    extra, named = EVALUATE_CASES[case]
    assert named in fails(evaluate.main, [a.format(**paths) for a in extra], capsys)


@pytest.mark.parametrize("case", ["binary", "latin-1", "missing fields"])
def test_evaluate_names_a_broken_classifier_spec(
    case: str, broken_seed_folders: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    seed_dir = broken_seed_folders[case]
    assert str(seed_dir / "classifier.json") in fails(evaluate.main, ["--run", str(seed_dir.parent)], capsys)


EMBED_CASES: dict[str, tuple[list[str], str]] = {
    "nonexistent run": (["--run", "{none}"], "--run"),
    "unfinished run": (["--run", "{empty}"], "--run"),
    "a finetune run": (["--run", "{finetune_run}"], "domains.astro.finetune"),
    "config that is not YAML": (["--run", "{not_yaml}"], "config.yaml"),
    "config that is not UTF-8": (["--run", "{utf16}"], "config.yaml"),
    "folder for the store": (["--run", "{none}", "--store", "{empty}"], "--store"),
    "top_k zero": (["--top_k", "0"], "--top_k"),
    "too many modalities": (["--min_modalities", "4"], "--min_modalities"),
    "no neighbours": (["--lof_neighbors", "0"], "--lof_neighbors"),
    "unknown device": (["--device", "warp-drive"], "--device"),
    "wrong type": (["--top_k", "abc"], "top_k"),
    "unknown flag": (["--bogus", "1"], "bogus"),
    "unparsable config": (["--config", "{yaml}"], "bad.yaml"),
}


@pytest.mark.parametrize("case", sorted(EMBED_CASES))
def test_embed_bad_input(case: str, ingest_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = common_paths(ingest_dir, tmp_path)
    runs = tmp_path / "runs" / "astro"
    paths["finetune_run"] = str(fake_finished_run(runs / "ft", "domains.astro.finetune"))
    paths["not_yaml"] = str(fake_finished_run(runs / "not-yaml", "domains.astro.pretrain", BAD_YAML))
    paths["utf16"] = str(fake_finished_run(runs / "utf16", "domains.astro.pretrain", "model: {}\n".encode("utf-16")))
    extra, named = EMBED_CASES[case]
    argv = ["--store", str(tmp_path / "store.duckdb"), *[a.format(**paths) for a in extra]]
    assert named in fails(embed.main, argv, capsys)
    assert not (tmp_path / "store.duckdb").exists()


TABLE_CASES: dict[str, tuple[list[str], str]] = {
    "unknown mode": (["--modes", "[radio]"], "--modes"),
    "unknown fine-tuning schedule": (["--finetune_trainer.schedule", "linear"], "--finetune_trainer.schedule"),
    "unknown subset": (["--subsets", "[sub33]"], "--subsets"),
    "no seeds": (["--seeds", "[]"], "--seeds"),
    "nonexistent input": (["--input", "{none}"], "--input"),
    "split seed not ingested": (["--seeds", "[1,999]"], "--seeds"),
    "max_steps against the epoch preset": (["--pretrain_trainer.max_steps", "3"], "--pretrain_trainer.max_epochs"),
    "wrong type": (["--seeds", "abc"], "seeds"),
    "unknown flag": (["--bogus", "1"], "bogus"),
    "unparsable config": (["--config", "{yaml}"], "bad.yaml"),
}


@pytest.mark.parametrize("case", sorted(TABLE_CASES))
def test_table_bad_input(case: str, ingest_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = common_paths(ingest_dir, tmp_path)
    extra, named = TABLE_CASES[case]
    argv = ["--input", paths["ingest"], "--runs_root", paths["root"], "--seeds", "[1]", "--subsets", "[full]", "--pretrain_batch_size", "8",
            "--model.photometry.seq_len", "32", *[a.format(**paths) for a in extra]]  # fmt: skip
    assert named in fails(table.main, argv, capsys)
