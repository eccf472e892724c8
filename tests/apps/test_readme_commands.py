"""Every command the README shows parses with that command's own config, and every flag it names exists.

Each ``python -m domains.<d>.<command> …`` example (brace lists expanded, ``a|b`` alternatives taken one
by one) runs in-process with ``--print_config``: the command's real parser checks every flag and value and
exits 0 (an unknown flag, like the old ``--data.train_shards``, exits 2). Placeholders in capitals
(``DIR``, ``CSV``) are file names to the parser, which is what they stand for.
"""

from __future__ import annotations

import importlib
import itertools
import re
from pathlib import Path

import pytest
import yaml

from shared.cli import run_command

README = Path(__file__).resolve().parents[2] / "README.md"
COMMAND = re.compile(r"`(python -m domains\.[^`]+)`", flags=re.DOTALL)


def expand(command: str) -> list[list[str]]:
    """The argument lists one README example stands for (``{a,b}`` in the module, ``x|y`` in a value)."""
    words = command.split()
    module = words[2]
    match = re.fullmatch(r"(domains\.\w+)\.\{([\w,]+)\}", module)
    modules = [f"{match.group(1)}.{name}" for name in match.group(2).split(",")] if match else [module]
    values = [word.strip("'").split("|") if not word.startswith("-") else [word] for word in words[3:]]
    return [[name, *choice] for name in modules for choice in itertools.product(*values)]


def readme_examples() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    commands = COMMAND.findall(text)
    # Launcher lines in code blocks (torchrun …/accelerate launch … -m domains.<d>.<command> flags).
    for block in re.findall(r"```.*?```", text, flags=re.DOTALL):
        for line in block.splitlines():
            if " -m domains." in line and not line.lstrip().startswith("python -m"):
                command = line.split(" -m ", 1)[1].replace("...", "").rstrip(" \\")
                # torchrun passes what follows a "--" after the module to it unchanged (and drops the "--").
                module, _, rest = command.partition(" ")
                rest = rest[3:] if rest.startswith("-- ") else rest
                commands.append(f"python -m {module} {rest}".strip())
    examples = []
    for command in commands:
        command = " ".join(command.split())
        if "<command>" in command or "<d>" in command.split()[2]:
            continue
        examples += expand(command.replace("<name>", "demo").replace("<ingest>", "ingest-demo"))
    return examples


def parsed_config(arguments: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    module = importlib.import_module(arguments[0])
    if not hasattr(module, "main"):  # a package run as python -m: its __main__ module holds main
        module = importlib.import_module(arguments[0] + ".__main__")
    with pytest.raises(SystemExit) as stopped:
        run_command(module.main, [*arguments[1:], "--print_config"])
    captured = capsys.readouterr()
    assert stopped.value.code in (0, None), f"{' '.join(arguments)} is refused: {captured.err.strip()}"
    return yaml.safe_load(captured.out)


def launcher_flags() -> set[str]:
    """Options of the launchers the README shows (torchrun, accelerate launch), read from their own parsers."""
    from accelerate.commands.launch import launch_command_parser
    from torch.distributed.run import get_args_parser

    flags = set()
    for parser in (get_args_parser(), launch_command_parser()):
        flags |= {option.lstrip("-") for action in parser._actions for option in action.option_strings}
    return flags


def dotted_keys(config: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in config.items():
        keys.add(prefix + key)
        if isinstance(value, dict):
            keys |= dotted_keys(value, prefix + key + ".")
    return keys


def test_every_readme_command_parses_with_its_config_and_every_flag_exists(capsys) -> None:
    examples = readme_examples()
    assert len(examples) >= 20, examples  # the extraction found the README's examples
    known_flags: set[str] = set()
    for arguments in examples:
        config = parsed_config(arguments, capsys)
        known_flags |= dotted_keys(config)
        for word in arguments[1:]:
            if word.startswith("--") and word != "--config":
                assert word[2:] in dotted_keys(config), f"{arguments[0]}: {word} is not one of its options"
    text = README.read_text(encoding="utf-8")
    # Flags the README names on their own (``--trainer.max_steps N``): each is an option of some command.
    code = re.findall(r"```.*?```|`[^`]+`", text, flags=re.DOTALL)
    # A launcher's own flags (torchrun --standalone, accelerate launch --multi_gpu) come before its ``-m``.
    code = [
        line.split(" -m ", 1)[-1] if "torchrun" in line or "accelerate launch" in line else line
        for span in code
        for line in span.splitlines()
    ]
    mentioned = {flag for line in code for flag in re.findall(r"(?<![\w-])--([a-z_]+(?:\.[a-z_]+)*)", line)}
    general = {"help", "print_config", "print-config", "config", "debug"} | launcher_flags()
    unknown = sorted(flag for flag in mentioned - general if flag not in known_flags)
    assert not unknown, f"README names flags no command has: {unknown}"
