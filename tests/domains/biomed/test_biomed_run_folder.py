"""The run-folder contract for biomed's training command: the saved config is exactly what ran."""

from __future__ import annotations

import csv
from pathlib import Path

import yaml
from biomed_fixtures import biomedica_sample
from safetensors.torch import load_file

from domains.biomed import pretrain
from shared.run_folder import RunFolder, finished_runs
from shared.shards import ShardWriter

TINY = ["--model.source", "tiny", "--model.pretrained_towers", "false", "--data.batch_size", "4",
        "--trainer.log_every", "1", "--trainer.checkpoint_every", "2", "--evaluate_untrained", "false",
        "--zero_shot", "none", "--export", "false", "--embed", "false"]  # fmt: skip


def shards(folder: Path) -> Path:
    with ShardWriter(folder, prefix="t", max_samples=8) as writer:
        for index in range(12):
            writer.write(biomedica_sample(f"s{index:02d}", caption=f"image number {index}"))
    return folder


def train(tmp_path: Path, name: str, max_steps: int, seed: int, data: Path) -> RunFolder:
    pretrain.main([*TINY, "--data.train", str(data), "--runs_root", str(tmp_path / "runs"), "--run_name", name,
                   "--trainer.max_steps", str(max_steps), "--trainer.seed", str(seed)])  # fmt: skip
    return RunFolder(tmp_path / "runs" / "biomed" / name)


def last_train_step(run: RunFolder) -> int:
    with run.metrics_path.open(newline="") as stream:
        return max(int(row["step"]) for row in csv.DictReader(stream) if row["phase"] == "train")


def test_max_steps_and_seed_flags_are_what_ran_and_what_was_saved(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = shards(tmp_path / "shards")
    first = train(tmp_path, "a", 3, 7, data)
    saved = yaml.safe_load(first.config_path.read_text())
    assert saved["trainer"]["max_steps"] == 3 and last_train_step(first) == 3
    assert saved["trainer"]["seed"] == 7
    assert first.marker()["command"] == "domains.biomed.pretrain"
    assert first.marker()["summary"]["steps"] == 3
    assert [run.path for run in finished_runs(tmp_path / "runs", "biomed", command="domains.biomed.pretrain")] == [
        first.path
    ]
    # The seed is used: the same seed gives the same weights, another seed other weights.
    again = train(tmp_path, "b", 3, 7, data)
    other = train(tmp_path, "c", 3, 8, data)
    weights = {run.name: load_file(run.path / "model.safetensors") for run in (first, again, other)}
    name = "clip.visual.conv1.weight"
    assert (weights["a"][name] == weights["b"][name]).all()
    assert not (weights["a"][name] == weights["c"][name]).all()
    # A resumed run continues to the new budget, and its saved config says so.
    resumed = pretrain.main([*TINY, "--data.train", str(data), "--runs_root", str(tmp_path / "runs"), "--run_name",
                             "a", "--trainer.max_steps", "5", "--trainer.seed", "7", "--trainer.resume", "latest"])  # fmt: skip
    assert resumed["training"]["steps"] == 5 and last_train_step(first) == 5
    assert yaml.safe_load(first.config_path.read_text())["trainer"]["max_steps"] == 5
