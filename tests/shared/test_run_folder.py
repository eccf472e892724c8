"""The run-folder contract: config, eval metrics, the finished marker with hashes, metrics.csv, rank 0 only."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from shared.run_folder import FINISHED_MARKER, MetricsLog, RunFolder, finished_runs, read_metrics
from shared.user_errors import UserError


@dataclass
class Inner:
    lr: float = 0.1


@dataclass
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    path: Path = Path("data")


def test_create_save_config_and_identity(tmp_path: Path) -> None:
    folder = RunFolder.create("news", "demo-1", root=tmp_path)
    assert folder.path == tmp_path / "news" / "demo-1" and folder.path.is_dir()
    assert folder.run_id == "news/demo-1" and folder.domain == "news" and folder.name == "demo-1"
    folder.save_config(Outer())
    assert yaml.safe_load(folder.config_path.read_text()) == {"name": "x", "inner": {"lr": 0.1}, "path": "data"}
    assert folder.load_config()["inner"]["lr"] == 0.1


@pytest.mark.parametrize("name", ["../escape", "", "a/b", ".hidden", "x" * 129])
def test_unsafe_run_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(UserError, match="--run_name"):
        RunFolder.create("news", name, root=tmp_path)


def test_open_names_the_flag_and_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"^--run .*nope: no such run folder"):
        RunFolder.open(tmp_path / "nope")
    (tmp_path / "r").mkdir()
    with pytest.raises(UserError, match="--model .*model.safetensors is missing"):
        RunFolder.open(tmp_path / "r", flag="--model", require="model.safetensors")
    with pytest.raises(UserError, match="did not finish"):
        RunFolder.open(tmp_path / "r", require=FINISHED_MARKER)
    with pytest.raises(UserError, match="config.yaml: missing"):
        RunFolder(tmp_path / "r").load_config()
    (tmp_path / "r" / "config.yaml").write_bytes(b"\xff\xfe")
    with pytest.raises(UserError, match="config.yaml: not UTF-8 text"):
        RunFolder(tmp_path / "r").load_config()
    (tmp_path / "r" / "config.yaml").write_text("a: [1\n")
    with pytest.raises(UserError, match="config.yaml: not valid YAML"):
        RunFolder(tmp_path / "r").load_config()


def test_eval_metrics_per_split_and_undefined_values(tmp_path: Path) -> None:
    folder = RunFolder.create("astro", "r", root=tmp_path)
    folder.write_eval_metrics({"accuracy": 0.5, "roc_auc": float("nan")})
    folder.write_eval_metrics({"accuracy": 0.4}, split="val")
    assert (folder.path / "eval" / "metrics.json").is_file() and (
        folder.path / "eval" / "val" / "metrics.json"
    ).is_file()
    assert folder.read_eval_metrics() == {"accuracy": 0.5, "roc_auc": None}
    assert folder.read_eval_metrics("val") == {"accuracy": 0.4}
    with pytest.raises(UserError, match="no evaluation on train"):
        folder.read_eval_metrics("train")


def test_finished_marker_hashes_outputs_and_is_cleared_on_restart(tmp_path: Path) -> None:
    folder = RunFolder.create("recsys", "r", root=tmp_path)
    (folder.path / "model.safetensors").write_bytes(b"weights")
    assert not folder.is_finished and folder.marker() == {}
    folder.mark_finished("domains.recsys.train", ["model.safetensors"], {"recall@20": 0.3})
    marker = json.loads((folder.path / FINISHED_MARKER).read_text())
    assert marker["run_id"] == "recsys/r" and marker["command"] == "domains.recsys.train"
    assert marker["outputs"]["model.safetensors"] == {"bytes": 7, "sha256": hashlib.sha256(b"weights").hexdigest()}
    assert marker["summary"] == {"recall@20": 0.3}
    assert folder.is_finished
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        folder.mark_finished("domains.recsys.train", ["missing.bin"])
    (folder.path / "eval").mkdir()
    (folder.path / "eval" / "metrics.json").write_text("{}")
    folder.record_outputs(["eval/metrics.json"])
    assert set(folder.marker()["outputs"]) == {"model.safetensors", "eval/metrics.json"}
    folder.clear_finished()
    assert not folder.is_finished
    folder.record_outputs(["eval/metrics.json"])  # an unfinished run gets no marker from it
    assert not folder.is_finished


def test_sub_runs_carry_the_enclosing_runs_id(tmp_path: Path) -> None:
    top = RunFolder.create("recsys", "demo", root=tmp_path)
    base = top.child("base")
    assert base.path == top.path / "base" and base.path.is_dir()
    assert base.run_id == "recsys/demo/base" and base.child("seed-1").run_id == "recsys/demo/base/seed-1"
    base.mark_finished("domains.recsys.train", [])
    assert RunFolder(top.path / "base").run_id == "recsys/demo/base"  # opened by path: from its marker
    with pytest.raises(UserError, match="sub-run name"):
        top.child("../x")


def test_finished_runs_finds_nested_runs_by_command(tmp_path: Path) -> None:
    top = RunFolder.create("recsys", "demo", root=tmp_path)
    base = top.child("base")
    unfinished = RunFolder.create("recsys", "crashed", root=tmp_path)
    top.mark_finished("domains.recsys.train", [])
    base.mark_finished("domains.recsys.train", [])
    RunFolder.create("recsys", "mnar", root=tmp_path).mark_finished("domains.recsys.mnar", [])
    found = {f.path for f in finished_runs(tmp_path, "recsys", command="domains.recsys.train")}
    assert found == {top.path, base.path}
    assert unfinished.path not in {f.path for f in finished_runs(tmp_path, "recsys")}
    assert finished_runs(tmp_path, "astro") == []


def test_only_rank_zero_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    folder = RunFolder.create("news", "r", root=tmp_path)
    folder.save_config(Outer())
    folder.write_eval_metrics({"a": 1.0})
    folder.mark_finished("domains.news.train", [])
    MetricsLog(folder.path).write(1, 0, "train", {"loss": 1.0})
    assert list(folder.path.iterdir()) == []


def test_metrics_log_schema_and_truncation_on_resume(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path)
    for step in (1, 2, 3):
        log.write(step, 0, "train", {"loss": 1.0 / step, "lr": 0.1})
    log.write(3, 1, "val", {"accuracy": 0.75})
    log.truncate_after(2)
    rows = read_metrics(tmp_path)
    assert (tmp_path / "metrics.csv").read_text().splitlines()[0] == "step,epoch,phase,metric,value"
    assert [(r["step"], r["metric"]) for r in rows] == [(1, "loss"), (1, "lr"), (2, "loss"), (2, "lr")]
    assert rows[2]["value"] == pytest.approx(0.5)
    assert read_metrics(tmp_path / "none") == []
