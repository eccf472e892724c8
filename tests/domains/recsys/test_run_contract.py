"""The run-folder contract of the recsys commands: the saved config is exactly what ran, and runs are marked.

Each training command is run with a small ``--trainer.max_steps``; the last training step in ``metrics.csv``
and ``trainer.max_steps`` in ``config.yaml`` must both equal it, and a given ``--trainer.seed`` must be
saved and used.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from domains.recsys import ablate, augment, train
from shared.cli import run_command
from shared.run_folder import FINISHED_MARKER, RunFolder, finished_runs, read_metrics, sha256_of

FAST = ["--fit.batch_size", "64", "--dataset.text_features", "false"]


def last_train_step(run_dir: Path) -> int:
    return max(row["step"] for row in read_metrics(run_dir) if row["phase"] == "train")


def saved_trainer(run_dir: Path) -> dict:
    return yaml.safe_load((run_dir / "config.yaml").read_text())["trainer"]


def _train(source: Path, runs: Path, name: str, *extra: str) -> Path:
    train.main(["--input", str(source), "--runs_root", str(runs), "--run_name", name, *FAST, *extra])
    return runs / "recsys" / name


def test_train_max_steps_and_seed_are_what_ran_and_what_is_saved(synthetic_recbole: Path, tmp_path: Path) -> None:
    steps = ["--augmentation", "none", "--trainer.max_steps", "3", "--trainer.max_epochs", "null"]
    seed7 = _train(synthetic_recbole, tmp_path, "seed7", *steps, "--trainer.seed", "7")
    seed0 = _train(synthetic_recbole, tmp_path, "seed0", *steps, "--trainer.seed", "0")
    for run_dir, seed in ((seed7, 7), (seed0, 0)):
        assert last_train_step(run_dir) == 3
        trainer = saved_trainer(run_dir)
        assert trainer["max_steps"] == 3 and trainer["seed"] == seed
        marker = RunFolder(run_dir).marker()
        assert marker["command"] == "domains.recsys.train" and "recall@20" in marker["summary"]
    assert sha256_of(seed7 / "model.safetensors") != sha256_of(seed0 / "model.safetensors"), "the seed is used"
    found = finished_runs(tmp_path, "recsys", command="domains.recsys.train")
    assert {folder.path for folder in found} == {seed7, seed0}


def test_epoch_budget_is_resolved_before_saving(synthetic_recbole: Path, tmp_path: Path) -> None:
    run_dir = _train(synthetic_recbole, tmp_path, "epochs", "--augmentation", "none", "--trainer.max_epochs", "2")
    trainer = saved_trainer(run_dir)
    steps_per_epoch = 6  # ceil(360 / 64): 36 users with 10 of their 12 interactions (80%) in training
    assert trainer["max_steps"] == 2 * steps_per_epoch == last_train_step(run_dir)
    assert trainer["validate_every"] == 2 * steps_per_epoch, "validate_every_epochs (2) resolved to steps"


def test_a_step_budget_overridden_by_the_epoch_budget_is_refused(
    synthetic_recbole: Path, tmp_path: Path, capsys
) -> None:
    argv = ["--input", str(synthetic_recbole), "--runs_root", str(tmp_path), *FAST, "--trainer.max_steps", "3"]
    with pytest.raises(SystemExit) as exit_info:
        run_command(train.main, argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert "--trainer.max_steps 3" in error and "--trainer.max_epochs 20" in error and "\n" not in error
    assert not (tmp_path / "recsys" / "demo" / "config.yaml").exists(), "nothing is saved for a refused run"


def test_kg_pipeline_marks_the_base_run_and_the_augmented_run(synthetic_recbole: Path, tmp_path: Path) -> None:
    run_dir = _train(
        synthetic_recbole, tmp_path, "kg", "--trainer.max_steps", "4", "--trainer.max_epochs", "null",
        "--base_epochs", "1", "--candidates_k", "5",
    )  # fmt: skip
    base = run_dir / "base"
    assert last_train_step(run_dir) == 4 and saved_trainer(run_dir)["max_steps"] == 4
    assert last_train_step(base) == saved_trainer(base)["max_steps"] == 6, "base_epochs 1 = 6 steps of 64 pairs"
    found = {folder.path for folder in finished_runs(tmp_path, "recsys", command="domains.recsys.train")}
    assert found == {run_dir, base}
    outputs = RunFolder(run_dir).marker()["outputs"]
    assert {"augmentation/edges.tsv", "base/model.safetensors", "eval/metrics.json"} <= set(outputs)

    augment.main(["--run", str(base), "--runs_root", str(tmp_path), "--run_name", "aug", "--candidates_k", "5",
                  "--cache_dir", str(tmp_path / "cache")])  # fmt: skip
    augmented = RunFolder(tmp_path / "recsys" / "aug")
    assert augmented.marker()["command"] == "domains.recsys.augment"
    assert yaml.safe_load(augmented.config_path.read_text())["run"] == str(base)
    assert (augmented.path / "augmentation" / "edges.tsv").is_file()


def test_ablation_variants_run_the_saved_step_budget(synthetic_recbole: Path, tmp_path: Path) -> None:
    ablate.main(
        ["--input", str(synthetic_recbole), "--runs_root", str(tmp_path), "--seeds", "[3]",
         "--variants", "[lightgcn, +edges]", "--trainer.max_steps", "2", "--trainer.max_epochs", "null", *FAST]
    )  # fmt: skip
    out = tmp_path / "recsys" / "ablation"
    for variant in ("lightgcn", "edges"):
        sub_run = out / "seed3" / variant
        assert last_train_step(sub_run) == 2
        trainer = saved_trainer(sub_run)
        assert trainer["max_steps"] == 2 and trainer["seed"] == 3
    assert (out / FINISHED_MARKER).is_file() and RunFolder(out).marker()["command"] == "domains.recsys.ablate"
