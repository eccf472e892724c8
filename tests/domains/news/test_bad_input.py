"""Bad input to every news command ends in one line naming the file or flag, with the right exit status.

Each case goes through :func:`shared.cli.run_command`, as ``python -m domains.news.<command>`` does: a user
error exits 2 with ``error: …``, a step that produced nothing exits 1 with ``nothing produced: …`` and no
"next:" hint, and no traceback appears. Most cases are refused before any model is loaded; the few that
need a trained run use the session fixture ``trained``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from command_contract import expect_command_failure
from PIL import Image

from domains.news import ablate, detect, embed, evaluate, ingest, train
from shared.cli import run_command

# jsonargparse (in the core's parse_config) names a flag of the wrong type by its key, without "--"; the
# domain's own checks name "--flag". A --config file that does not parse is named with its line.
BAD_YAML = "bad.yaml line"


@pytest.fixture(autouse=True)
def quiet_weight_loading() -> Any:
    """Silence transformers' "Loading weights" progress bars: stderr must hold only the command's line."""
    from transformers.utils import logging

    was_enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    yield
    if was_enabled:
        logging.enable_progress_bar()


def refused(
    main: Callable[[list[str]], Any], argv: list[str], capsys: pytest.CaptureFixture[str], code: int = 2
) -> str:
    """Run a command expecting failure; check exit status, one stderr line, no traceback; return the line."""
    return expect_command_failure(main, argv, capsys, code).line


def png(path: Path, color: tuple[int, int, int] = (200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), color).save(path)
    return path


def post_line(post_id: str = "1", text: str = "a red square", image: str | None = "a.png", **extra: Any) -> str:
    record = {"id": post_id, "text": text} | ({"image": image} if image is not None else {}) | extra
    return json.dumps(record, ensure_ascii=False) + "\n"


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    """One file per class of bad JSON-lines input, beside a readable image ``a.png``."""
    png(tmp_path / "a.png")
    files = {
        "broken_line": post_line() + '{"id": "2", "text": "oops"\n',
        "empty": "",
        "missing_fields": post_line() + json.dumps({"id": "2"}) + "\n",
        "nan_label": post_line() + '{"id": "2", "text": "x", "image": "a.png", "label": NaN}\n',
        "wrong_type": post_line() + json.dumps({"id": "2", "text": "x", "image": 5}) + "\n",
        "huge_line": '{"id": "1", "text": "' + "x" * 3_000_000 + "\n",
    }
    paths = {name: tmp_path / f"{name}.jsonl" for name in files}
    for name, text in files.items():
        paths[name].write_text(text, encoding="utf-8")
    paths["binary"] = tmp_path / "binary.jsonl"
    paths["binary"].write_bytes(bytes(range(256)) * 64)
    paths["latin1"] = tmp_path / "latin1.jsonl"
    paths["latin1"].write_bytes(post_line(text="café crème").encode("latin-1"))
    paths["utf16"] = tmp_path / "utf16.jsonl"
    paths["utf16"].write_bytes(post_line().encode("utf-16"))
    paths["folder"] = tmp_path / "a_folder.jsonl"
    paths["folder"].mkdir()
    paths["missing"] = tmp_path / "absent.jsonl"
    paths["bad_yaml"] = tmp_path / "bad.yaml"
    paths["bad_yaml"].write_text("trainer: [max_steps: 3\n  - : :\n")
    return paths


MALFORMED = ("broken_line", "missing_fields", "nan_label", "wrong_type", "huge_line", "binary", "latin1", "utf16")


# ---------------------------------------------------------------------------------------------------- ingest
@pytest.mark.parametrize("case", MALFORMED)
def test_ingest_names_the_malformed_file(case: str, bad_files: dict[str, Path], tmp_path: Path, capsys) -> None:
    path = bad_files[case]
    line = refused(ingest.main, ["--format", "jsonl", "--input", str(path), "--out_dir", str(tmp_path / "out")], capsys)
    assert str(path) in line
    if case in ("binary", "latin1", "utf16"):
        assert "UTF-8" in line


def test_ingest_of_an_empty_file_produces_nothing(bad_files: dict[str, Path], tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    line = refused(
        ingest.main, ["--format", "jsonl", "--input", str(bad_files["empty"]), "--out_dir", str(out)], capsys, 1
    )
    assert str(bad_files["empty"]) in line and "no posts" in line
    assert not (out / "manifest.json").exists()


def test_ingest_where_every_post_lacks_an_image_produces_nothing(tmp_path: Path, capsys) -> None:
    posts = tmp_path / "posts.jsonl"
    posts.write_text(post_line("1", image=None) + post_line("2", image="gone.png"))
    out = tmp_path / "out"
    line = refused(ingest.main, ["--format", "jsonl", "--input", str(posts), "--out_dir", str(out)], capsys, 1)
    assert "all 2 posts were dropped" in line and "1 no image" in line and "1 image file missing" in line
    assert not (out / "manifest.json").exists()  # nothing that passes for a shard set is left behind
    # the folder is free for the next try
    png(tmp_path / "gone.png")
    run_command(ingest.main, ["--format", "jsonl", "--input", str(posts), "--out_dir", str(out)])
    assert "next: python -m domains.news.train --input" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--format", "jsonl", "--input", "{missing}"], "--input"),
        (["--format", "jsonl", "--input", "{folder}"], "--input"),
        (["--format", "weibo", "--input", "{empty}"], "--input"),
        (["--format", "jsonl"], "--input"),
        (["--format", "csv", "--input", "{empty}"], "--format"),
        (["--format", "jsonl", "--input", "{empty}", "--default_split", "dev"], "--default_split"),
        (["--format", "jsonl", "--input", "{empty}", "--max_samples_per_shard", "0"], "--max_samples_per_shard"),
        (["--format", "jsonl", "--input", "{empty}", "--max_samples_per_shard", "many"], "max_samples_per_shard"),
        (["--bogus", "1"], "--bogus"),
        (["--config", "{bad_yaml}"], BAD_YAML),
    ],
)
def test_ingest_flags(argv: list[str], named: str, bad_files: dict[str, Path], tmp_path: Path, capsys) -> None:
    argv = [a.format(**{k: str(v) for k, v in bad_files.items()}) for a in argv]
    line = refused(ingest.main, [*argv, "--out_dir", str(tmp_path / "out")], capsys)
    assert named in line


def test_ingest_refuses_to_overwrite_finished_shards(trained: dict, capsys) -> None:
    argv = ["--format", "jsonl", "--input", str(trained["posts"]), "--out_dir", str(trained["shards"])]
    assert "--out_dir" in refused(ingest.main, argv, capsys)


def test_fakeddit_non_finite_labels_and_nul_bytes_name_the_file(tmp_path: Path, capsys) -> None:
    tsv = tmp_path / "multimodal_train.tsv"
    tsv.write_text("id\tclean_title\thasImage\t2_way_label\nx1\ta title\tTrue\tinf\n")
    line = refused(ingest.main, ["--format", "fakeddit", "--input", str(tsv), "--out_dir", str(tmp_path / "o")], capsys)
    assert f"{tsv}:2" in line and "2_way_label" in line
    tsv.write_bytes(b"id\tclean_title\t2_way_label\n" + bytes(range(256)))
    line = refused(ingest.main, ["--format", "fakeddit", "--input", str(tsv), "--out_dir", str(tmp_path / "o")], capsys)
    assert str(tsv) in line


# ----------------------------------------------------------------------------------------------------- train
@pytest.fixture
def fake_shards(tmp_path: Path) -> Path:
    """A folder that passes the cheap shard-folder check (training refuses other things before reading it)."""
    folder = tmp_path / "shards"
    folder.mkdir()
    (folder / "manifest.json").write_text("{}")
    return folder


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--trainer.resume", "latest"], "--trainer.resume"),
        (["--trainer.resume", "/no/such/checkpoint.pt"], "--trainer.resume"),
        (["--trainer.max_steps", "0"], "--trainer.max_steps"),
        (["--trainer.max_steps", "ten"], "trainer.max_steps"),
        (["--trainer.select_metric", "loss"], "--trainer.select_metric"),
        (["--head.branches", '["audio"]'], "--head.branches"),
        (["--head.similarity", "cosine"], "--head.similarity"),
        (["--encoders.image_tower", "no_such_tower"], "--encoders.image_tower"),
        (["--val_fraction", "1.5"], "--val_fraction"),
        (["--val_fraction", "nan"], "val_fraction"),
        (["--test_fraction", "0.9"], "--test_fraction"),
        (["--batch_size", "0"], "--batch_size"),
        (["--run_name", "../escape"], "--run_name"),
        (["--bogus", "1"], "--bogus"),
    ],
)
def test_train_flags(argv: list[str], named: str, fake_shards: Path, tmp_path: Path, capsys) -> None:
    base = ["--input", str(fake_shards), "--runs_root", str(tmp_path / "runs"), "--run_name", "r"]
    assert named in refused(train.main, [*base, *argv], capsys)


@pytest.mark.parametrize("case", ["missing", "folder_without_manifest", "file"])
def test_train_input_must_be_a_shard_folder(case: str, bad_files: dict[str, Path], tmp_path: Path, capsys) -> None:
    path = {"missing": tmp_path / "nowhere", "folder_without_manifest": tmp_path, "file": bad_files["empty"]}[case]
    line = refused(train.main, ["--input", str(path), "--runs_root", str(tmp_path / "runs")], capsys)
    assert f"--input {path}" in line
    if case != "file":
        assert "python -m domains.news.ingest" in line


def test_train_config_yaml_that_does_not_parse(bad_files: dict[str, Path], capsys) -> None:
    assert BAD_YAML in refused(train.main, ["--config", str(bad_files["bad_yaml"])], capsys)


def test_train_on_a_binary_manifest_names_it(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "shards"
    folder.mkdir()
    (folder / "manifest.json").write_bytes(bytes(range(256)))
    line = refused(train.main, ["--input", str(folder), "--runs_root", str(tmp_path / "runs"), "--cache_dir", str(tmp_path / "c")], capsys)  # fmt: skip
    assert "manifest.json" in line


def test_train_refuses_a_budget_given_twice_differently(trained: dict, fast: list[str], tmp_path: Path, capsys) -> None:
    argv = [
        "--input",
        str(trained["shards"]),
        "--runs_root",
        str(tmp_path),
        "--cache_dir",
        str(trained["root"] / "cache"),
    ]
    argv += [*fast, "--trainer.max_steps", "5", "--trainer.max_epochs", "1"]
    line = refused(train.main, argv, capsys)
    assert "--trainer.max_steps" in line and "--trainer.max_epochs" in line


# -------------------------------------------------------------------------------------- evaluate and embed
@pytest.fixture
def broken_run(tmp_path: Path) -> Path:
    """A run folder with a detector description but a config.yaml that does not parse."""
    run = tmp_path / "runs" / "news" / "broken"
    run.mkdir(parents=True)
    (run / "detector.json").write_text("{}")
    (run / "config.yaml").write_text("input: [unclosed\n")
    return run


@pytest.mark.parametrize("command", [evaluate, embed])
def test_evaluate_and_embed_name_the_run_problem(command: Any, broken_run: Path, tmp_path: Path, capsys) -> None:
    assert "--run" in refused(command.main, ["--run", str(tmp_path / "nowhere")], capsys)
    assert "detector.json" in refused(command.main, ["--run", str(tmp_path)], capsys)
    assert "config.yaml" in refused(command.main, ["--run", str(broken_run)], capsys)
    assert "--weights" in refused(command.main, ["--run", str(broken_run), "--weights", "foo"], capsys)
    assert "--bogus" in refused(command.main, ["--run", str(broken_run), "--bogus", "x"], capsys)


def test_evaluate_split_and_input(trained: dict, tmp_path: Path, capsys) -> None:
    run = str(trained["run"])
    assert "--split" in refused(evaluate.main, ["--run", run, "--split", "dev"], capsys)
    assert "--input" in refused(evaluate.main, ["--run", run, "--input", str(tmp_path / "none")], capsys)


@pytest.mark.parametrize("case", ["folder", "not_duckdb"])
def test_embed_store_must_be_a_duckdb_file(case: str, trained: dict, bad_files: dict[str, Path], capsys) -> None:
    store = bad_files["folder"] if case == "folder" else bad_files["latin1"]
    line = refused(embed.main, ["--run", str(trained["run"]), "--store", str(store)], capsys)
    assert f"--store {store}" in line


# ---------------------------------------------------------------------------------------------------- detect
@pytest.mark.parametrize("case", MALFORMED)
def test_detect_names_the_malformed_input(case: str, bad_files: dict[str, Path], tmp_path: Path, capsys) -> None:
    path = bad_files[case]
    assert str(path) in refused(detect.main, ["--run", str(tmp_path), "--input", str(path)], capsys)


def test_detect_on_an_empty_file_produces_nothing(bad_files: dict[str, Path], tmp_path: Path, capsys) -> None:
    line = refused(detect.main, ["--run", str(tmp_path), "--input", str(bad_files["empty"])], capsys, 1)
    assert str(bad_files["empty"]) in line


def test_detect_where_no_post_can_be_scored_produces_nothing(trained: dict, tmp_path: Path, capsys) -> None:
    posts = tmp_path / "posts.jsonl"
    posts.write_text(post_line("1", image="gone.png") + post_line("2", text=" ", image="gone.png"))
    argv = ["--run", str(trained["run"]), "--input", str(posts), "--out_dir", str(tmp_path / "out")]
    line = refused(detect.main, argv, capsys, 1)
    assert "all 2 posts were skipped" in line
    assert (tmp_path / "out" / "posts.results.jsonl").is_file()  # the reasons, one line per post


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--text", "a red square"], "--image"),
        (["--image", "{a_png}"], "--text"),
        (["--text", "a red square", "--image", "{missing}"], "--image"),
        (["--text", "a red square", "--image", "{folder}"], "--image"),
        (["--text", "a red square", "--image", "{binary}"], "--image"),
        (["--text", " ", "--image", "{a_png}"], "--text"),
        (["--post", '{"text": "a"'], "--post"),
        (["--post", '{"text": "a"}'], "--post"),
        (["--post", "{missing}"], "--post"),
        (["--post", "{binary}"], "--post"),
        (["--input", "{missing}"], "--input"),
        (["--input", "{folder}"], "--input"),
        (["--input", "{empty}", "--text", "a"], "--input"),
        ([], "--post"),
        (["--text", "a", "--image", "{a_png}", "--weights", "foo"], "--weights"),
        (["--text", "a", "--image", "{a_png}", "--batch_size", "0"], "--batch_size"),
        (["--text", "a", "--image", "{a_png}", "--batch_size", "x"], "batch_size"),
        (["--text", "a", "--image", "{a_png}"], "--run"),
        (["--config", "{bad_yaml}"], BAD_YAML),
        (["--bogus", "1"], "--bogus"),
    ],
)
def test_detect_flags(argv: list[str], named: str, bad_files: dict[str, Path], tmp_path: Path, capsys) -> None:
    paths = {k: str(v) for k, v in bad_files.items()} | {"a_png": str(tmp_path / "a.png")}
    argv = [a.format(**paths) if a.startswith("{") and not a.startswith('{"') else a for a in argv]
    line = refused(detect.main, ["--run", str(tmp_path / "no_run"), *argv], capsys)
    assert named in line


# ---------------------------------------------------------------------------------------------------- ablate
@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--variants", '["everything"]'], "--variants"),
        (["--variants", "[]"], "--variants"),
        (["--seeds", "[]"], "--seeds"),
        (["--seeds", "[1, 1]"], "--seeds"),
        (["--seeds", "one"], "seeds"),
        (["--trainer.resume", "latest"], "--trainer.resume"),
        (["--trainer.resume", "some/checkpoint.pt"], "--trainer.resume"),
        (["--trainer.max_steps", "0"], "--trainer.max_steps"),
        (["--input", "{missing}"], "--input"),
        (["--bogus", "1"], "--bogus"),
        (["--config", "{bad_yaml}"], BAD_YAML),
    ],
)
def test_ablate_flags(argv: list[str], named: str, bad_files: dict[str, Path], fake_shards: Path, tmp_path: Path, capsys) -> None:  # fmt: skip
    argv = [a.format(**{k: str(v) for k, v in bad_files.items()}) if a.startswith("{m") or a.startswith("{b") else a for a in argv]  # fmt: skip
    base = ["--input", str(fake_shards), "--runs_root", str(tmp_path / "runs")]
    assert named in refused(ablate.main, [*base, *argv], capsys)
