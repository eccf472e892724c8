"""Readers and writers of the recsys data formats, splits, graphs and the restricted unpickler."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from domains.recsys.llmrec.graphs import bipartite_graph, items_by_user
from domains.recsys.llmrec.interactions import split_interactions
from domains.recsys.llmrec.recbole_dataset import read_recbole_interactions
from domains.recsys.llmrec.released_layout import interactions_from_llmrec, read_llmrec_dataset
from domains.recsys.llmrec.restricted_pickle import load_restricted_pickle
from domains.recsys.llmrec.text_features import cached_text_features
from domains.recsys.recbole_io import DataFormatError, read_atomic_file, read_recbole_dataset, write_atomic_file


def test_atomic_file_round_trip_keeps_values_and_types(tmp_path: Path) -> None:
    frame = pd.DataFrame({"user_id": ["u1", "u2"], "score": [1.5, -2.0], "tags": ["a b", "c"]})
    types = {"user_id": "token", "score": "float", "tags": "token_seq"}
    path = write_atomic_file(frame, tmp_path / "x.inter", types)
    assert path.read_text().splitlines()[0] == "user_id:token\tscore:float\ttags:token_seq"
    back = read_atomic_file(path)
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)
    assert back["score"].dtype == np.float64
    assert back.attrs["atomic_types"] == types
    assert not list(tmp_path.glob("*.tmp")), "atomic write leaves no temporary file"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("user_id\titem_id:token\n1\t2\n", r"x\.inter:1: malformed header field 1 'user_id'"),
        ("user_id:token\titem_id:tokn\n1\t2\n", r"x\.inter:1: .*unknown type 'tokn'"),
        ("user_id:token\tuser_id:token\n1\t2\n", r"x\.inter:1: column 'user_id' appears twice"),
        ("user_id:token\titem_id:token\n1\t2\n3\t4\t5\n", r"x\.inter:3: expected 2 tab-separated fields, got 3"),
        (
            "user_id:token\trating:float\n1\t2\n1\tfive\n",
            r"x\.inter:3: column 'rating' \(float\) has non-numeric value 'five'",
        ),
    ],
)
def test_malformed_atomic_files_name_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "x.inter"
    path.write_text(content)
    with pytest.raises(DataFormatError, match=message):
        read_atomic_file(path)


def test_recbole_dataset_rejects_duplicates_and_unknown_ids(synthetic_recbole: Path) -> None:
    tables = read_recbole_dataset(synthetic_recbole)
    assert tables.name == "synth" and len(tables.item) == 45 and tables.kg is not None
    item_file = synthetic_recbole / "synth.item"
    lines = item_file.read_text().splitlines()
    item_file.write_text("\n".join(lines + [lines[1]]) + "\n")
    with pytest.raises(DataFormatError, match=rf"synth\.item:{len(lines) + 1}: duplicate row .*first seen on line 2"):
        read_recbole_dataset(synthetic_recbole)
    item_file.write_text("\n".join(lines) + "\n")
    inter = synthetic_recbole / "synth.inter"
    inter_lines = inter.read_text().splitlines()
    inter_lines[5] = "1\t999\t3\t5"
    inter.write_text("\n".join(inter_lines) + "\n")
    with pytest.raises(DataFormatError, match=r"synth\.inter:6: unknown item_id '999'"):
        read_recbole_dataset(synthetic_recbole)


def test_interactions_without_timestamp_reject_duplicate_pairs(tmp_path: Path) -> None:
    (tmp_path / "d.inter").write_text("user_id:token\titem_id:token\n1\t2\n1\t3\n1\t2\n")
    with pytest.raises(DataFormatError, match=r"d\.inter:4: duplicate row .*line 2"):
        read_recbole_dataset(tmp_path)


def test_random_split_is_seeded_per_user_and_follows_ratios() -> None:
    frame = pd.DataFrame({"user": np.repeat([0, 1, 2], 10), "timestamp": np.tile(np.arange(10), 3)})
    first = split_interactions(frame, "random", (0.8, 0.1, 0.1), seed=7)
    again = split_interactions(frame, "random", (0.8, 0.1, 0.1), seed=7)
    other = split_interactions(frame, "random", (0.8, 0.1, 0.1), seed=8)
    pd.testing.assert_series_equal(first, again)
    assert not first.equals(other)
    for user in range(3):
        counts = first[frame["user"] == user].value_counts()
        assert (counts["train"], counts["val"], counts["test"]) == (8, 1, 1)


def test_temporal_split_holds_out_each_users_latest() -> None:
    frame = pd.DataFrame({"user": [0] * 5 + [1] * 5, "timestamp": [5, 1, 4, 2, 3, 10, 30, 20, 50, 40]})
    labels = split_interactions(frame, "temporal", (0.6, 0.2, 0.2))
    assert labels.tolist() == ["test", "train", "val", "train", "train", "train", "train", "train", "test", "val"]


def test_small_users_keep_a_training_interaction() -> None:
    frame = pd.DataFrame({"user": [0, 1, 1], "timestamp": [0, 0, 1]})
    labels = split_interactions(frame, "random", (0.8, 0.1, 0.1), seed=0)
    assert (labels[frame["user"] == 0] == "train").all()
    assert (labels[frame["user"] == 1] == "train").sum() >= 1


def test_recbole_interactions_carry_text_and_kg_attributes(synthetic_recbole: Path) -> None:
    data, _ = read_recbole_interactions(synthetic_recbole, seed=1)
    assert (data.n_users, data.n_items) == (36, 45)
    assert len(data.train) + len(data.val) + len(data.test) == 36 * 12
    assert data.item_texts[0] == "Movie 1 (1980); genres: Action, Thriller"
    assert data.item_attributes[0] == {
        "director": ["director.0.0"],
        "country": ["country.0"],
        "language": ["language.0"],
    }
    assert data.item_attributes[44] == {}, "items without a KG link have no attributes"
    all_pairs = {tuple(p) for part in (data.train, data.val, data.test) for p in part}
    assert len(all_pairs) == 36 * 12, "splits are disjoint"


def test_bipartite_graph_and_user_item_matrix() -> None:
    pairs = np.array([[0, 0], [0, 2], [1, 1]])
    graph = bipartite_graph(pairs, n_users=2, n_items=3)
    assert graph.num_nodes == 5
    edges = {tuple(edge) for edge in graph.edge_index.T.tolist()}
    assert edges == {(0, 2), (0, 4), (1, 3), (2, 0), (4, 0), (3, 1)}
    matrix = items_by_user(pairs, 2, 3)
    assert matrix.toarray().tolist() == [[True, False, True], [False, True, False]]


def _write_llmrec(folder: Path) -> None:
    folder.mkdir()
    (folder / "train.json").write_text(json.dumps({"0": [0, 1], "1": [2]}))
    (folder / "val.json").write_text(json.dumps({"0": [2]}))
    (folder / "test.json").write_text(json.dumps({"1": [3]}))
    np.save(folder / "text_feat.npy", np.arange(20, dtype=np.float32).reshape(5, 4))
    np.save(folder / "image_feat.npy", np.ones((5, 2), dtype=np.float32))
    (folder / "item_attribute.csv").write_text("0,1999,Alpha\n1,2001,Beta\n")
    with (folder / "augmented_sample_dict").open("wb") as handle:
        pickle.dump({0: {0: 3, 1: 4}, 1: {0: 0, 1: 1}}, handle)
    with (folder / "augmented_attribute_dict").open("wb") as handle:
        pickle.dump({0: {0: "Ann Lee", 1: "USA", 2: "English"}}, handle)
    with (folder / "augmented_user_profiling_dict").open("wb") as handle:
        pickle.dump({1: "likes dramas"}, handle)
    with (folder / "candidate_indices").open("wb") as handle:
        pickle.dump(np.array([[1, 2], [3, 4]], dtype=np.int64), handle)


def test_llmrec_layout_reads_every_file(tmp_path: Path) -> None:
    _write_llmrec(tmp_path / "netflix")
    layout = read_llmrec_dataset(tmp_path / "netflix")
    assert (layout.n_users, layout.n_items) == (2, 5), "n_items comes from text_feat.npy rows"
    assert layout.augmented_edges == [(0, 3, 4), (1, 0, 1)]
    assert layout.augmented_item_attributes == {0: ["Ann Lee", "USA", "English"]}
    assert layout.user_profiles == {1: "likes dramas"}
    assert layout.candidates.tolist() == [[1, 2], [3, 4]]
    data = interactions_from_llmrec(layout)
    assert data.train.tolist() == [[0, 0], [0, 1], [1, 2]]
    assert data.item_titles[:2] == ["Alpha", "Beta"]
    assert data.item_text_features.shape == (5, 4)


def test_llmrec_layout_rejects_items_beyond_features(tmp_path: Path) -> None:
    _write_llmrec(tmp_path / "bad")
    (tmp_path / "bad" / "test.json").write_text(json.dumps({"1": [7]}))
    with pytest.raises(DataFormatError, match=r"test\.json: user 1 has item 7 but there are only 5 items"):
        read_llmrec_dataset(tmp_path / "bad")


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_restricted_unpickler_rejects_code_and_accepts_plain_data(tmp_path: Path, capsys) -> None:
    plain = tmp_path / "plain.pkl"
    value = {1: [1.5, "x", (2, 3)], "a": np.arange(3), "b": {"nested": True}}
    plain.write_bytes(pickle.dumps(value))
    loaded = load_restricted_pickle(plain)
    assert loaded["a"].tolist() == [0, 1, 2] and loaded[1] == [1.5, "x", (2, 3)]
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(DataFormatError, match=r"evil\.pkl: refusing to unpickle builtins\.print"):
        load_restricted_pickle(evil)
    assert "never run" not in capsys.readouterr().out
    tensor = tmp_path / "tensor.pkl"
    import torch

    tensor.write_bytes(pickle.dumps(torch.arange(3)))
    with pytest.raises(DataFormatError, match=r"tensor\.pkl: refusing to unpickle torch"):
        load_restricted_pickle(tensor)
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"not a pickle")
    with pytest.raises(DataFormatError, match=r"garbage\.pkl: not a valid pickle"):
        load_restricted_pickle(garbage)


def test_text_features_are_cached_by_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_encoder(texts, batch_size=64, max_length=64):
        calls.append(list(texts))
        return np.full((len(texts), 3), len(calls), dtype=np.float32)

    monkeypatch.setattr("domains.recsys.llmrec.text_features.encode_texts_minilm", fake_encoder)
    first = cached_text_features(["a", "b"], tmp_path)
    second = cached_text_features(["a", "b"], tmp_path)
    third = cached_text_features(["a", "c"], tmp_path)
    assert len(calls) == 2 and np.array_equal(first, second) and not np.array_equal(first, third)
