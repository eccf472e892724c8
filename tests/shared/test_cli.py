"""Dataclass configs: YAML + flag overrides, documented --help, --print_config, saved resolved config."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from shared.cli import parse_config, run_command
from shared.run_folder import RunFolder
from shared.user_errors import UserError
from shared.trainer import TrainerConfig


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
