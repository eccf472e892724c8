"""The one atomic-write helper: all or nothing, temp files cleaned up, undefined numbers stay undefined."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shared.atomic_files import (
    atomic_directory,
    atomic_output,
    write_bytes_atomically,
    write_json_atomically,
    write_text_atomically,
)


def test_writes_create_folders_and_replace_content(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.txt"
    write_text_atomically(target, "first")
    write_text_atomically(target, "second é")
    assert target.read_text(encoding="utf-8") == "second é"
    write_bytes_atomically(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_failure_inside_the_block_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "model.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_output(target) as temporary:
        temporary.write_bytes(b"half")
        raise RuntimeError("writer crashed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]


def test_suffix_is_kept_for_writers_that_pick_the_format_from_it(tmp_path: Path) -> None:
    with atomic_output(tmp_path / "plot.png", suffix=".png") as temporary:
        assert temporary.suffix == ".png" and temporary.parent == tmp_path
        temporary.write_bytes(b"png")
    assert (tmp_path / "plot.png").read_bytes() == b"png"


def test_json_writes_undefined_numbers_as_null(tmp_path: Path) -> None:
    path = write_json_atomically(
        tmp_path / "m.json", {"auc": float("nan"), "acc": np.float32(0.5), "xs": [1.0, float("inf")], "n": np.int64(3)}
    )
    assert json.loads(path.read_text()) == {"auc": None, "acc": 0.5, "xs": [1.0, None], "n": 3}


def test_atomic_directory_replaces_a_folder_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "export"
    with atomic_directory(target) as staging:
        (staging / "a.json").write_text("1")
        (staging / "sub").mkdir()
        (staging / "sub" / "b.bin").write_bytes(b"2")
        assert not target.exists()
    assert (target / "a.json").read_text() == "1" and (target / "sub" / "b.bin").read_bytes() == b"2"
    with pytest.raises(RuntimeError), atomic_directory(target) as staging:
        (staging / "a.json").write_text("half")
        raise RuntimeError("export failed")
    assert (target / "a.json").read_text() == "1"
    with atomic_directory(target) as staging:
        (staging / "c.txt").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["c.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no staging or retired folders left
