"""Commands and the demo print our own progress bars, not the libraries' tables, notes and weight bars."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

NOISY_COMMAND = textwrap.dedent(
    """
    import logging, sys, warnings
    from shared.cli import run_command

    def main(argv):
        from tqdm import tqdm
        from transformers.utils import logging as transformers_logging
        logging.warning("Model tiny initialized partially.")
        transformers_logging.get_logger("transformers.modeling_utils").warning("BertModel LOAD REPORT from: x")
        for _ in transformers_logging.tqdm(range(3), desc="Loading weights"):
            pass
        warnings.warn_explicit("torch.jit.script is deprecated", FutureWarning, "x.py", 1, module="torch_geometric.nn")
        for _ in tqdm(range(3), desc="training", file=sys.stderr, disable=False):
            pass
        logging.warning("a warning of ours")
        print('{"result": 1}')

    run_command(main, sys.argv[1:])
    """
)


def run_noisy(*argv: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("TRANSFORMERS_VERBOSITY", "PYTHONWARNINGS")}
    environment.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
    return subprocess.run(
        [sys.executable, "-c", NOISY_COMMAND, *argv], cwd=REPO, env=environment,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_a_command_prints_its_own_bars_and_warnings_but_not_library_chatter() -> None:
    result = run_noisy()
    assert result.returncode == 0, result.stderr
    assert result.stdout == '{"result": 1}\n'  # stdout stays pure JSON
    assert "training" in result.stderr and "a warning of ours" in result.stderr
    for chatter in ("initialized partially", "LOAD REPORT", "Loading weights", "FutureWarning"):
        assert chatter not in result.stderr, f"{chatter!r} printed:\n{result.stderr}"


def test_debug_shows_the_library_messages_again() -> None:
    result = run_noisy("--debug")
    assert result.returncode == 0, result.stderr
    for chatter in ("initialized partially", "LOAD REPORT", "Loading weights", "FutureWarning"):
        assert chatter in result.stderr, f"{chatter!r} missing with --debug:\n{result.stderr}"


def test_the_demo_downloads_its_emoji_source_without_npm_notices() -> None:
    makefile = (REPO / "Makefile").read_text()
    command = next(line for line in makefile.splitlines() if "npm pack" in line)
    assert "--loglevel=error" in command and ">/dev/null" in command
