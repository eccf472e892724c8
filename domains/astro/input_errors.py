"""The errors astro raises for input a user must fix: a raw file, a catalogue row, an ingest folder, a run.

Each is a :class:`shared.user_errors.UserError` (a command reports it in one line and exits 2) and keeps
the built-in type older callers catch (``ValueError`` for unusable input, ``FileNotFoundError`` for a
folder that is not what a flag says it is).
"""

from __future__ import annotations

from pathlib import Path

from shared.user_errors import UserError


class AstroInputError(UserError, ValueError):
    """A raw astronomy file (or catalogue row) that cannot be used; the message names the source.

    Attributes:
        source: The file (or ``file row``) the problem is in.
        problem: What is wrong with it.
    """

    def __init__(self, source: str | Path, problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{source}: {problem}")


class MissingAstroFolderError(UserError, FileNotFoundError):
    """A flag names a folder that is not what it must be (an ingest folder, a finished run, a split)."""
