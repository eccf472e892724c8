"""The two kinds of failure a command reports to its user in one line (see :func:`shared.cli.run_command`).

Library code raises these where the cause is the user's input or an empty result, so that every command
reports it the same way: one line that names the file or flag and the problem, no traceback (unless
``--debug``), and a non-zero exit status.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: a missing or unreadable file, a bad value, a wrong flag.

    The message must name the file or flag and say what is wrong with it, e.g.
    ``"--trainer.max_steps: must be >= 1, got 0"`` or ``"data/posts.jsonl line 3: not valid JSON"``.
    Commands exit with status 2.
    """


class NothingProduced(Exception):  # noqa: N818 - reads as the event it reports
    """A step ran correctly but produced nothing usable (0 samples, 0 posts, 0 users, an empty batch).

    The message says why (e.g. "all 100 posts were skipped: 100 had no image"). Commands exit with
    status 1 and print no "next:" hint.
    """
