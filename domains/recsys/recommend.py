"""Top-N recommendations with titles: ``python -m domains.recsys.recommend --run runs/recsys/demo --users '[1, 2]'``.

Items the user already interacted with (any split) are never recommended. Users are raw ids as in the data.
Prints a table and writes ``<out_dir>/recommendations.tsv`` (RecBole-style atomic file; default the run
folder).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from domains.recsys.llmrec.recommendations import (
    RECOMMENDATIONS_FILE,
    UnknownUsers,
    recommend,
    write_recommendations,
)
from domains.recsys.llmrec.training import load_run
from shared.cli import parse_config, run_command
from shared.user_errors import NothingProduced, UserError


@dataclass
class RecommendConfig:
    """Top-N recommendations for given users from a trained run."""

    run: str = "runs/recsys/demo"
    """Run folder written by domains.recsys.train."""
    users: list[str | int] = field(default_factory=lambda: ["1"])
    """Raw user ids (as in the dataset's .inter file), e.g. --users '[1, 2, 3]'."""
    top_n: int = 10
    """Recommendations per user (1 to the number of items)."""
    out_dir: str | None = None
    """Folder for recommendations.tsv (null: the run folder)."""


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    config = parse_config(RecommendConfig, argv, prog="python -m domains.recsys.recommend")
    if config.top_n < 1:
        raise UserError(f"--top_n: must be >= 1, got {config.top_n}")
    if not config.users:
        raise NothingProduced("--users is empty: no user to recommend for")
    loaded = load_run(config.run)
    if config.top_n > loaded.data.n_items:
        raise UserError(f"--top_n: must be <= {loaded.data.n_items} (the items of the run's data), got {config.top_n}")
    try:
        table = recommend(loaded, [str(user) for user in config.users], config.top_n)
    except UnknownUsers as error:
        raise UserError(f"--users: {error}") from None
    out = (Path(config.out_dir) if config.out_dir else loaded.run_dir) / RECOMMENDATIONS_FILE
    write_recommendations(table, out)
    with pd.option_context("display.max_rows", None, "display.width", 160):
        print(table.to_string(index=False))
    print(f"Wrote {out}")
    print(f"Next: python -m domains.recsys.embed --run {config.run}")


if __name__ == "__main__":
    run_command(main)
