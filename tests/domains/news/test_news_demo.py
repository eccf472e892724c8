"""The built-in out-of-context set, built from a miniature npm tarball in the real package layout."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from domains.news.demo import (
    EMOJI_PACKAGE,
    FAKE_KINDS,
    MissingSourcePackageError,
    assign_hard_negatives,
    build_emoji_outofcontext,
    hue_rotated_png,
    split_within_kinds,
)

# name → (subcategory, embedding direction): captions in a group are similar by construction.
EMOJI = {
    "RED APPLE": ("food-fruit", [1.0, 0.0, 0.0]),
    "GREEN APPLE": ("food-fruit", [0.95, 0.1, 0.0]),
    "PEAR": ("food-fruit", [0.8, 0.3, 0.0]),
    "BANANA": ("food-fruit", [0.5, 0.5, 0.2]),
    "DOG FACE": ("animal-mammal", [0.0, 1.0, 0.0]),
    "CAT FACE": ("animal-mammal", [0.1, 0.95, 0.0]),
    "TIGER FACE": ("animal-mammal", [0.2, 0.8, 0.3]),
    "BUS": ("transport-ground", [0.0, 0.0, 1.0]),
    "TRAM": ("transport-ground", [0.1, 0.0, 0.9]),
    "TAXI": ("transport-ground", [0.3, 0.2, 0.8]),
}


def fake_embedder(texts: list[str]) -> np.ndarray:
    vectors = np.array([EMOJI[t.upper()][1] for t in texts], dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def make_tarball(path: Path) -> Path:
    entries = []
    with tarfile.open(path, "w:gz") as archive:
        for order, (name, (subcategory, _)) in enumerate(EMOJI.items()):
            image_name = f"{order:04x}.png"
            entries.append(
                {
                    "name": name,
                    "unified": f"{order:04X}",
                    "image": image_name,
                    "category": "x",
                    "subcategory": subcategory,
                    "sort_order": order,
                    "has_img_google": True,
                }
            )
            buffer = io.BytesIO()
            Image.new("RGBA", (8, 8), (order * 20, 0, 0, 255)).save(buffer, format="PNG")
            add_member(archive, f"package/img/google/64/{image_name}", buffer.getvalue())
        add_member(archive, "package/emoji.json", json.dumps(entries).encode())
    return path


def add_member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def brute_force_greedy(similarity: np.ndarray) -> np.ndarray:
    """Independent reference: repeatedly take the globally most similar free (caption, other image) pair;
    a caption left without a free other image takes its most similar other image."""
    n = len(similarity)
    chosen = np.full(n, -1)
    free_images = set(range(n))
    while True:
        candidates = [(similarity[c, i], -c, -i) for c in range(n) if chosen[c] < 0 for i in free_images if i != c]
        if not candidates:
            break
        _, caption, image = max(candidates)
        chosen[-caption] = -image
        free_images.discard(-image)
    for c in np.flatnonzero(chosen < 0):
        chosen[c] = max((similarity[c, i], -i) for i in range(n) if i != c)[1] * -1
    return chosen


def test_hard_negatives_match_a_brute_force_greedy_matching() -> None:
    for seed in range(6):
        x = np.random.default_rng(seed).normal(size=(7, 4))
        similarity = x @ x.T
        chosen = assign_hard_negatives(similarity)
        assert all(chosen[i] != i for i in range(7))
        np.testing.assert_array_equal(chosen, brute_force_greedy(similarity))
    # three mutually similar captions: a→b, b→a leaves c with only its own image free
    similarity = np.array([[1.0, 0.9, 0.5], [0.9, 1.0, 0.4], [0.5, 0.4, 1.0]])
    np.testing.assert_array_equal(assign_hard_negatives(similarity), [1, 0, 0])


# A larger miniature: 4 kinds × 20 emoji, so every split has all three falsification kinds.
KINDS = ("food-fruit", "animal-mammal", "transport-ground", "face-smiling")
MANY = {
    f"{kind.split('-')[1]} item {i}": (kind, [float(k == j) + 0.1 * i for j in range(4)] + [0.05 * i])
    for k, kind in enumerate(KINDS)
    for i in range(20)
}


def many_embedder(texts: list[str]) -> np.ndarray:
    vectors = np.array([MANY[t][1] for t in texts], dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def make_many_tarball(path: Path) -> Path:
    entries = []
    with tarfile.open(path, "w:gz") as archive:
        for order, (name, (subcategory, _)) in enumerate(MANY.items()):
            image_name = f"{order:04x}.png"
            entries.append(
                {"name": name.upper(), "unified": f"{order:04X}", "image": image_name, "subcategory": subcategory}
                | {"sort_order": order, "has_img_google": True}
            )
            buffer = io.BytesIO()
            Image.new("RGBA", (8, 8), (order, 255 - order, 10, 255 if order % 2 else 128)).save(buffer, format="PNG")
            add_member(archive, f"package/img/google/64/{image_name}", buffer.getvalue())
        add_member(archive, "package/emoji.json", json.dumps(entries).encode())
    return path


def test_split_keeps_test_items_unseen_and_their_kinds_seen() -> None:
    kinds = ["a"] * 20 + ["b"] * 7 + ["c"] * 2
    ids = [f"id{i}" for i in range(len(kinds))]
    splits = split_within_kinds(kinds, ids)
    for kind, expected_test in (("a", 3), ("b", 1)):
        members = [s for k, s in zip(kinds, splits) if k == kind]
        assert members.count("test") == expected_test and members.count("val") >= 1 and "train" in members
    assert [s for k, s in zip(kinds, splits) if k == "c"] == ["train", "train"]  # too small to test on
    assert split_within_kinds(kinds, ids) == splits  # deterministic


def test_built_set_has_random_hard_and_manipulated_fakes_and_no_text_signal(tmp_path: Path) -> None:
    tarball = make_many_tarball(tmp_path / "emoji.tgz")
    posts_path = build_emoji_outofcontext(tmp_path / "out", tarball=tarball, embed_texts=many_embedder)
    records = [json.loads(line) for line in posts_path.read_text().splitlines()]
    assert len(records) == 2 * len(MANY)
    for record in records:
        assert (posts_path.parent / record["image"]).is_file()
    split_of = {r["pair_id"]: r["split"] for r in records}
    kinds_in = {split: {r["kind"] for r in records if r["split"] == split} for split in ("train", "val", "test")}
    assert kinds_in["test"] <= kinds_in["train"] and kinds_in["val"] <= kinds_in["train"]
    for split in ("train", "val", "test"):
        in_split = [r for r in records if r["split"] == split]
        assert {r["strategy"] for r in in_split} == {"pristine", *FAKE_KINDS}, split
        # text alone carries nothing: each caption once real, once fake
        for caption in {r["text"] for r in in_split}:
            assert sorted(r["label"] for r in in_split if r["text"] == caption) == [0, 1]
        for kind in ("hard_swap", "random_swap"):
            fakes = [r for r in in_split if r["strategy"] == kind]
            # the swapped-in images are exactly the group's own images: each once real, once fake
            assert sorted(r["image_source_id"] for r in fakes) == sorted(r["pair_id"] for r in fakes)
            assert all(r["image_source_id"] != r["pair_id"] and split_of[r["image_source_id"]] == split for r in fakes)
    manipulated = next(r for r in records if r["strategy"] == "manipulated_image")
    real = next(r for r in records if r["pair_id"] == manipulated["pair_id"] and r["label"] == 0)
    edited = Image.open(posts_path.parent / manipulated["image"])
    original = Image.open(posts_path.parent / real["image"])
    assert edited.size == original.size and edited.getchannel("A").tobytes() == original.getchannel("A").tobytes()
    assert edited.convert("RGB").tobytes() != original.convert("RGB").tobytes()
    hue_edit = Image.open(io.BytesIO(hue_rotated_png((posts_path.parent / real["image"]).read_bytes())))
    assert hue_edit.tobytes() == edited.tobytes()
    # hard swaps pick similar captions' images, random swaps do not
    mean_score = {
        kind: np.mean([r["similarity_score"] for r in records if r["strategy"] == kind])
        for kind in ("hard_swap", "random_swap")
    }
    assert mean_score["hard_swap"] > mean_score["random_swap"]


def test_test_posts_are_disjoint_from_what_the_clip_stand_in_is_fitted_on(tmp_path: Path) -> None:
    import hashlib

    from domains.news.frozen_encoders import alignment_fit_rows

    tarball = make_many_tarball(tmp_path / "emoji.tgz")
    posts_path = build_emoji_outofcontext(tmp_path / "out", tarball=tarball, embed_texts=many_embedder)
    records = [json.loads(line) for line in posts_path.read_text().splitlines()]
    labels = np.array([r["label"] for r in records])
    train_rows = np.array([i for i, r in enumerate(records) if r["split"] == "train"])
    fitted = alignment_fit_rows(train_rows, labels == 0)

    def image_sha(record: dict) -> str:
        return hashlib.sha256((posts_path.parent / record["image"]).read_bytes()).hexdigest()

    test = [r for r in records if r["split"] == "test"]
    assert len(fitted) > 0 and all(records[i]["label"] == 0 and records[i]["split"] == "train" for i in fitted)
    assert not {records[i]["text"] for i in fitted} & {r["text"] for r in test}
    assert not {image_sha(records[i]) for i in fitted} & {image_sha(r) for r in test}


def test_cache_is_reused_and_missing_package_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tarball = make_tarball(tmp_path / "emoji.tgz")
    first = build_emoji_outofcontext(tmp_path / "out", tarball=tarball, embed_texts=fake_embedder)
    stamp = first.stat().st_mtime_ns

    def refuse(texts: list[str]) -> np.ndarray:
        raise AssertionError("the cached build should not embed again")

    assert build_emoji_outofcontext(tmp_path / "out", tarball=tarball, embed_texts=refuse) == first
    assert first.stat().st_mtime_ns == stamp
    monkeypatch.delenv("NEWS_EMOJI_TARBALL", raising=False)
    with pytest.raises(MissingSourcePackageError, match=rf"{EMOJI_PACKAGE}.*npm pack"):
        build_emoji_outofcontext(tmp_path / "out2", tarball=tmp_path / "absent.tgz")
