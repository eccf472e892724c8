"""Dataclass configs on the command line: ``--config file.yaml`` plus flag overrides, via jsonargparse.

Every command in the suite declares one dataclass (nested dataclasses allowed) with a docstring under each
field; ``--help`` shows those docstrings, ``--print_config`` prints the resolved YAML, and the resolved
config is saved in the run folder so a run can be repeated exactly.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from jsonargparse import ActionConfigFile, ArgumentParser, set_parsing_settings

set_parsing_settings(docstring_parse_attribute_docstrings=True)

ConfigT = TypeVar("ConfigT")

_RUN_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def build_parser(config_cls: type, prog: str | None = None, description: str | None = None) -> ArgumentParser:
    """Return the jsonargparse parser for ``config_cls`` (exposed for tests and for composing commands)."""
    parser = ArgumentParser(
        prog=prog,
        description=description or (config_cls.__doc__ or "").strip(),
        exit_on_error=True,
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
    """
    parser = build_parser(config_cls, prog=prog, description=description)
    arguments = list(sys.argv[1:] if argv is None else argv)
    # jsonargparse spells it --print_config; accept the dashed form users type as well.
    arguments = ["--print_config" if arg == "--print-config" else arg for arg in arguments]
    namespace = parser.parse_args(arguments)
    instantiated = parser.instantiate(namespace)
    values = {field.name: getattr(instantiated, field.name) for field in dataclasses.fields(config_cls)}
    return config_cls(**values)


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


def save_config(config: Any, run_dir: str | Path) -> Path:
    """Write the resolved config as ``config.yaml`` in ``run_dir`` atomically; return its path."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    target = run_dir / "config.yaml"
    text = yaml.safe_dump(config_to_dict(config), sort_keys=False)
    write_text_atomically(target, text)
    return target


def write_text_atomically(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file in the same folder, fsync, then rename into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def run_dir_for(domain: str, run_name: str, root: str | Path = "runs") -> Path:
    """Return (and create) ``<root>/<domain>/<run_name>/``; names are restricted to safe characters."""
    for label, value in (("domain", domain), ("run name", run_name)):
        if not _RUN_NAME_PATTERN.match(value):
            raise ValueError(f"invalid {label} {value!r}: use letters, digits, '.', '_' or '-' (max 128)")
    run_dir = Path(root) / domain / run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir
