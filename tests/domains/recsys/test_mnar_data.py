"""MNAR readers on fixtures written in each layout (Yahoo! R3, Coat, click logs, RecBole), bad files included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from domains.recsys.mnar.data import (
    MnarDataError,
    read_click_log,
    read_coat,
    read_recbole_ratings,
    read_yahoo_r3,
    split_validation_clicks,
    training_feedback,
)
from domains.recsys.recbole_io import DataFormatError


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def yahoo_files(tmp_path):
    train = _write(tmp_path / "train.txt", "1\t1\t5\n1\t3\t2\n2\t2\t4\n3\t1\t1\n3\t3\t4\n")
    test = _write(tmp_path / "test.txt", "1\t2\t4\n1\t4\t1\n2\t1\t3\n3\t4\t5\n")
    return train, test


def test_yahoo_r3_reader_indexes_from_one_and_binarises_at_the_threshold(yahoo_files):
    data = read_yahoo_r3(*yahoo_files)
    assert (data.n_users, data.n_items) == (3, 4)
    assert data.train[["user", "item", "rating"]].values.tolist() == [
        [0, 0, 5], [0, 2, 2], [1, 1, 4], [2, 0, 1], [2, 2, 4],
    ]  # fmt: skip
    assert data.train["click"].tolist() == [1, 0, 1, 0, 1]
    assert data.test["label"].tolist() == [1, 0, 0, 1]
    assert data.item_click_counts().tolist() == [1, 1, 1, 0]
    strict = read_yahoo_r3(*yahoo_files, rating_threshold=5)
    assert strict.train["click"].tolist() == [1, 0, 0, 0, 0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1\t1\t5\n2\t2\n", r"train.txt:2: expected 3 columns"),
        ("1\t1\t5\n2\tx\t4\n", r"train.txt:2: column 2 is not a number: 'x'"),
        ("1\t1\t5\n0\t1\t4\n", r"train.txt:2: user id \(1-based\) 0"),
        ("1\t1\t9\n", r"train.txt:1: rating 9"),
        ("1\t1.5\t4\n", r"train.txt:1: item id must be an integer"),
        ("", r"train.txt: file is empty"),
    ],
)
def test_yahoo_r3_bad_files_name_the_file_and_line(tmp_path, text, message):
    train = _write(tmp_path / "train.txt", text)
    test = _write(tmp_path / "test.txt", "1\t1\t4\n")
    with pytest.raises(MnarDataError, match=message):
        read_yahoo_r3(train, test)


def test_yahoo_r3_missing_file(tmp_path):
    with pytest.raises(MnarDataError, match="test.txt: Yahoo! R3 test file not found"):
        read_yahoo_r3(_write(tmp_path / "train.txt", "1 1 4\n"), tmp_path / "test.txt")


@pytest.fixture
def coat_dir(tmp_path):
    folder = tmp_path / "coat"
    folder.mkdir()
    _write(folder / "train.ascii", "5 0 3\n0 4 0\n")
    _write(folder / "test.ascii", "0 2 0\n4 0 5\n")
    _write(folder / "propensities.ascii", "0.5 0.1 0.2\n0.3 0.8 0.05\n")
    return folder


def test_coat_reader_takes_ratings_from_dense_matrices_and_logged_propensities(coat_dir):
    data = read_coat(coat_dir)
    assert (data.n_users, data.n_items) == (2, 3)
    assert data.train[["user", "item", "rating", "click"]].values.tolist() == [[0, 0, 5, 1], [0, 2, 3, 0], [1, 1, 4, 1]]
    assert data.train["propensity"].tolist() == pytest.approx([0.5, 0.2, 0.8])
    assert data.test[["user", "item", "label"]].values.tolist() == [[0, 1, 0], [1, 0, 1], [1, 2, 1]]
    assert data.has_logged_propensity()
    feedback = training_feedback(data, data.clicks(), propensity="logged")
    assert feedback.propensity.tolist() == pytest.approx([0.5, 0.8])


def test_coat_bad_matrices(coat_dir):
    _write(coat_dir / "test.ascii", "0 2 0\n4 0 7\n")
    with pytest.raises(MnarDataError, match=r"test.ascii:2: column 3: rating 7"):
        read_coat(coat_dir)
    _write(coat_dir / "test.ascii", "0 2\n4 0\n")
    with pytest.raises(MnarDataError, match=r"train.ascii is \(2, 3\) but test.ascii is \(2, 2\)"):
        read_coat(coat_dir)
    _write(coat_dir / "test.ascii", "0 2 0\n4 0 5\n")
    _write(coat_dir / "propensities.ascii", "0.5 0.1 0.2\n0.3 1.8 0.05\n")
    with pytest.raises(MnarDataError, match=r"propensities.ascii:2: column 2: propensity 1.8"):
        read_coat(coat_dir)


@pytest.mark.parametrize("suffix", ["csv", "tsv", "parquet"])
def test_click_log_round_trips_in_every_format(tmp_path, suffix):
    train = pd.DataFrame(
        {
            "user": ["ann", "ann", "bob", "cy"],
            "item": ["x", "y", "x", "z"],
            "click": [1, 0, 1, 1],
            "propensity": [0.5, 0.25, 0.8, 0.1],
            "position": [1, 2, 1, 3],
        }
    )
    test = pd.DataFrame({"user": ["bob", "dee"], "item": ["z", "x"], "click": [1, 0]})
    paths = []
    for name, frame in (("train", train), ("test", test)):
        path = tmp_path / f"{name}.{suffix}"
        if suffix == "parquet":
            frame.to_parquet(path)
        else:
            frame.to_csv(path, sep="\t" if suffix == "tsv" else ",", index=False)
        paths.append(path)
    data = read_click_log(*paths)
    assert data.user_ids.tolist() == ["ann", "bob", "cy", "dee"]
    assert data.item_ids.tolist() == ["x", "y", "z"]
    assert data.train[["user", "item", "click"]].values.tolist() == [[0, 0, 1], [0, 1, 0], [1, 0, 1], [2, 2, 1]]
    assert data.train["propensity"].tolist() == pytest.approx([0.5, 0.25, 0.8, 0.1])
    assert data.train["position"].tolist() == [1, 2, 1, 3]
    assert data.test[["user", "item", "label"]].values.tolist() == [[1, 2, 1], [3, 0, 0]]
    clicks = data.clicks()
    assert training_feedback(data, clicks, "logged").propensity.tolist() == pytest.approx([0.5, 0.8, 0.1])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("user,item\n1,2\n", r"log.csv:1: missing column\(s\) click"),
        ("user,item,click\n1,2,1\n1,3,yes\n", r"log.csv:3: click is not a number: 'yes'"),
        ("user,item,click\n1,2,2\n", r"log.csv:2: click must be 0 or 1"),
        ("user,item,click,propensity\n1,2,1,0.5\n1,3,1,0\n", r"log.csv:3: propensity 0 not in \(0, 1\]"),
        ("user,item,click,position\n1,2,1,0\n", r"log.csv:2: position must be an integer >= 1"),
        ("user,item,click\n,2,1\n", r"log.csv:2: empty user id"),
    ],
)
def test_click_log_errors_name_file_and_line(tmp_path, text, message):
    with pytest.raises(MnarDataError, match=message):
        read_click_log(_write(tmp_path / "log.csv", text))


def test_logged_propensity_required_when_requested(tmp_path):
    data = read_click_log(_write(tmp_path / "log.csv", "user,item,click\n1,2,1\n"))
    with pytest.raises(MnarDataError, match="log.csv: propensity 'logged' requested"):
        training_feedback(data, data.clicks(), "logged")
    feedback = training_feedback(data, data.clicks(), "popularity", eta=0.5)
    assert feedback.propensity.tolist() == [1.0]


def test_recbole_ratings_reader(tmp_path):
    path = _write(
        tmp_path / "toy.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\nu1\ti1\t5\t1\nu1\ti2\t3\t2\nu2\ti1\t4\t3\n",
    )
    data = read_recbole_ratings(path)
    assert data.name == "toy" and data.test is None
    assert data.train[["user", "item", "click"]].values.tolist() == [[0, 0, 1], [0, 1, 0], [1, 0, 1]]
    no_rating = _write(tmp_path / "clicks.inter", "user_id:token\titem_id:token\nu1\ti1\nu2\ti2\n")
    assert read_recbole_ratings(no_rating).train["click"].tolist() == [1, 1]
    bad = _write(tmp_path / "bad.inter", "user_id:token\titem_id:token\trating:float\nu1\ti1\tfive\n")
    with pytest.raises(DataFormatError, match=r"bad.inter:2"):
        read_recbole_ratings(bad)


def test_validation_split_is_disjoint_and_reproducible(yahoo_files):
    data = read_yahoo_r3(*yahoo_files)
    train, validation = split_validation_clicks(data, fraction=0.5, seed=3)
    again_train, _ = split_validation_clicks(data, fraction=0.5, seed=3)
    assert len(train) + len(validation) == len(data.clicks())
    assert train.equals(again_train)
    keys = set(zip(train["user"], train["item"]))
    assert not keys & set(zip(validation["user"], validation["item"]))
    assert np.all(data.clicks()["click"] == 1)
