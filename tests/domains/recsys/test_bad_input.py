"""Bad input to every recsys LLMRec command: one line on stderr naming the file or flag, the right exit status.

Every case runs the command in-process through :func:`shared.cli.run_command` and checks: exit status 2 for
a user error or 1 for "nothing produced", exactly one line on stderr, no traceback, the file or flag named,
and, when nothing was produced, no "next:" hint on stdout.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from command_contract import expect_command_failure

from domains.recsys import ablate, augment, embed, evaluate, ingest, noisy_augmentation, recommend, train

from .conftest import write_synthetic_recbole

COMMANDS = (train, augment, ablate, ingest, evaluate, embed, recommend, noisy_augmentation)
FAST = ["--fit.batch_size", "64", "--dataset.text_features", "false"]
HEADER = "user_id:token\titem_id:token\trating:float\n"


def fast(command: ModuleType) -> list[str]:
    """Flags that keep a command small (ingest has no fit settings and computes no text features; the
    controlled experiment has no dataset settings)."""
    if command is noisy_augmentation:
        return ["--fit.batch_size", "64"]
    return [] if command is ingest else FAST


def expect_failure(command: ModuleType, argv: list[str], capsys, names: tuple[str, ...], code: int = 2) -> str:
    """Runs ``command`` and checks the failure contract; returns the stderr line."""
    return expect_command_failure(command.main, argv, capsys, code, names).line


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny training run (no augmentation, 2 steps) on the synthetic dataset."""
    root = tmp_path_factory.mktemp("bad_input")
    folder = root / "synth"
    folder.mkdir()
    write_synthetic_recbole(folder)
    train.main(["--input", str(folder), "--runs_root", str(root), "--run_name", "tiny", "--augmentation", "none",
                "--trainer.max_steps", "2", "--trainer.max_epochs", "null", *FAST])  # fmt: skip
    return root / "recsys" / "tiny"


# ------------------------------------------------------------------------------------------ every command
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.__name__)
def test_unknown_flag(command: ModuleType, capsys) -> None:
    expect_failure(command, ["--no_such_flag", "1"], capsys, ("no_such_flag",))


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.__name__)
def test_config_yaml_that_does_not_parse(command: ModuleType, tmp_path: Path, capsys) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text("run_name: [unclosed\n  - : :\n")
    # The core's parse_config reports a --config file that does not parse as "Problems parsing config".
    expect_failure(command, ["--config", str(config)], capsys, ("config",))


@pytest.mark.parametrize(
    ("command", "flag", "value"),
    [
        (train, "--fit.batch_size", "many"),
        (augment, "--candidates_k", "ten"),
        (ablate, "--seeds", "one"),
        (ingest, "--dataset.split_seed", "x"),
        (evaluate, "--ks", "ten"),
        (recommend, "--top_n", "ten"),
        (embed, "--run", "[1, 2]"),
        (noisy_augmentation, "--noise_levels", "half"),
    ],
    ids=lambda v: getattr(v, "__name__", v),
)
def test_wrong_type_in_a_flag(command: ModuleType, flag: str, value: str, capsys) -> None:
    expect_failure(command, [flag, value], capsys, (flag.lstrip("-"),))


# ------------------------------------------------------------------------------- input data (RecBole files)
def _inter_folder(tmp_path: Path, content: bytes) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "bad.inter").write_bytes(content)
    return folder


BAD_INTER_FILES = {
    "empty": b"",
    "binary": b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe\x00\x01binary",
    "latin-1": (HEADER + "1\t2\t4\n3\tCaf\xe9\t5\n").encode("latin-1"),
    "utf-16": (HEADER + "1\t2\t4\n").encode("utf-16"),
    "huge line": (HEADER + "1\t2\t4\n" + "9" * 2_000_000 + "\n").encode(),
    "missing columns": b"user_id:token\trating:float\n1\t4\n",
    "non-numeric rating": (HEADER + "1\t2\t4\n1\t3\tfive\n").encode(),
    "NaN rating": (HEADER + "1\t2\t4\n1\t3\tnan\n").encode(),
    "inf rating": (HEADER + "1\t2\t4\n1\t3\tinf\n").encode(),
    "malformed header": b"user_id\titem_id\n1\t2\n",
}


@pytest.mark.parametrize("command", [train, ingest, ablate, noisy_augmentation], ids=lambda c: c.__name__)
@pytest.mark.parametrize("case", list(BAD_INTER_FILES))
def test_malformed_interaction_file(command: ModuleType, case: str, tmp_path: Path, capsys) -> None:
    folder = _inter_folder(tmp_path, BAD_INTER_FILES[case])
    argv = ["--input", str(folder), "--runs_root", str(tmp_path / "runs"), *fast(command)]
    expect_failure(command, argv, capsys, ("bad.inter",))
    assert not list((tmp_path / "runs").rglob("run.json")), "a failed command marks no run finished"


@pytest.mark.parametrize("command", [train, ingest], ids=lambda c: c.__name__)
def test_interaction_file_with_only_its_header_produces_nothing(command: ModuleType, tmp_path: Path, capsys) -> None:
    folder = _inter_folder(tmp_path, HEADER.encode())
    argv = ["--input", str(folder), "--runs_root", str(tmp_path / "runs"), *fast(command)]
    expect_failure(command, argv, capsys, ("--input", str(folder)), code=1)


def test_latin1_item_table_is_named(synthetic_recbole: Path, tmp_path: Path, capsys) -> None:
    item_file = synthetic_recbole / "synth.item"
    item_file.write_bytes(item_file.read_text().replace("Movie 1\t", "Movi\xe9 1\t").encode("latin-1"))
    expect_failure(ingest, ["--input", str(synthetic_recbole), "--runs_root", str(tmp_path)], capsys, ("synth.item",))


@pytest.mark.parametrize("command", [train, ingest, ablate], ids=lambda c: c.__name__)
def test_nonexistent_input_folder(command: ModuleType, tmp_path: Path, capsys) -> None:
    missing = tmp_path / "no_such_folder"
    expect_failure(command, ["--input", str(missing), "--runs_root", str(tmp_path)], capsys, ("--input", str(missing)))


@pytest.mark.parametrize("command", [train, ingest], ids=lambda c: c.__name__)
def test_a_file_where_the_input_folder_is_expected(
    command: ModuleType, synthetic_recbole: Path, tmp_path: Path, capsys
) -> None:
    file = synthetic_recbole / "synth.inter"
    expect_failure(command, ["--input", str(file), "--runs_root", str(tmp_path)], capsys, ("--input", "synth.inter"))


def test_folder_without_an_interaction_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    expect_failure(ingest, ["--input", str(tmp_path / "empty"), "--runs_root", str(tmp_path)], capsys, ("empty",))


# ------------------------------------------------------------------------------------ input data (LLMRec layout)
def _layout(tmp_path: Path) -> Path:
    folder = tmp_path / "layout"
    folder.mkdir()
    for part, content in (("train", {"0": [0, 1], "1": [2]}), ("val", {"0": [2]}), ("test", {"1": [3]})):
        (folder / f"{part}.json").write_text(json.dumps(content))
    return folder


def test_layout_json_that_does_not_parse(tmp_path: Path, capsys) -> None:
    folder = _layout(tmp_path)
    (folder / "val.json").write_text('{"0": [2')
    expect_failure(ingest, ["--input", str(folder), "--runs_root", str(tmp_path)], capsys, ("val.json",))


def test_layout_json_in_utf16(tmp_path: Path, capsys) -> None:
    folder = _layout(tmp_path)
    (folder / "train.json").write_bytes(json.dumps({"0": [0]}).encode("utf-16"))
    expect_failure(ingest, ["--input", str(folder), "--runs_root", str(tmp_path)], capsys, ("train.json",))


def test_layout_features_with_nan(tmp_path: Path, capsys) -> None:
    folder = _layout(tmp_path)
    features = np.ones((4, 3), dtype=np.float32)
    features[2, 1] = np.nan
    np.save(folder / "text_feat.npy", features)
    expect_failure(ingest, ["--input", str(folder), "--runs_root", str(tmp_path)], capsys, ("text_feat.npy",))


def test_layout_features_that_are_not_an_array(tmp_path: Path, capsys) -> None:
    folder = _layout(tmp_path)
    (folder / "text_feat.npy").write_bytes(b"\x00\x01 not numpy")
    expect_failure(ingest, ["--input", str(folder), "--runs_root", str(tmp_path)], capsys, ("text_feat.npy",))


# -------------------------------------------------------------------------------------------- train settings
def test_train_resume_without_a_checkpoint(synthetic_recbole: Path, tmp_path: Path, capsys) -> None:
    argv = ["--input", str(synthetic_recbole), "--runs_root", str(tmp_path), "--augmentation", "none",
            "--trainer.max_steps", "2", "--trainer.max_epochs", "null", "--trainer.resume", "latest", *FAST]  # fmt: skip
    expect_failure(train, argv, capsys, ("resume", "no checkpoint"))


@pytest.mark.parametrize(
    ("flags", "names"),
    [
        (["--augmentation", "no/such/folder"], ("--augmentation", "no/such/folder")),
        (["--augmentation", "layout"], ("--augmentation layout",)),
        (["--dataset.split_ratios", "[0.5, 0.5, 0.5]"], ("--dataset.split_ratios",)),
        (["--dataset.split_strategy", "sideways"], ("--dataset.split_strategy",)),
        (["--fit.batch_size", "0"], ("--fit.batch_size",)),
        (["--ndcg_variant", "best"], ("--ndcg_variant",)),
        (["--model.id_propagation", "sideways"], ("--model.id_propagation",)),
        (["--model.prune_drop_fraction", "1.0"], ("--model.prune_drop_fraction",)),
        (["--fit.test_excludes", "nothing"], ("--fit.test_excludes",)),
        (["--candidates_k", "1"], ("--candidates_k",)),
        (["--trainer.optimizer", "lbfgs", "--augmentation", "none"], ("--trainer.optimizer",)),
    ],
    ids=lambda v: v[0] if isinstance(v, list) else None,
)
def test_train_settings_out_of_range(synthetic_recbole: Path, tmp_path: Path, capsys, flags, names) -> None:
    argv = ["--input", str(synthetic_recbole), "--runs_root", str(tmp_path), *FAST, *flags]
    expect_failure(train, argv, capsys, names)


def test_train_kg_augmentation_without_a_knowledge_graph(tmp_path: Path, capsys) -> None:
    folder = _inter_folder(tmp_path, (HEADER + "1\t2\t4\n1\t3\t5\n2\t2\t3\n").encode())
    expect_failure(train, ["--input", str(folder), "--runs_root", str(tmp_path), *FAST], capsys, ("--augmentation kg",))


def test_train_min_rating_that_no_rating_reaches(synthetic_recbole: Path, tmp_path: Path, capsys) -> None:
    argv = ["--input", str(synthetic_recbole), "--runs_root", str(tmp_path), "--dataset.min_rating", "9", *FAST]
    expect_failure(train, argv, capsys, ("min_rating",), code=1)


def test_ablation_seed_flags(synthetic_recbole: Path, tmp_path: Path, capsys) -> None:
    base = ["--input", str(synthetic_recbole), "--runs_root", str(tmp_path), *FAST]
    expect_failure(ablate, [*base, "--seeds", "[]"], capsys, ("--seeds",))
    expect_failure(ablate, [*base, "--trainer.seed", "5"], capsys, ("--trainer.seed", "--seeds"))
    expect_failure(ablate, [*base, "--variants", "[lightgcn, +magic]"], capsys, ("--variants",))


# ---------------------------------------------------------------------------------- commands reading a run
@pytest.mark.parametrize("command", [evaluate, recommend, embed, augment], ids=lambda c: c.__name__)
def test_run_that_does_not_exist(command: ModuleType, tmp_path: Path, capsys) -> None:
    expect_failure(command, ["--run", str(tmp_path / "nowhere")], capsys, ("--run", "nowhere"))


@pytest.mark.parametrize("command", [evaluate, recommend, embed, augment], ids=lambda c: c.__name__)
def test_run_given_as_a_file(command: ModuleType, trained_run: Path, capsys) -> None:
    expect_failure(command, ["--run", str(trained_run / "config.yaml")], capsys, ("--run", "config.yaml"))


@pytest.mark.parametrize("command", [evaluate, recommend, embed, augment], ids=lambda c: c.__name__)
def test_run_that_did_not_finish(command: ModuleType, tmp_path: Path, capsys) -> None:
    unfinished = tmp_path / "recsys" / "half"
    unfinished.mkdir(parents=True)
    (unfinished / "config.yaml").write_text("run_name: half\n")
    expect_failure(command, ["--run", str(unfinished)], capsys, ("--run", "did not finish"))


@pytest.mark.parametrize(
    ("flags", "names", "code"),
    [
        (["--top_n", "0"], ("--top_n",), 2),
        (["--top_n", "100000"], ("--top_n",), 2),
        (["--users", "[]"], ("--users",), 1),
        (["--users", "[1, nobody, ghost]"], ("--users", "nobody", "ghost"), 2),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_recommend_out_of_range(trained_run: Path, capsys, flags: list[str], names: tuple[str, ...], code: int) -> None:
    expect_failure(recommend, ["--run", str(trained_run), *flags], capsys, names, code=code)


@pytest.mark.parametrize(
    ("flags", "names"),
    [
        (["--split", "train"], ("--split",)),
        (["--ks", "[0, 20]"], ("--ks",)),
        (["--ndcg_variant", "best"], ("--ndcg_variant",)),
        (["--batch_users", "0"], ("--batch_users",)),
    ],
    ids=lambda v: v[0] if isinstance(v, list) else None,
)
def test_evaluate_out_of_range(trained_run: Path, capsys, flags: list[str], names: tuple[str, ...]) -> None:
    expect_failure(evaluate, ["--run", str(trained_run), *flags], capsys, names)


def test_embed_into_a_store_path_that_is_a_folder(trained_run: Path, tmp_path: Path, capsys) -> None:
    expect_failure(embed, ["--run", str(trained_run), "--store", str(tmp_path)], capsys, (str(tmp_path),))


@pytest.mark.parametrize(
    ("flags", "names"),
    [
        (["--backend", "oracle"], ("--backend",)),
        (["--tasks", "[edges, poems]"], ("--tasks",)),
        (["--candidates_k", "0"], ("--candidates_k",)),
        (["--candidates_k", "1000"], ("--candidates_k",)),
        (["--backend", "transformers"], ("--model_path",)),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_augment_settings_out_of_range(trained_run: Path, tmp_path: Path, capsys, flags, names) -> None:
    argv = ["--run", str(trained_run), "--runs_root", str(tmp_path), "--cache_dir", str(tmp_path / "cache"), *flags]
    expect_failure(augment, argv, capsys, names)


def test_the_real_command_line_prints_nothing_but_the_error_line(trained_run: Path) -> None:
    """Outside pytest's capture, library warnings (torch_geometric's import) must not reach stderr either."""
    import os
    import subprocess
    import sys

    argv = [sys.executable, "-m", "domains.recsys.recommend", "--run", str(trained_run), "--users", "[nobody]"]
    result = subprocess.run(argv, capture_output=True, text=True, cwd=Path(__file__).parents[3], env=dict(os.environ))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: --users") and "nobody" in result.stderr
    assert "next:" not in result.stdout.lower()


def test_train_augmentation_folder_without_augmentation_files(synthetic_recbole: Path, tmp_path: Path, capsys) -> None:
    empty = tmp_path / "not_augmentation"
    empty.mkdir()
    argv = ["--input", str(synthetic_recbole), "--runs_root", str(tmp_path / "runs"), "--augmentation", str(empty)]
    expect_failure(train, [*argv, *FAST], capsys, ("not_augmentation",))
    assert not (tmp_path / "runs").exists(), "refused before the run folder is created"


def test_train_augmentation_edges_naming_unknown_items(synthetic_recbole: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "augmentation"
    folder.mkdir()
    (folder / "edges.tsv").write_text("user_id:token\tpos_item_id:token\tneg_item_id:token\n1\t2\t3\n1\t999\t3\n")
    argv = ["--input", str(synthetic_recbole), "--runs_root", str(tmp_path / "runs"), "--augmentation", str(folder)]
    expect_failure(train, [*argv, *FAST], capsys, ("edges.tsv:3", "999"))
