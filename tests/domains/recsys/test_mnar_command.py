"""The mnar command end to end on tiny settings: semi-synthetic ML-100K and a Coat-layout fixture.

Also: the run folder follows the core contract (run.json, metrics.csv schema), the real-data fits run what
``--trainer.*`` says and what config.yaml records, and a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import domains.recsys.mnar
from domains.recsys.mnar import config as mnar_config
from domains.recsys.mnar.__main__ import main
from domains.recsys.mnar.data import read_movielens_100k_ratings
from domains.recsys.mnar.semi_synthetic import GeneratorSettings, build_semi_synthetic_world
from shared.cli import build_parser, field_docstrings
from shared.run_folder import RunFolder, read_metrics
from shared.store import open_readonly

CONFIGS = Path(domains.recsys.mnar.__file__).parents[1] / "configs"


@pytest.fixture(autouse=True)
def _single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_exposure_is_coupled_across_powers_and_sparser_for_larger_p(tmp_path):
    world = build_semi_synthetic_world(read_movielens_100k_ratings(), GeneratorSettings(iterations=20), tmp_path)
    assert world.shape == (943, 1682)
    gamma = world.relevance_probability
    assert gamma.min() >= 1 / (1 + np.exp(4)) - 1e-9 and gamma.max() <= 0.5 + 1e-9  # σ([1, 5] − 5)
    _, exposure_1, clicks_1 = world.sample(1.0)
    _, exposure_4, clicks_4 = world.sample(4.0)
    assert np.all(exposure_4 <= exposure_1)  # θ^4 ≤ θ with the same uniforms
    assert clicks_4.sum() < clicks_1.sum()
    assert np.all(clicks_1 <= world.relevance)


def test_semi_synthetic_command_writes_the_table_and_embeddings(tmp_path, capsys):
    store = tmp_path / "store.duckdb"
    argv = [
        "--seeds", "2",
        "--semi_synthetic.exposure_powers", "[1.0, 4.0]",
        "--semi_synthetic.generator_iterations", "20",
        "--semi_synthetic.iterations", "60",
        "--semi_synthetic.validate_every", "20",
        "--runs_root", str(tmp_path / "runs"),
        "--store", str(store),
        "--run_name", "tiny",
    ]  # fmt: skip
    summary = main(argv)
    run = tmp_path / "runs" / "recsys" / "tiny"
    for name in ("config.yaml", "results.md", "results.json", "metrics.csv", "eval/metrics.json"):
        assert (run / name).is_file(), name
    assert yaml.safe_load((run / "config.yaml").read_text())["seeds"] == 2
    table = json.loads((run / "eval" / "metrics.json").read_text())["table"]
    assert set(table) == {"oracle", "naive", "relmf", "relmf_clipped(M=0.1)"}
    assert table["oracle"]["1"]["relative_mean"] == pytest.approx(1.0)
    rows = json.loads((run / "results.json").read_text())["rows"]
    assert len(rows) == 2 * 4 * 2  # powers x estimators x seeds
    for row in rows:  # relative value is the ratio of the row's loss to its seed's oracle
        oracle = next(
            r for r in rows if r["estimator"] == "oracle" and r["seed"] == row["seed"] and r["power"] == row["power"]
        )
        assert row["relative_to_oracle"] == pytest.approx(row["test_log_loss"] / oracle["test_log_loss"])
    assert "| estimator | p=1 | p=4 |" in (run / "results.md").read_text()
    # seed-0 models of both powers and four estimators: 943 users + 1682 items each
    assert summary["embeddings_written"] == 2 * 4 * (943 + 1682)
    assert (
        json.loads((run / "eval" / "metrics.json").read_text())["embeddings_written"] == summary["embeddings_written"]
    )
    with open_readonly(store) as connection:
        counts = dict(connection.execute("SELECT modality, count(*) FROM all_embeddings GROUP BY modality").fetchall())
    assert counts == {"user": 8 * 943, "item": 8 * 1682}
    assert "next:" in capsys.readouterr().out


def _write_coat(folder: Path, seed: int = 0) -> None:
    """A 40 x 30 Coat-layout fixture: users rate popular items more often (MNAR), test items at random."""
    rng = np.random.default_rng(seed)
    n_users, n_items = 40, 30
    taste = rng.normal(size=(n_users, 3))
    features = rng.normal(size=(n_items, 3))
    ratings = np.clip(np.round(3 + taste @ features.T), 1, 5).astype(int)
    popularity = np.linspace(0.6, 0.05, n_items)
    train = np.where(rng.random((n_users, n_items)) < popularity, ratings, 0)
    test = np.zeros_like(ratings)
    for user in range(n_users):
        items = rng.choice(np.flatnonzero(train[user] == 0), size=6, replace=False)
        test[user, items] = ratings[user, items]
    folder.mkdir()
    np.savetxt(folder / "train.ascii", train, fmt="%d")
    np.savetxt(folder / "test.ascii", test, fmt="%d")
    np.savetxt(folder / "propensities.ascii", np.tile(popularity, (n_users, 1)), fmt="%.4f")


def test_real_dataset_run_reports_mar_rare_and_ips_metrics_for_every_estimator(tmp_path):
    _write_coat(tmp_path / "coat")
    argv = [
        "--config", str(CONFIGS / "mnar_coat.yaml"),
        "--input", str(tmp_path / "coat"),
        "--seeds", "1",
        "--clip", "[0.05, 0.2]",
        "--real.dim", "4",
        "--trainer.max_steps", "30",
        "--trainer.progress_bar", "false",
        "--real.batch_size", "256",
        "--real.expomf_dim", "4",
        "--real.expomf_iterations", "2",
        "--runs_root", str(tmp_path / "runs"),
        "--store", str(tmp_path / "store.duckdb"),
    ]  # fmt: skip
    summary = main(argv)
    table = summary["table"]
    expected = {
        "naive", "wmf", "expomf", "relmf[η=0.5]", "relmf_clipped(M=0.05)[η=0.5]", "relmf_clipped(M=0.2)[η=0.5]",
        "ubpr(M=0.05)[η=0.5]", "ubpr(M=0.2)[η=0.5]",
    }  # fmt: skip
    assert set(table) == expected
    for values in table.values():
        for key in ("mar_DCG@5", "mar_Recall@5", "mar_MAP@5", "rare_DCG@5", "ips_DCG@5", "snips_Recall@5"):
            assert np.isfinite(values[key]), key
        assert 0.0 <= values["mar_Recall@5"] <= 1.0
        assert 0.0 <= values["snips_Recall@5"] <= 1.0
    run = tmp_path / "runs" / "recsys" / "mnar-coat"
    assert "mar_DCG@5" in (run / "results.md").read_text()


def test_oracle_on_real_data_is_refused(tmp_path):
    _write_coat(tmp_path / "coat")
    with pytest.raises(ValueError, match="oracle needs the true relevance"):
        main(
            [
                "--dataset", "coat", "--input", str(tmp_path / "coat"), "--estimators", "[oracle]",
                "--seeds", "1", "--runs_root", str(tmp_path / "runs"), "--store", "null",
            ]
        )  # fmt: skip


def _coat_argv(tmp_path: Path, *extra: str) -> list[str]:
    """A small real-data run on the Coat fixture: tiny models, no progress bar, no store."""
    if not (tmp_path / "coat").is_dir():
        _write_coat(tmp_path / "coat")
    return [
        "--dataset", "coat", "--input", str(tmp_path / "coat"), "--conventions", "standard",
        "--real.dim", "4", "--real.batch_size", "128", "--trainer.progress_bar", "false",
        "--runs_root", str(tmp_path / "runs"), "--store", "null", *extra,
    ]  # fmt: skip


def _train_steps(rows: list[dict], prefix: str = "") -> dict[str, int]:
    """Last train step of each fit in ``metrics.csv`` rows (metric ``<fit>/<name>``)."""
    steps: dict[str, int] = {}
    for row in rows:
        if row["phase"] == "train" and row["metric"].startswith(prefix) and row["metric"].endswith("/loss"):
            fit = row["metric"].rsplit("/", 1)[0]
            steps[fit] = max(steps.get(fit, 0), row["step"])
    return steps


def test_real_data_fits_run_the_trainer_settings_that_config_yaml_records(tmp_path):
    argv = _coat_argv(
        tmp_path, "--estimators", "[naive, relmf, ubpr]", "--seeds", "2", "--trainer.max_steps", "3",
        "--trainer.seed", "7", "--run_name", "steps",
    )  # fmt: skip
    main(argv)
    folder = RunFolder(tmp_path / "runs" / "recsys" / "steps")
    saved = folder.load_config()
    assert saved["trainer"]["max_steps"] == 3 and saved["trainer"]["seed"] == 7
    assert saved["estimators"] == ["naive", "relmf", "ubpr"] and saved["rare_item_max_positives"] is not None
    steps = _train_steps(read_metrics(folder.path))
    assert steps == {
        f"{label}/seed={seed}": 3 for label in ("naive", "relmf[η=0.5]", "ubpr(M=0.00914)[η=0.5]") for seed in (7, 8)
    }
    fit_dirs = sorted(path.name for path in (folder.path / "fits").iterdir())
    assert fit_dirs == sorted(
        f"{name}_seed_{seed}" for name in ("naive", "relmf_eta_0.5", "ubpr_M_0.00914_eta_0.5") for seed in (7, 8)
    )
    for fit_dir in (folder.path / "fits").iterdir():  # each fit is a trainer run folder of its own
        assert max(row["step"] for row in read_metrics(fit_dir) if row["phase"] == "train") == 3
        assert (fit_dir / "model.safetensors").is_file() and (fit_dir / "checkpoints" / "latest.json").is_file()
    rows = json.loads((folder.path / "results.json").read_text())["rows"]
    assert sorted({row["seed"] for row in rows}) == [7, 8] and {row["steps"] for row in rows} == {3}
    marker = folder.marker()
    assert marker["command"] == "domains.recsys.mnar"
    assert "fits/naive_seed_7/model.safetensors" in marker["outputs"] and "eval/metrics.json" in marker["outputs"]
    tested = {row["metric"] for row in read_metrics(folder.path) if row["phase"] == "test"}
    assert "naive/seed=7/mar_DCG@5" in tested


def test_resumed_run_equals_an_uninterrupted_one(tmp_path):
    common = ["--estimators", "[relmf, ubpr]", "--seeds", "1", "--trainer.checkpoint_every", "2"]
    main(_coat_argv(tmp_path, *common, "--trainer.max_steps", "6", "--run_name", "straight"))
    main(_coat_argv(tmp_path, *common, "--trainer.max_steps", "4", "--run_name", "interrupted"))
    interrupted = tmp_path / "runs" / "recsys" / "interrupted"
    shutil.rmtree(interrupted / "fits" / "ubpr_M_0.00914_eta_0.5_seed_0")  # a fit that had not started yet
    (interrupted / "run.json").unlink()
    main(
        _coat_argv(
            tmp_path, *common, "--trainer.max_steps", "6", "--trainer.resume", "latest", "--run_name", "interrupted"
        )
    )

    def metrics(run: str) -> list[dict]:
        rows = json.loads((tmp_path / "runs" / "recsys" / run / "results.json").read_text())["rows"]
        return [{k: v for k, v in row.items() if k.startswith(("mar_", "rare_", "ips_", "snips_"))} for row in rows]

    assert metrics("interrupted") == metrics("straight")
    assert _train_steps(read_metrics(interrupted)) == {"relmf[η=0.5]/seed=0": 6, "ubpr(M=0.00914)[η=0.5]/seed=0": 6}
    assert RunFolder(interrupted).is_finished


def test_semi_synthetic_run_folder_follows_the_core_contract(tmp_path):
    argv = [
        "--seeds", "2", "--estimators", "[oracle, naive]",
        "--semi_synthetic.exposure_powers", "[2.0]",
        "--semi_synthetic.generator_iterations", "10",
        "--semi_synthetic.iterations", "40",
        "--semi_synthetic.validate_every", "20",
        "--runs_root", str(tmp_path / "runs"), "--store", "null", "--run_name", "contract",
    ]  # fmt: skip
    summary = main(argv)
    folder = RunFolder(tmp_path / "runs" / "recsys" / "contract")
    assert folder.marker()["command"] == "domains.recsys.mnar"
    assert set(folder.marker()["outputs"]) >= {"config.yaml", "metrics.csv", "results.md", "eval/metrics.json"}
    assert folder.load_config()["clip"] == [0.1] and folder.load_config()["run_name"] == "contract"
    rows = read_metrics(folder.path)
    assert {row["phase"] for row in rows} == {"train", "val", "test"}
    naive_validation = [
        row["step"] for row in rows if row["metric"] == "naive/p=2/seed=1/loss" and row["phase"] == "val"
    ]
    assert naive_validation == [20, 40]
    assert _train_steps(rows, "generator/") == {"generator/ratings": 10, "generator/exposure": 10}
    cell = summary["table"]["naive"]["2"]  # a 95% interval over the two seeds around their mean
    assert cell["relative_n"] == 2 and cell["relative_ci_low"] <= cell["relative_mean"] <= cell["relative_ci_high"]
    paired = summary["paired_vs_naive"]["oracle"]["2"]
    losses = {
        (row["estimator"], row["seed"]): row["test_log_loss"]
        for row in json.loads((folder.path / "results.json").read_text())["rows"]
    }
    differences = [losses[("oracle", seed)] - losses[("naive", seed)] for seed in (0, 1)]
    assert paired["n"] == 2 and paired["mean"] == pytest.approx(np.mean(differences))
    assert paired["std"] == pytest.approx(np.std(differences, ddof=1))
    assert paired["verdict"] in ("supported", "contradicted", "cannot tell")


def test_one_seed_leaves_the_spread_undefined(tmp_path):
    argv = [
        "--seeds", "1", "--estimators", "[oracle, naive]", "--semi_synthetic.exposure_powers", "[2.0]",
        "--semi_synthetic.generator_iterations", "5", "--semi_synthetic.iterations", "5",
        "--semi_synthetic.validate_every", "5", "--runs_root", str(tmp_path / "runs"), "--store", "null",
    ]  # fmt: skip
    main(argv)
    saved = json.loads((tmp_path / "runs" / "recsys" / "mnar-semi-synthetic" / "eval" / "metrics.json").read_text())
    cell = saved["table"]["naive"]["2"]
    assert cell["relative_std"] is None and cell["relative_ci_low"] is None and cell["relative_n"] == 1
    assert "(1 seed)" in (tmp_path / "runs" / "recsys" / "mnar-semi-synthetic" / "results.md").read_text()


OWNED_CONFIGS = (mnar_config.MnarConfig, mnar_config.SemiSyntheticSection, mnar_config.RealDataSection)


def field_docs(config_cls: type, prefix: str = "") -> dict[str, str]:
    """``{flag: docstring}`` of every field, recursively through the nested dataclasses MNAR owns."""
    docs = {}
    texts = field_docstrings(config_cls)
    for item in dataclasses.fields(config_cls):
        default = item.default_factory() if item.default_factory is not dataclasses.MISSING else item.default
        docs[f"--{prefix}{item.name}"] = texts[item.name]
        if type(default) in OWNED_CONFIGS:
            docs.update(field_docs(type(default), f"{prefix}{item.name}."))
    return docs


def undocumented(config_cls: type) -> list[str]:
    """Options without a docstring, or whose docstring's first words ``--help`` does not show."""
    flat = " ".join(build_parser(config_cls).format_help().split())
    problems = []
    for flag, doc in field_docs(config_cls).items():
        first_words = " ".join(doc.split()[:4]).rstrip(".:")
        if not doc.strip() or flag not in flat or first_words not in flat:
            problems.append(flag)
    return problems


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for option in ("--dataset", "--estimators", "--eta", "--clip", "--semi_synthetic.exposure_powers", "--real.loss"):
        assert option in text
    assert "Popularity powers" in text
    assert undocumented(mnar_config.MnarConfig) == []
    assert "--trainer.max_steps" in text


def test_the_log_writer_help_documents_every_option(capsys):
    from domains.recsys.mnar.semi_synthetic_log import SemiSyntheticLogConfig
    from domains.recsys.mnar.write_semi_synthetic_log import main as write_log_main

    with pytest.raises(SystemExit):
        write_log_main(["--help"])
    assert "--test_items_per_user" in capsys.readouterr().out
    assert undocumented(SemiSyntheticLogConfig) == []


def test_help_check_fails_for_an_undocumented_field():
    @dataclasses.dataclass
    class Partly:
        """A config with one documented and one bare field."""

        documented: int = 1
        """Says what it is."""
        bare: int = 2

    assert undocumented(Partly) == ["--bare"]
