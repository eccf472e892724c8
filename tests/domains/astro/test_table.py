"""The table command on a tiny synthetic ingest: every cell equals the runs it summarises."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from domains.astro.model import AstroModelConfig
from domains.astro.paper_table import TableConfig, check_claims, format_cell, run_table
from domains.astro.training_budget import with_epoch_budget
from shared.trainer import TrainerConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_table_cells_summarise_the_per_seed_runs(
    tmp_path: Path, write_astro_ingest: Callable[..., Path], tiny_astro_config: Callable[[], AstroModelConfig]
) -> None:
    ingest_dir = write_astro_ingest(tmp_path / "ingest")
    trainer = TrainerConfig(lr=3e-3, weight_decay=0.0, schedule="constant", progress_bar=False, log_every=50)
    config = TableConfig(
        run_name="table",
        runs_root=str(tmp_path / "runs"),
        input=str(ingest_dir),
        seeds=[1, 2],
        subsets=["full", "sub50"],
        modes=["meta", "all"],
        model=tiny_astro_config(),
        pretrain_batch_size=16,
        pretrain_trainer=with_epoch_budget(
            TrainerConfig(**{**vars(trainer), "select_metric": "val_loss", "select_mode": "min"}),
            max_epochs=1,
            warmup_epochs=0.25,
        ),
        finetune_min_steps=3,
        finetune_batch_size=16,
        finetune_trainer=with_epoch_budget(
            TrainerConfig(**{**vars(trainer), "select_metric": "val_accuracy"}), max_epochs=1
        ),
    )
    payload = run_table(config)
    table_dir = tmp_path / "runs" / "astro" / "table"
    saved = json.loads((table_dir / "table.json").read_text())
    assert saved["cells"] == payload["cells"]
    assert len(saved["cells"]) == 2 * 2 * 2
    for key, cell in saved["cells"].items():
        mode, init, subset = key.split("|")
        values = [
            json.loads(
                (table_dir / "astro" / f"{mode}-{init}-{subset}" / f"seed-{s}" / "eval" / "metrics.json").read_text()
            )["accuracy"]
            for s in (1, 2)
        ]
        assert cell["values"] == pytest.approx(values)
        assert cell["mean"] == pytest.approx(np.mean(values))
        # Sample standard deviation over seeds (ddof 1, shared.seed_statistics).
        assert cell["std"] == pytest.approx(np.std(values, ddof=1))
    # CLIP runs were initialised from the pretraining of their own split seed.
    spec = json.loads((table_dir / "astro" / "all-clip-sub50" / "seed-2" / "classifier.json").read_text())
    assert spec["clip_run"] == str(table_dir / "astro" / "pretrain-seed2")
    markdown = (table_dir / "table.md").read_text()
    assert f"| Metadata | yes | {format_cell(saved['cells']['meta|clip|full'])} |" in markdown
    # A second run finds every run finished with the same settings and reuses it (nothing is retrained).
    before = (table_dir / "astro" / "meta-clip-full" / "seed-1" / "model.safetensors").stat().st_mtime_ns
    again = run_table(config)
    assert again["cells"] == payload["cells"]
    assert (table_dir / "astro" / "meta-clip-full" / "seed-1" / "model.safetensors").stat().st_mtime_ns == before
    gain = saved["claims"]["clip_gain"]["meta"]["sub50"]
    assert gain == pytest.approx(
        saved["cells"]["meta|clip|sub50"]["mean"] - saved["cells"]["meta|scratch|sub50"]["mean"]
    )


def test_claims_read_the_table_correctly() -> None:
    def cell(mean: float) -> dict:
        return {"mean": mean, "std": 0.0, "values": [mean]}

    cells = {
        "photo|scratch|full": cell(0.80), "photo|clip|full": cell(0.85),
        "photo|scratch|sub10": cell(0.50), "photo|clip|sub10": cell(0.65),
        "meta|scratch|full": cell(0.70), "meta|clip|full": cell(0.69),
        "meta|scratch|sub10": cell(0.60), "meta|clip|sub10": cell(0.61),
        "all|scratch|full": cell(0.90), "all|clip|full": cell(0.91),
        "all|scratch|sub10": cell(0.55), "all|clip|sub10": cell(0.70),
    }  # fmt: skip
    claims = check_claims(cells, ["photo", "meta", "all"], ["full", "sub10"])
    assert claims["photometry_clip_helps_everywhere"]
    assert claims["photometry_gain_largest_with_fewest_labels"]
    assert claims["clip_gain"]["meta"]["full"] == pytest.approx(-0.01)
    assert claims["fusion_vs_best_single"]["scratch|sub10"]["best_single"] == "meta"
    assert not claims["fusion_beats_best_single_everywhere"]  # 0.55 < 0.60 without CLIP on sub10


def test_help_documents_every_option(
    capsys: pytest.CaptureFixture[str], help_text: Callable[..., str], assert_help_documents_every_option: Callable
) -> None:
    from domains.astro import table

    assert_help_documents_every_option(TableConfig, help_text(table.main, capsys))
