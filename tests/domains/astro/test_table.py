"""The table command on a tiny synthetic ingest: every cell equals the runs it summarises."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from domains.astro.catalogue import ALL_COLUMNS
from domains.astro.datasets import ingested_objects, load_astro_splits
from domains.astro.ingest_pipeline import write_splits
from domains.astro.leak_baselines import field_only_accuracy, majority_accuracy
from domains.astro.model import AstroModelConfig
from domains.astro.paper_table import (
    TableConfig,
    check_claims,
    check_same_test_split,
    format_cell,
    run_table,
    table_markdown,
)
from domains.astro.training_budget import with_epoch_budget
from shared.trainer import TrainerConfig
from shared.user_errors import UserError

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
    assert set(saved["baselines"]) == {"meta_linear", "field_only", "majority"}
    assert "Claims (95% interval" in markdown and "fused beat the best single modality" in markdown
    # A second run finds every run finished with the same settings and reuses it (nothing is retrained).
    before = (table_dir / "astro" / "meta-clip-full" / "seed-1" / "model.safetensors").stat().st_mtime_ns
    again = run_table(config)
    assert again["cells"] == payload["cells"]
    assert (table_dir / "astro" / "meta-clip-full" / "seed-1" / "model.safetensors").stat().st_mtime_ns == before
    gain = saved["claims"]["clip_gain"]["meta"]["sub50"]
    assert gain == pytest.approx(
        saved["cells"]["meta|clip|sub50"]["mean"] - saved["cells"]["meta|scratch|sub50"]["mean"]
    )


SEEDS = [1, 2, 3, 4, 5]


def cell(*values: float) -> dict:
    """A table cell over SEEDS (one value repeats for every seed)."""
    values = values * len(SEEDS) if len(values) == 1 else values
    return {"mean": float(np.mean(values)), "values": list(values), "seeds": SEEDS}


def test_claims_are_judged_on_paired_differences_over_seeds() -> None:
    cells = {
        "photo|scratch|full": cell(0.80, 0.81, 0.79, 0.80, 0.82), "photo|clip|full": cell(0.85, 0.85, 0.85, 0.84, 0.87),
        "photo|scratch|sub10": cell(0.50, 0.52, 0.49, 0.51, 0.50), "photo|clip|sub10": cell(0.65, 0.66, 0.65, 0.66, 0.64),
        "meta|scratch|full": cell(0.70, 0.72, 0.69, 0.71, 0.70), "meta|clip|full": cell(0.69, 0.73, 0.68, 0.72, 0.71),
        "meta|scratch|sub10": cell(0.60), "meta|clip|sub10": cell(0.61),
        "all|scratch|full": cell(0.90), "all|clip|full": cell(0.91),
        "all|scratch|sub10": cell(0.55, 0.56, 0.54, 0.55, 0.57), "all|clip|sub10": cell(0.70),
    }  # fmt: skip
    claims = check_claims(cells, ["photo", "meta", "all"], ["full", "sub10"])
    verdicts = {name: claim["verdict"] for name, claim in claims["claims"].items()}
    # Photometry gains +5 points on full (every seed), +15 on sub10: both claims supported.
    assert verdicts["clip_helps_photometry"] == "supported"
    assert claims["claims"]["clip_helps_photometry"]["interval"]["mean"] == pytest.approx(0.048)
    assert verdicts["more_with_fewer_labels"] == "supported"
    # Metadata's CLIP gain flips sign across seeds: the interval contains 0.
    assert claims["clip_gain_verdict"]["meta"]["full"] == "cannot tell"
    assert claims["fusion_vs_best_single"]["scratch|sub10"]["best_single"] == "meta"
    assert claims["fusion_vs_best_single"]["scratch|sub10"]["verdict"] == "contradicted"  # 0.55 < 0.60 every seed
    assert verdicts["fusion_beats_best_single"] == "contradicted"
    markdown = table_markdown(
        cells,
        TableConfig(seeds=SEEDS, subsets=["full", "sub10"], modes=["photo", "meta", "all"]),
        claims,
        {"field_only": {"full": cell(0.2), "sub10": cell(0.2)}},
    )
    assert "-> **supported**" in markdown and "-> **contradicted**" in markdown
    assert "| Photometry | CLIP − no CLIP (pp) | +4.8 [" in markdown
    assert "| Baseline: Field only (sky cell majority) | – | 20.0 " in markdown


def test_budgets_cap_only_training_and_the_table_refuses_an_ingest_whose_test_splits_differ(
    tmp_path: Path, write_astro_ingest: Callable[..., Path]
) -> None:
    ingest_dir = write_astro_ingest(tmp_path / "ingest", n_objects=120, seeds=(1,))

    def read(subset: str, split: str) -> set[str]:
        return set((ingest_dir / "splits" / subset / "1" / f"{split}.csv").read_text().splitlines()[1:])

    assert read("sub50", "test") == read("full", "test") and read("sub50", "val") == read("full", "val")
    assert len(read("sub50", "train")) < len(read("full", "train"))
    check_same_test_split(ingest_dir, ["full", "sub50"], [1])
    objects = ingested_objects(ingest_dir)
    frame = pd.DataFrame({"sample_id": [o.sample_id for o in objects], "label": [o.label for o in objects]})
    write_splits(
        frame["sample_id"], frame, {o.sample_id: o.features for o in objects}, sorted(set(frame["label"])), [1],
        ["full", "sub50"], ingest_dir / "splits", budget_scope="all",
    )  # fmt: skip
    with pytest.raises(UserError, match="budget_scope train"):
        check_same_test_split(ingest_dir, ["full", "sub50"], [1])


def test_field_only_baseline_shows_a_class_field_leak(tmp_path: Path, write_astro_ingest: Callable[..., Path]) -> None:
    splits = load_astro_splits(write_astro_ingest(tmp_path / "ingest", n_objects=120, seeds=(1,)), "full", 1, 32)
    l_index, b_index = ALL_COLUMNS.index("l"), ALL_COLUMNS.index("b")
    fields = {"EW": (0.17, -0.57), "SR": (0.54, -0.76), "RRAB": (1.0, -0.05)}  # LMC, SMC, bulge (cos l, sin b)
    for dataset in (splits.train, splits.test):
        for obj in dataset.objects:
            obj.features[l_index], obj.features[b_index] = fields[obj.label]
    assert field_only_accuracy(splits.train, splits.test) == 1.0  # the field alone gives the class: a leak
    for dataset in (splits.train, splits.test):
        for obj in dataset.objects:
            obj.features[l_index], obj.features[b_index] = fields["EW"]
    assert field_only_accuracy(splits.train, splits.test) == pytest.approx(majority_accuracy(splits.train, splits.test))


def test_help_documents_every_option(
    capsys: pytest.CaptureFixture[str], help_text: Callable[..., str], assert_help_documents_every_option: Callable
) -> None:
    from domains.astro import table

    assert_help_documents_every_option(TableConfig, help_text(table.main, capsys))
