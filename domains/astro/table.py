"""The AstroM3 results table in one command: test accuracy (mean and 95% interval over split seeds) for
each modality x {without, with CLIP} x {full, sub50, sub25, sub10}, every budget scored on the same full
test split, with the paired CLIP-minus-no-CLIP difference per cell, leak baselines (metadata logistic
regression, field only, most common class), and a verdict (supported / contradicted / cannot tell) for each
of the paper's claims: CLIP helps photometry; it helps more with fewer labels; fusion beats the best single
modality.

    python -m domains.astro.table --config domains/astro/configs/table_demo.yaml   # 2 CPU cores, ~25 min
    python -m domains.astro.table --config domains/astro/configs/table_paper.yaml --input runs/astro/<ingest>

Writes ``runs/astro/<run_name>/table.md`` and ``table.json`` plus the pretraining and fine-tuning runs under
``runs/astro/<run_name>/astro/``; the work is done by :mod:`domains.astro.paper_table`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from domains.astro.paper_table import TableConfig, run_table
from shared.cli import parse_config, run_command


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point (``python -m domains.astro.table --help``)."""
    config = parse_config(TableConfig, argv, prog="python -m domains.astro.table", description=__doc__)
    payload = run_table(config)
    table_dir = Path(payload["table_dir"])
    print((table_dir / "table.md").read_text(encoding="utf-8"))
    print(f"wrote {table_dir / 'table.md'} and {table_dir / 'table.json'} in {payload['wall_time_s'] / 60:.1f} min")
    print(f"next: python -m domains.astro.embed --run {table_dir / 'astro' / f'pretrain-seed{config.seeds[0]}'}")
    return payload


if __name__ == "__main__":
    run_command(main)
