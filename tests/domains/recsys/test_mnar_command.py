"""The mnar command end to end on tiny settings: semi-synthetic ML-100K and a Coat-layout fixture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from domains.recsys import mnar
from domains.recsys.mnar_data import read_movielens_100k_ratings
from domains.recsys.semi_synthetic import GeneratorSettings, build_semi_synthetic_world
from shared.store import open_readonly

CONFIGS = Path(mnar.__file__).parent / "configs"


@pytest.fixture(autouse=True)
def _single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_exposure_is_coupled_across_powers_and_sparser_for_larger_p():
    world = build_semi_synthetic_world(read_movielens_100k_ratings(), GeneratorSettings(iterations=20))
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
        "--store_path", str(store),
        "--run_name", "tiny",
    ]  # fmt: skip
    summary = mnar.main(argv)
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
        "--data_dir", str(tmp_path / "coat"),
        "--seeds", "1",
        "--clip", "[0.05, 0.2]",
        "--real.dim", "4",
        "--real.iterations", "30",
        "--real.batch_size", "256",
        "--real.expomf_dim", "4",
        "--real.expomf_iterations", "2",
        "--runs_root", str(tmp_path / "runs"),
        "--store_path", str(tmp_path / "store.duckdb"),
    ]  # fmt: skip
    summary = mnar.main(argv)
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
        mnar.main(
            [
                "--dataset", "coat", "--data_dir", str(tmp_path / "coat"), "--estimators", "[oracle]",
                "--seeds", "1", "--runs_root", str(tmp_path / "runs"), "--store_path", "null",
            ]
        )  # fmt: skip


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        mnar.main(["--help"])
    text = capsys.readouterr().out
    for option in ("--dataset", "--estimators", "--eta", "--clip", "--semi_synthetic.exposure_powers", "--real.loss"):
        assert option in text
    assert "Popularity powers" in text
