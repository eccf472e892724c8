"""Dataclass configs on the command line: ``--config file.yaml`` plus flag overrides, via jsonargparse.

Every command in the suite declares one dataclass (nested dataclasses allowed) with a docstring under each
field; ``--help`` shows those docstrings, ``--print_config`` prints the resolved YAML, and the resolved
config is saved in the run folder so a run can be repeated exactly.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import os
import re
import sys
import textwrap
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from jsonargparse import ActionConfigFile, ArgumentParser, set_parsing_settings

from shared.quiet_output import silence_library_chatter
from shared.user_errors import NothingProduced, UserError

set_parsing_settings(docstring_parse_attribute_docstrings=True)

ConfigT = TypeVar("ConfigT")
ResultT = TypeVar("ResultT")

DEBUG_FLAG = "--debug"


def build_parser(config_cls: type, prog: str | None = None, description: str | None = None) -> ArgumentParser:
    """Return the jsonargparse parser for ``config_cls`` (exposed for tests and for composing commands)."""
    parser = ArgumentParser(
        prog=prog,
        description=description or (config_cls.__doc__ or "").strip(),
        exit_on_error=False,
    )
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file with values for any of the fields below.")
    parser.add_class_arguments(config_cls, nested_key=None, fail_untyped=True)
    return parser


def parse_config(
    config_cls: type[ConfigT],
    argv: Sequence[str] | None = None,
    prog: str | None = None,
    description: str | None = None,
) -> ConfigT:
    """Parse ``argv`` (default ``sys.argv[1:]``) into an instance of the dataclass ``config_cls``.

    Precedence: dataclass defaults < ``--config`` files (in order) < flags given after them.

    Raises:
        UserError: an unknown flag, a value of the wrong type, or a ``--config`` file that is missing or
            does not parse; the message is one line naming the flag or file.
    """
    parser = build_parser(config_cls, prog=prog, description=description)
    arguments = list(sys.argv[1:] if argv is None else argv)
    # jsonargparse spells it --print_config; accept the dashed form users type as well.
    arguments = ["--print_config" if arg == "--print-config" else arg for arg in arguments]
    for config_file in _config_files(arguments):
        _check_config_file(config_file)
    try:
        namespace = parser.parse_args(arguments)
        instantiated = parser.instantiate(namespace)
    except argparse.ArgumentError as error:
        raise UserError(_flag_message(_one_line(str(error))) + " (see --help)") from error
    values = {field.name: getattr(instantiated, field.name) for field in dataclasses.fields(config_cls)}
    return config_cls(**values)


def _config_files(arguments: Sequence[str]) -> list[str]:
    files = []
    for index, argument in enumerate(arguments):
        if argument == "--config" and index + 1 < len(arguments):
            files.append(arguments[index + 1])
        elif argument.startswith("--config="):
            files.append(argument.split("=", 1)[1])
    return files


def _check_config_file(path: str) -> None:
    """Refuse a ``--config`` file that is missing, not text or not a YAML mapping, naming the file.

    (jsonargparse would report a YAML error against ``<unicode string>`` without the file's name.)
    """
    file = Path(path)
    if not file.exists():
        raise UserError(f"--config {path}: no such file")
    if file.is_dir():
        raise UserError(f"--config {path}: is a folder, not a YAML file")
    try:
        loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"--config {path}: not UTF-8 text") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "does not parse"
        raise UserError(f"--config {path}{where}: not valid YAML ({problem})") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise UserError(f"--config {path}: expected a mapping of settings, got a {type(loaded).__name__}")


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain-dict view of a (possibly nested) dataclass config, with tuples as lists (YAML-friendly)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, Path):
            return str(value)
        return value

    return plain(config)


def field_docstrings(config_cls: type) -> dict[str, str]:
    """The docstring written under each field of the dataclass ``config_cls`` (``""`` where there is none).

    Read from the source (the string statement that follows a field's annotation), as ``--help`` shows it;
    tests use it to check that every option a command offers is documented.
    """
    docs = {field.name: "" for field in dataclasses.fields(config_cls)}
    for klass in reversed(config_cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        body = tree.body[0].body  # type: ignore[attr-defined]
        for statement, following in zip(body, body[1:], strict=False):
            if (
                isinstance(statement, ast.AnnAssign)
                and isinstance(statement.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[statement.target.id] = inspect.cleandoc(following.value.value)
    return docs


_PARSER_KEY = re.compile(r'^Parser key "(?P<key>[^"]+)":\s*(?P<rest>.*)$')
_UNION = re.compile(r"Subtypes: \[(?P<types>[^\]]*)\].*Given value: (?P<value>.*)$")
_TYPE_NAME = re.compile(r"<class '(?:[\w.]+\.)?(\w+)'>")


def _flag_message(message: str) -> str:
    """jsonargparse's ``Parser key "a.b": …`` as ``--a.b: …``, with Python type reprs made readable."""
    match = _PARSER_KEY.match(message)
    if match is None:
        return message
    rest = match["rest"]
    union = _UNION.search(rest)
    if union is not None:
        names = [name for name in _TYPE_NAME.findall(union["types"]) if name != "NoneType"]
        nullable = "NoneType" in union["types"]
        rest = f"expected {' or '.join(names)}{' or null' if nullable else ''}, got {union['value']!r}"
    rest = (
        _TYPE_NAME.sub(lambda m: m.group(1), rest).replace("Expected a ", "expected ").replace(". Got value:", ", got")
    )
    return f"--{match['key']}: {rest}"


def _one_line(message: str) -> str:
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def describe_user_error(error: BaseException) -> str | None:
    """One line for an exception caused by the user's input, or None for anything else (a bug).

    User errors are :class:`UserError`; a missing, unreadable or wrong kind of path (``OSError`` with a
    file name); undecodable text; and ``ValueError`` raised by validation with its own message.
    """
    if isinstance(error, UserError):
        return _one_line(str(error))
    if isinstance(error, UnicodeDecodeError):
        return f"input is not {error.encoding} text (byte {error.start}): convert the file to UTF-8"
    if isinstance(error, OSError) and error.filename is not None:
        reason = error.strerror or type(error).__name__
        return f"{error.filename}: {reason}"
    if isinstance(error, ValueError) and str(error):
        return _one_line(str(error))
    return None


def _quiet_stdout_off_rank_zero() -> None:
    """Under ``torchrun`` / ``accelerate launch`` only rank 0 prints the console output (what was written, what to
    run next); the other ranks' stdout goes to the null device. Errors still reach stderr from every rank."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ.get("RANK", "0")) != 0:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process


def run_command(main: Callable[[list[str]], ResultT], argv: Sequence[str] | None = None) -> None:
    """Run a command's ``main(argv)`` the way every ``python -m domains.<d>.<command>`` does.

    Exit status: 0 on success; 2 with one line ``error: …`` for a user error (see
    :func:`describe_user_error`); 1 with ``nothing produced: …`` for :class:`NothingProduced`; 1 with one
    line for an unexpected error. ``--debug`` (anywhere in ``argv``) shows the full traceback instead.
    ``SystemExit`` (``--help``, a stopped training run) passes through unchanged.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    _quiet_stdout_off_rank_zero()
    debug = DEBUG_FLAG in arguments
    arguments = [argument for argument in arguments if argument != DEBUG_FLAG]
    silence_library_chatter(verbose=debug)  # library tables, partial-init notes, weight bars; not our bars
    try:
        main(arguments)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except NothingProduced as error:
        if debug:
            traceback.print_exc()
        print(f"nothing produced: {_one_line(str(error))}", file=sys.stderr)
        raise SystemExit(1) from None
    except Exception as error:  # noqa: BLE001 - the one place that turns errors into exit codes
        if debug:
            traceback.print_exc()
        message = describe_user_error(error)
        if message is not None:
            print(f"error: {message}", file=sys.stderr)
            raise SystemExit(2) from None
        print(
            f"error: unexpected {type(error).__name__}: {_one_line(str(error))} (run again with --debug for the traceback)",
            file=sys.stderr,
        )
        raise SystemExit(1) from None
