"""Suite-wide test settings (offline model hubs, a project-local temp dir, headless plotting) and the
``command_fails`` fixture that checks every command's one-line error contract."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from command_contract import CommandFailure, expect_command_failure  # tests/ is on pytest's pythonpath

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def command_fails(capsys: pytest.CaptureFixture[str]) -> Callable[..., CommandFailure]:
    """:func:`command_contract.expect_command_failure` with this test's ``capsys``."""

    def run(
        main: Callable[[list[str]], Any], argv: list[str], code: int = 2, names: tuple[str, ...] = ()
    ) -> CommandFailure:
        return expect_command_failure(main, argv, capsys, code, names)

    return run
