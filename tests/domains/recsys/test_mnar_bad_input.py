"""Bad input to ``python -m domains.recsys.mnar`` ends in one line naming the file or flag, with exit status 2.

Each case goes through :func:`shared.cli.run_command`, as the command does: one ``error: …`` line on stderr,
no traceback, no "next:" hint, and no run folder left behind (everything is checked before the run starts).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from command_contract import expect_command_failure

from domains.recsys.mnar.__main__ import main
from shared.cli import run_command

GOOD_LOG = "user,item,click,propensity\nann,x,1,0.5\nann,y,0,0.5\nbob,x,1,0.25\ncy,z,1,0.1\n"


def refused(argv: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> str:
    """Run the command expecting a user error; check the contract and return the error line."""
    runs = tmp_path / "runs"
    failure = expect_command_failure(main, [*argv, "--runs_root", str(runs), "--store", "null"], capsys)
    assert len(failure.line) < 400, failure.line  # a huge input line is not echoed whole
    assert "next:" not in failure.out
    assert not (runs / "recsys").exists(), "bad input must be refused before the run folder is created"
    return failure.line


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def write_text(path: Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


CLICK_LOGS: dict[str, tuple[Callable[[Path], Path], str, list[str]]] = {
    "empty": (lambda d: write_text(d / "log.csv", ""), "file is empty", []),
    "binary": (lambda d: write_bytes(d / "log.csv", bytes(range(256)) * 16), "not UTF-8", []),
    "latin1": (lambda d: write_bytes(d / "log.csv", "user,item,click\nJosé,café,1\n".encode("latin-1")), "UTF-8", []),
    "utf16": (lambda d: write_bytes(d / "log.csv", GOOD_LOG.encode("utf-16")), "UTF-8", []),
    "huge_line": (lambda d: write_text(d / "log.csv", "user,item,click" + "x" * 2_000_000), "missing column", []),
    "missing_columns": (lambda d: write_text(d / "log.csv", "user,item\nann,x\n"), "missing column(s) click", []),
    "header_only": (lambda d: write_text(d / "log.csv", "user,item,click\n"), "no rows", []),
    "nan_propensity": (
        lambda d: write_text(d / "log.csv", "user,item,click,propensity\nann,x,1,nan\n"),
        "log.csv:2: propensity is not a number",
        [],
    ),
    "inf_propensity": (
        lambda d: write_text(d / "log.csv", "user,item,click,propensity\nann,x,1,inf\n"),
        "propensity inf not in (0, 1]",
        [],
    ),
    "missing_logged_propensity": (
        lambda d: write_text(d / "log.csv", "user,item,click,propensity\nann,x,1,0.5\nbob,y,1,\n"),
        "--propensity logged",
        ["--propensity", "logged"],
    ),
    "non_numeric_click": (
        lambda d: write_text(d / "log.csv", "user,item,click\nann,x,yes\n"),
        "log.csv:2: click is not a number",
        [],
    ),
    "no_clicks": (lambda d: write_text(d / "log.csv", "user,item,click\nann,x,0\nbob,y,0\n"), "no training clicks", []),
    "not_parquet": (lambda d: write_text(d / "log.parquet", GOOD_LOG), "log.parquet: cannot read", []),
    "missing_file": (lambda d: d / "absent.csv", "absent.csv: training click log not found", []),
    "folder_for_file": (lambda d: d, "is a folder", []),
}


@pytest.mark.parametrize("case", sorted(CLICK_LOGS))
def test_bad_click_logs_name_the_file(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make, message, extra = CLICK_LOGS[case]
    data = tmp_path / "data"
    data.mkdir()
    path = make(data)
    line = refused(["--dataset", "click_log", "--input", str(path), *extra], capsys, tmp_path)
    assert message in line
    assert path.name in line or "--propensity" in line


def test_bad_randomized_test_log_names_it(tmp_path: Path, capsys) -> None:
    train = write_text(tmp_path / "train.csv", GOOD_LOG)
    test = write_bytes(tmp_path / "random.csv", "user,item,click\nJosé,x,1\n".encode("latin-1"))
    assert "random.csv" in refused(
        ["--dataset", "click_log", "--input", str(train), "--test_input", str(test)], capsys, tmp_path
    )


def test_a_test_log_without_relevant_items_is_refused_under_standard_conventions(tmp_path: Path, capsys) -> None:
    train = write_text(tmp_path / "train.csv", GOOD_LOG)
    test = write_text(tmp_path / "random.csv", "user,item,click\nann,z,0\nbob,y,0\n")
    argv = ["--dataset", "click_log", "--input", str(train), "--test_input", str(test), "--conventions", "standard"]
    assert "random.csv: no relevant test item" in refused(argv, capsys, tmp_path)


def _coat(folder: Path, train: str = "5 0 3\n0 4 0\n", test: str = "0 2 0\n4 0 5\n") -> Path:
    folder.mkdir()
    write_text(folder / "train.ascii", train)
    write_text(folder / "test.ascii", test)
    return folder


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ("5 0 nan\n0 4 0\n", "train.ascii:1: column 3 is not a number"),
        ("5 0 inf\n0 4 0\n", "train.ascii:1: column 3: rating inf"),
        ("5 0 3\n0 4\n", "train.ascii:2: expected 3 columns"),
        ("", "train.ascii: file is empty"),
    ],
)
def test_bad_coat_matrices_name_file_and_line(train: str, message: str, tmp_path: Path, capsys) -> None:
    folder = _coat(tmp_path / "coat", train=train)
    assert message in refused(["--dataset", "coat", "--input", str(folder)], capsys, tmp_path)


def test_binary_coat_matrix_and_yahoo_file_name_the_file(tmp_path: Path, capsys) -> None:
    folder = _coat(tmp_path / "coat")
    write_bytes(folder / "test.ascii", bytes(range(256)))
    assert "test.ascii: not UTF-8" in refused(["--dataset", "coat", "--input", str(folder)], capsys, tmp_path)
    yahoo = tmp_path / "yahoo"
    yahoo.mkdir()
    write_text(yahoo / "train.txt", "1 1 5\n2 2 4\n")
    write_bytes(yahoo / "test.txt", "1 2 4\n".encode("utf-16"))
    assert "test.txt: not UTF-8" in refused(["--dataset", "yahoo_r3", "--input", str(yahoo)], capsys, tmp_path)


def test_recbole_file_in_another_encoding_names_the_file(tmp_path: Path, capsys) -> None:
    inter = write_bytes(tmp_path / "toy.inter", "user_id:token\titem_id:token\nJosé\tx\n".encode("latin-1"))
    assert "toy.inter: not UTF-8" in refused(["--dataset", "recbole", "--input", str(inter)], capsys, tmp_path)


def test_a_file_where_a_folder_is_expected_and_a_missing_folder(tmp_path: Path, capsys) -> None:
    afile = write_text(tmp_path / "coat.txt", "5 0\n")
    assert "coat.txt: is a file" in refused(["--dataset", "coat", "--input", str(afile)], capsys, tmp_path)
    assert "nowhere: Coat folder not found" in refused(
        ["--dataset", "coat", "--input", str(tmp_path / "nowhere")], capsys, tmp_path
    )


def _good_coat(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    ratings = rng.integers(1, 6, size=(12, 10))
    train = np.where(rng.random(ratings.shape) < 0.4, ratings, 0)
    test = np.where((train == 0) & (rng.random(ratings.shape) < 0.3), ratings, 0)
    folder = tmp_path / "coat"
    folder.mkdir()
    pd.DataFrame(train).to_csv(folder / "train.ascii", sep=" ", header=False, index=False)
    pd.DataFrame(test).to_csv(folder / "test.ascii", sep=" ", header=False, index=False)
    return folder


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--bogus", "1"], "--bogus"),
        (["--seeds", "abc"], "seeds"),
        (["--seeds", "0"], "--seeds"),
        (["--ks", "[0, 5]"], "--ks"),
        (["--estimators", "[foo]"], "--estimators"),
        (["--estimators", "[]"], "--estimators"),
        (["--estimators", "[ubpr]"], "--estimators"),  # not a pointwise estimator: no log-loss protocol
        (["--eta", "[-1]"], "--eta"),
        (["--clip", "[1.5]"], "--clip"),
        (["--clip", "[0]"], "--clip"),
        (["--semi_synthetic.exposure_powers", "[0]"], "--semi_synthetic.exposure_powers"),
        (["--semi_synthetic.validation_fraction", "1.5"], "--semi_synthetic.validation_fraction"),
        (["--semi_synthetic.iterations", "0"], "--semi_synthetic.iterations"),
        (["--trainer.max_steps", "5"], "--trainer"),  # the semi-synthetic protocol has no trainer run
        (["--real.dim", "8"], "--real"),
        (["--input", "clicks.csv"], "--input"),
        (["--dataset", "yahoo_r3"], "--input"),
        (["--dataset", "netflix"], "dataset"),
        (["--run_name", "a/b"], "--run_name"),
        (["--config", "{bad_yaml}"], "bad.yaml"),
        (["--config", "{binary_yaml}"], "binary.yaml"),
        (["--config", "{absent_yaml}"], "absent.yaml"),
        (["--store", "{folder}"], "--store"),
    ],
)
def test_bad_flags_are_named(argv: list[str], named: str, tmp_path: Path, capsys) -> None:
    files = {
        "bad_yaml": write_text(tmp_path / "bad.yaml", "semi_synthetic: [iterations: 3\n  - : :\n"),
        "binary_yaml": write_bytes(tmp_path / "binary.yaml", bytes(range(256))),
        "absent_yaml": tmp_path / "absent.yaml",
        "folder": tmp_path,
    }
    argv = [argument.format(**{key: str(value) for key, value in files.items()}) for argument in argv]
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:  # --store is the flag under test here, so no default store
        run_command(
            main, [*argv, "--runs_root", str(tmp_path / "runs")] + ([] if "--store" in argv else ["--store", "null"])
        )
    captured = capsys.readouterr()
    assert stopped.value.code == 2, captured.err
    assert len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.err
    assert named in captured.err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--trainer.resume", "latest"], "--trainer.resume latest: no checkpoint"),
        (["--trainer.resume", "/some/checkpoint.pt"], "--trainer.resume"),
        (["--trainer.max_steps", "0"], "--trainer.max_steps"),
        (["--trainer.max_epochs", "2"], "--trainer.max_epochs"),  # disagrees with the preset's max_steps
        (["--trainer.optimizer", "rmsprop"], "--trainer.optimizer"),
        (["--trainer.select_metric", "mar_DCG@5"], "--trainer.select_metric"),  # would be silently unused
        (["--real.validation_fraction", "1.5"], "--real.validation_fraction"),
        (["--real.positive_fraction", "0"], "--real.positive_fraction"),
        (["--estimators", "[oracle]"], "--estimators"),
        (["--semi_synthetic.iterations", "10"], "--semi_synthetic"),
        (["--test_input", "test.ascii"], "--test_input"),
        (["--propensity", "logged"], "--propensity logged"),  # this Coat copy has no propensities.ascii
    ],
)
def test_bad_real_data_settings_are_named(argv: list[str], named: str, tmp_path: Path, capsys) -> None:
    folder = _good_coat(tmp_path)
    base = ["--dataset", "coat", "--input", str(folder), "--trainer.progress_bar", "false"]
    assert named in refused([*base, *argv], capsys, tmp_path)


def test_nothing_to_evaluate_is_refused(tmp_path: Path, capsys) -> None:
    inter = write_text(tmp_path / "toy.inter", "user_id:token\titem_id:token\nu1\ti1\nu2\ti2\n")
    argv = ["--dataset", "recbole", "--input", str(inter), "--real.validation_fraction", "0"]
    assert "nothing to evaluate" in refused(argv, capsys, tmp_path)
