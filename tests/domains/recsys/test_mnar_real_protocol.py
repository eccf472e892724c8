"""The real-data protocol on a semi-synthetic click log: logged true propensities, choice on validation, claims.

Also: the semi-synthetic world written as a click log, and click logs whose user id is composed of columns.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from command_contract import expect_command_failure
from safetensors.torch import load_file

import domains.recsys.mnar
from domains.recsys.mnar.__main__ import main
from domains.recsys.mnar.alternating_least_squares import fit_alternating_least_squares, relmf_problem
from domains.recsys.mnar.config import MnarConfig, check_config
from domains.recsys.mnar.data import read_click_log, split_validation_clicks, training_feedback
from domains.recsys.mnar.semi_synthetic import SemiSyntheticWorld
from domains.recsys.mnar.semi_synthetic_log import semi_synthetic_click_tables, write_semi_synthetic_click_log
from domains.recsys.mnar.write_semi_synthetic_log import main as write_log_main
from shared.cli import parse_config

CONFIGS = Path(domains.recsys.mnar.__file__).parents[1] / "configs"


@pytest.fixture(autouse=True)
def _single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _world(n_users: int = 60, n_items: int = 40, seed: int = 0) -> SemiSyntheticWorld:
    rng = np.random.default_rng(seed)
    user_taste, item_taste = rng.normal(size=(n_users, 2)), rng.normal(size=(n_items, 2))
    gamma = 1 / (1 + np.exp(-(user_taste @ item_taste.T - 1.0)))
    logits = (rng.normal(size=(n_users, 2)) @ rng.normal(size=(n_items, 2)).T) + np.linspace(1, -2, n_items)
    return SemiSyntheticWorld(
        gamma, logits, (rng.random(gamma.shape) < gamma).astype(np.int8), rng.random(gamma.shape), 5.0
    )


def test_the_click_log_holds_exposed_pairs_with_their_true_propensities_and_a_mar_test_of_unclicked_items():
    world = _world()
    train, test = semi_synthetic_click_tables(world, power=1.0, test_items_per_user=5)
    theta, exposure, clicks = world.sample(1.0)
    assert len(train) == exposure.sum() and train["click"].sum() == clicks.sum()
    np.testing.assert_allclose(train["propensity"], theta[train["user"], train["item"]])
    np.testing.assert_array_equal(train["click"], world.relevance[train["user"], train["item"]])
    assert (test.groupby("user").size() == 5).all()
    assert (clicks[test["user"], test["item"]] == 0).all()  # test items are unclicked pairs
    np.testing.assert_array_equal(test["click"], world.relevance[test["user"], test["item"]])


def _run(tmp_path: Path, *extra: str) -> dict:
    written = write_semi_synthetic_click_log(_world(), 1.0, tmp_path / "log", test_items_per_user=8)
    argv = [
        "--dataset", "click_log", "--input", str(written.train_path), "--test_input", str(written.test_path),
        "--propensity", "logged", "--conventions", "paper", "--seeds", "2", "--store", "null",
        "--runs_root", str(tmp_path / "runs"), "--run_name", "protocol", *extra,
    ]  # fmt: skip
    main(argv)
    return json.loads((tmp_path / "runs" / "recsys" / "protocol" / "results.json").read_text())


def test_logged_propensities_train_relmf_and_popularity_ones_run_beside_them(tmp_path):
    results = _run(
        tmp_path, "--estimators", "[wmf_als, relmf_als, relmf_clipped_als]", "--also_popularity_propensity", "true",
        "--clip_quantiles", "[0.1, 0.5]", "--real.select_dims", "[2, 4]", "--real.als_iterations", "5",
        "--ordering", "[relmf_als, wmf_als]", "--claims", '["relmf_clipped_als>relmf_clipped_als[η=0.5]"]',
    )  # fmt: skip
    labels = {row["estimator"] for row in results["rows"]}
    assert {"wmf_als", "relmf_als", "relmf_als[η=0.5]"} <= labels
    clipped = [label for label in labels if label.startswith("relmf_clipped_als") and "[η" not in label]
    assert len(clipped) == 1
    # the chosen M is one of the quantiles of the logged θ among training clicks
    dataset = read_click_log(tmp_path / "log" / "train.csv", tmp_path / "log" / "test.csv")
    train_clicks, _ = split_validation_clicks(dataset, 0.1)
    logged = training_feedback(dataset, train_clicks, "logged")
    quantiles = {float(f"{q:.4g}") for q in np.quantile(logged.propensity, [0.1, 0.5])}
    assert float(clipped[0].split("M=")[1].split(")")[0]) in quantiles
    selection = results["summary"]["selection"]
    assert len(selection["relmf_als"]["validation"]) == 2 and selection["relmf_als"]["chosen"].startswith("dim=")
    # the logged-θ Rel-MF is exactly the ALS fit on the log's own propensities with the chosen setting
    row = next(r for r in results["rows"] if r["estimator"] == "relmf_als" and r["seed"] == 0)
    expected = fit_alternating_least_squares(
        relmf_problem(logged), dim=row["dim"], regularization=row["regularization"], iterations=5, seed=0
    ).as_model()
    fit_dir = tmp_path / "runs" / "recsys" / "protocol" / "fits" / f"relmf_als_dim_{row['dim']}_l2_10_seed_0"
    weights = load_file(fit_dir / "model.safetensors")
    np.testing.assert_allclose(weights["user_factors"].numpy(), expected.user_factors.detach().numpy(), rtol=1e-5)
    claims = results["summary"]["claims"]
    assert [(c["better"], c["worse"]) for c in claims] == [
        ("relmf_als", "wmf_als"),
        (clipped[0], next(label for label in labels if label.startswith("relmf_clipped_als") and "[η" in label)),
    ]
    assert claims[0]["verdict"] in ("supported", "contradicted", "cannot tell") and claims[0]["n"] == 2


def test_a_user_id_composed_of_several_columns(tmp_path):
    log = tmp_path / "bandit.csv"
    pd.DataFrame(
        {"session": ["s1", "s1", "s2", "s2"], "device": ["a", "b", "a", "a"], "item": ["x", "y", "x", "z"],
         "click": [1, 1, 0, 1], "propensity": [0.5, 0.2, 0.4, 0.1]}
    ).to_csv(log, index=False)  # fmt: skip
    dataset = read_click_log(log, user_columns=["session", "device"])
    assert list(dataset.user_ids) == ["s1|a", "s1|b", "s2|a"] and dataset.n_users == 3
    assert dataset.train["user"].tolist() == [0, 1, 2, 2]


def test_a_log_without_user_column_points_to_user_columns(tmp_path, capsys):
    log = tmp_path / "bandit.csv"
    log.write_text("session,item,click\ns1,x,1\ns2,y,1\n")
    argv = ["--dataset", "click_log", "--input", str(log), "--store", "null", "--runs_root", str(tmp_path / "r")]
    failure = expect_command_failure(main, argv, capsys, names=(str(log), "--user_columns"))
    assert "user" in failure.line
    wrong = expect_command_failure(main, [*argv, "--user_columns", "[session, nope]"], capsys, names=("nope",))
    assert str(log) in wrong.line


def test_the_log_writer_refuses_bad_flags(tmp_path, capsys):
    expect_command_failure(write_log_main, [], capsys, names=("--out_dir",))
    expect_command_failure(write_log_main, ["--out_dir", str(tmp_path), "--power", "0"], capsys, names=("--power",))


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--clip_quantiles", "[0.5, 1.5]"], "--clip_quantiles"),
        (["--claims", "[relmf_als]"], "--claims"),
        (["--selection_metric", "AUC@5"], "--selection_metric"),
        (["--real.select_dims", "[]"], "--real.select_dims"),
        (["--real.als_regularization", "0"], "--real.als_regularization"),
        (["--also_popularity_propensity", "true", "--propensity", "popularity"], "--also_popularity_propensity"),
    ],
)
def test_bad_protocol_flags_are_named(extra: list[str], named: str, tmp_path, capsys):
    argv = ["--dataset", "click_log", "--input", str(tmp_path / "log.csv"), "--store", "null",
            "--runs_root", str(tmp_path / "runs"), *extra]  # fmt: skip
    expect_command_failure(main, argv, capsys, names=(named,))
    assert not (tmp_path / "runs").exists()


def test_user_columns_are_refused_outside_click_logs(tmp_path, capsys):
    argv = ["--dataset", "coat", "--input", str(tmp_path), "--user_columns", "[a, b]", "--store", "null"]
    expect_command_failure(main, argv, capsys, names=("--user_columns",))


@pytest.mark.parametrize("preset", sorted(path.name for path in CONFIGS.glob("mnar_*.yaml")))
def test_every_mnar_preset_parses_and_passes_the_checks(preset: str):
    config = parse_config(MnarConfig, ["--config", str(CONFIGS / preset)])
    check_config(config)


def test_claims_find_popularity_labels_when_the_run_has_no_logged_propensities():
    from domains.recsys.mnar.real_data_experiment import ordering_claims

    config = MnarConfig(dataset="click_log", ordering=["relmf_clipped_als", "wmf_als"])
    rows = [
        {"estimator": label, "seed": seed, "mar_DCG@5": value + 0.01 * seed}
        for seed in range(3)
        for label, value in (("relmf_clipped_als(M=0.1)[η=0.5]", 0.6), ("wmf_als", 0.5))
    ]
    claims = ordering_claims(config, rows, "mar_DCG@5")
    assert [(c["better"], c["worse"], c["verdict"]) for c in claims] == [
        ("relmf_clipped_als(M=0.1)[η=0.5]", "wmf_als", "supported")
    ]
