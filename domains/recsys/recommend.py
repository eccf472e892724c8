"""Top-N recommendations with titles: ``python -m domains.recsys.recommend --run runs/recsys/demo --users '[1, 2]'``.

Items the user already interacted with (any split) are never recommended. Users are raw ids as in the data.
Prints a table and writes ``<out_dir>/recommendations.tsv`` (RecBole-style atomic file; default the run
folder). The work is :func:`domains.recsys.llmrec.recommendations.recommend_for_run`.
"""

from __future__ import annotations

import pandas as pd

from domains.recsys.llmrec.recommendations import RecommendConfig, recommend_for_run
from shared.cli import parse_config, run_command


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    config = parse_config(RecommendConfig, argv, prog="python -m domains.recsys.recommend")
    recommendations = recommend_for_run(config)
    with pd.option_context("display.max_rows", None, "display.width", 160):
        print(recommendations.table.to_string(index=False))
    print(f"Wrote {recommendations.path}")
    print(f"Next: python -m domains.recsys.embed --run {config.run}")


if __name__ == "__main__":
    run_command(main)
