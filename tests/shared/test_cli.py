"""Dataclass configs: YAML + flag overrides, documented --help, --print_config, saved resolved config."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from shared.cli import field_docstrings, parse_config, run_command
from shared.run_folder import RunFolder
from shared.trainer import TrainerConfig
from shared.user_errors import NothingProduced, UserError


@dataclass
class ExampleConfig:
    """An example command."""

    run_name: str = "demo"
    """Name of the run folder."""
    embed_dim: int = 64
    """Width of the shared embedding space."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    """Training loop settings."""


def test_yaml_then_flags_override_defaults(tmp_path: Path) -> None:
    config_file = tmp_path / "preset.yaml"
    config_file.write_text("embed_dim: 128\ntrainer:\n  lr: 0.001\n  max_steps: 7\n")
    config = parse_config(ExampleConfig, ["--config", str(config_file), "--trainer.lr", "0.01"])
    assert isinstance(config, ExampleConfig) and isinstance(config.trainer, TrainerConfig)
    assert config.embed_dim == 128
    assert config.trainer.lr == 0.01 and config.trainer.max_steps == 7
    assert config.trainer.betas == (0.9, 0.98)


def test_help_documents_every_field(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_config(ExampleConfig, ["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Width of the shared embedding space." in text
    assert "Resume from 'latest'" in text
    assert "--print_config" in text


def test_unknown_flag_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        run_command(lambda argv: parse_config(ExampleConfig, argv), ["--trainer.learning_rate", "1"])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "learning_rate" in error
    assert error.count("\n") == 1 and "Traceback" not in error


def test_print_config_and_saved_config_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_config(ExampleConfig, ["--embed_dim", "32", "--print-config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["embed_dim"] == 32
    config = parse_config(ExampleConfig, ["--embed_dim", "32"])
    saved = RunFolder(tmp_path).save_config(config)
    reparsed = parse_config(ExampleConfig, ["--config", str(saved)])
    assert reparsed == config


def test_run_dir_rejects_unsafe_names(tmp_path: Path) -> None:
    assert RunFolder.create("astro", "demo-1", root=tmp_path).path == tmp_path / "astro" / "demo-1"
    with pytest.raises(UserError, match="run name"):
        RunFolder.create("astro", "../escape", root=tmp_path)


def _exit_of(main, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        run_command(main, argv)
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


def _raiser(error: BaseException):
    def main(argv: list[str]) -> None:
        raise error

    return main


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (UserError("--input posts.jsonl line 3: not valid JSON\n(extra detail)"), "--input posts.jsonl line 3"),
        (ValueError("--top_n: must be >= 1, got 0"), "--top_n: must be >= 1"),
        (FileNotFoundError(2, "No such file or directory", "data/missing.csv"), "data/missing.csv: No such file"),
        (IsADirectoryError(21, "Is a directory", "data/"), "data/: Is a directory"),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), "not utf-8 text"),
    ],
)
def test_user_errors_exit_2_with_one_line(
    error: BaseException, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _exit_of(_raiser(error), [], capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and expected in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_nothing_produced_exits_1_and_unexpected_errors_hint_at_debug(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _exit_of(_raiser(NothingProduced("all 3 posts were skipped: no image")), [], capsys)
    assert (code, err) == (1, "nothing produced: all 3 posts were skipped: no image\n")
    code, _, err = _exit_of(_raiser(KeyError("x")), [], capsys)
    assert code == 1 and err.count("\n") == 1 and "--debug" in err and "KeyError" in err


def test_debug_shows_the_traceback_and_is_not_passed_on(capsys: pytest.CaptureFixture[str]) -> None:
    seen = []

    def main(argv: list[str]) -> None:
        seen.append(argv)
        raise UserError("--x: bad")

    code, _, err = _exit_of(main, ["--a", "1", "--debug"], capsys)
    assert code == 2 and seen == [["--a", "1"]]
    assert "Traceback" in err and err.rstrip().endswith("error: --x: bad")


def test_success_and_help_pass_through(capsys: pytest.CaptureFixture[str]) -> None:
    run_command(lambda argv: None, [])
    code, out, _ = _exit_of(lambda argv: parse_config(ExampleConfig, argv), ["--help"], capsys)
    assert code == 0 and "Width of the shared embedding space." in out


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--embed_dim", "many"], "--embed_dim: expected int, got many"),
        (["--trainer.max_steps", "x"], "--trainer.max_steps: expected int or null, got 'x'"),
        (["--config", "missing.yaml"], "missing.yaml"),
    ],
)
def test_bad_values_and_config_files_name_the_flag_or_file(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _exit_of(lambda a: parse_config(ExampleConfig, a), argv, capsys)
    assert code == 2 and named in err and err.count("\n") == 1


def test_unparsable_yaml_config_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("embed_dim: [1, 2\ntrainer: {\n")
    code, _, err = _exit_of(lambda a: parse_config(ExampleConfig, a), ["--config", str(broken)], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"--config {broken} line " in err and "not valid YAML" in err
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x01")
    code, _, err = _exit_of(lambda a: parse_config(ExampleConfig, a), [f"--config={binary}"], capsys)
    assert code == 2 and f"--config {binary}: not UTF-8 text" in err
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    code, _, err = _exit_of(lambda a: parse_config(ExampleConfig, a), ["--config", str(listing)], capsys)
    assert code == 2 and "expected a mapping" in err


def test_field_docstrings_reads_each_fields_documentation() -> None:
    @dataclass
    class Partly:
        documented: int = 1
        """Says what it is."""
        bare: int = 2

    assert field_docstrings(Partly) == {"documented": "Says what it is.", "bare": ""}
    docs = field_docstrings(TrainerConfig)
    assert all(docs.values()), [name for name, doc in docs.items() if not doc]
