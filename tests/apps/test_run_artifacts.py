"""The explorer finds runs by the one marker of the run-folder contract (``run.json``), never by domain files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from apps.run_artifacts import finished_run_folders, finished_run_table, finished_subrun
from shared.run_folder import RunFolder


def make_run(root: Path, domain: str, name: str, command: str | None, files: tuple[str, ...] = ("model.bin",)) -> Path:
    """A run folder with ``files``; marked finished by ``command`` (None: left unfinished)."""
    folder = RunFolder.create(domain, name, root)
    for relative in files:
        (folder.path / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder.path / relative).write_text(relative)
    if command is not None:
        folder.mark_finished(command, outputs=list(files), summary={"files": len(files)})
    return folder.path


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "runs"
    monkeypatch.setenv("EXPLORER_RUNS", str(root))
    old = make_run(root, "news", "old", "domains.news.train", ("detector.json",))
    make_run(root, "news", "new", "domains.news.train", ("detector.json",))
    os.utime(old / "run.json", (1_000_000, 1_000_000))  # "old" finished long before "new"
    make_run(root, "news", "crashed", None, ("detector.json",))  # has the domain's files but never finished
    make_run(root, "news", "evaluation", "domains.news.evaluate")
    make_run(root, "recsys", "demo", "domains.recsys.train", ("recommender.json",))
    base = RunFolder.create("demo", "base", root / "recsys")  # runs/recsys/demo/base
    (base.path / "recommender.json").write_text("{}")
    base.mark_finished("domains.recsys.train", outputs=["recommender.json"])
    make_run(root, "recsys", "unfinished-base-parent", "domains.recsys.train")
    RunFolder.create("unfinished-base-parent", "base", root / "recsys")
    return root


def test_only_finished_runs_of_the_command_are_found_newest_first(runs: Path) -> None:
    found = finished_run_folders("news", "domains.news.train")
    assert [path.name for path in found] == ["new", "old"]
    assert [path.name for path in finished_run_folders("news", "domains.news.evaluate")] == ["evaluation"]
    assert finished_run_folders("biomed", "domains.biomed.pretrain") == []


def test_runs_named_by_the_store_come_first(runs: Path) -> None:
    found = finished_run_folders("news", "domains.news.train", prefer=["news/old"])
    assert [path.name for path in found] == ["old", "new"]


def test_a_nested_base_run_counts_only_when_it_finished(runs: Path) -> None:
    assert finished_subrun(runs / "recsys" / "demo", "base") == runs / "recsys" / "demo" / "base"
    assert finished_subrun(runs / "recsys" / "unfinished-base-parent", "base") is None
    assert finished_subrun(runs / "recsys" / "demo", "missing") is None


def test_the_home_table_lists_every_finished_run_with_its_summary(runs: Path) -> None:
    table = finished_run_table()
    assert sorted(table["run"]) == sorted(
        ["news/new", "news/old", "news/evaluation", "recsys/demo", "recsys/demo/base", "recsys/unfinished-base-parent"]
    )
    assert table["finished_at"].is_monotonic_decreasing
    row = table[table["run"] == "news/new"].iloc[0]
    assert row["command"] == "domains.news.train"
    assert json.loads(row["summary"]) == {"files": 1}


@pytest.mark.parametrize(
    ("run_id", "name", "expected"),
    [
        ("news/demo", "demo", True),
        ("demo", "demo", True),
        ("news-demo", "demo", True),
        ("recsys-demo-0123abcd4567", "demo", True),
        ("astro/pretrain-demo", "pretrain-demo", True),
        ("news/old", "new", False),
        ("news/demo2", "demo", False),
    ],
)
def test_a_store_run_id_names_a_folder_only_as_a_whole_part(run_id: str, name: str, expected: bool) -> None:
    from apps.run_artifacts import names_run

    assert names_run(run_id, name) is expected
