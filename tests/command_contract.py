"""The error contract every command keeps, checked the same way by every domain's bad-input tests.

Exit 2 with ``error: …`` for a user error, exit 1 with ``nothing produced: …`` (and no ``next:`` hint on
stdout) for an empty result; either way exactly one line on stderr, no traceback, and the file or flag at
fault named in that line (see :func:`shared.cli.run_command`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from shared.cli import run_command


@dataclass(frozen=True)
class CommandFailure:
    """What a command that failed left: its exit status, its one stderr line and its standard output."""

    code: int
    line: str
    out: str


def expect_command_failure(
    main: Callable[[list[str]], Any],
    argv: list[str],
    capsys: pytest.CaptureFixture[str],
    code: int = 2,
    names: tuple[str, ...] = (),
) -> CommandFailure:
    """Run ``main(argv)`` through ``run_command``; assert the contract; return what it left."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        run_command(main, argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert stopped.value.code == code, captured.err
    assert len(lines) == 1, f"not one line: {captured.err!r}"
    assert "Traceback" not in captured.err
    assert lines[0].startswith("nothing produced: " if code == 1 else "error: "), lines[0]
    if code == 1:
        assert "next:" not in captured.out.lower()
    for name in names:
        assert name in lines[0], f"{name!r} not named in {lines[0]!r}"
    return CommandFailure(code, lines[0], captured.out)
