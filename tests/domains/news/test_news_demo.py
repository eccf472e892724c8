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
    MissingSourcePackageError,
    assign_hard_negatives,
    build_emoji_outofcontext,
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


def test_built_set_pairs_real_and_swapped_images_within_splits(tmp_path: Path) -> None:
    tarball = make_tarball(tmp_path / "emoji.tgz")
    posts_path = build_emoji_outofcontext(tmp_path / "out", tarball=tarball, embed_texts=fake_embedder)
    records = [json.loads(line) for line in posts_path.read_text().splitlines()]
    assert len(records) == 2 * len(EMOJI)
    by_pair: dict[str, list[dict]] = {}
    for record in records:
        by_pair.setdefault(record["pair_id"], []).append(record)
        assert (posts_path.parent / record["image"]).is_file()
    split_of_id = {r["pair_id"]: r["split"] for r in records}
    for pair in by_pair.values():
        real = next(r for r in pair if r["label"] == 0)
        fake = next(r for r in pair if r["label"] == 1)
        assert real["text"] == fake["text"] and real["split"] == fake["split"]
        assert real["image_source_id"] == real["pair_id"] and fake["image_source_id"] != fake["pair_id"]
        # the wrong image comes from the same split, so no image crosses splits
        assert split_of_id[fake["image_source_id"]] == fake["split"]
    # subcategories are not split apart
    subcategory_of = {name.lower(): sub for name, (sub, _) in EMOJI.items()}
    splits_by_sub: dict[str, set[str]] = {}
    for record in records:
        splits_by_sub.setdefault(subcategory_of[record["text"]], set()).add(record["split"])
    assert all(len(s) == 1 for s in splits_by_sub.values())
    # the swapped image is the most similar caption's where it is still free: "red apple" gets green apple's
    fake_red = next(r for r in records if r["text"] == "red apple" and r["label"] == 1)
    assert fake_red["image_source_id"] == "0001"
    vectors = fake_embedder(["red apple", "green apple"])
    assert fake_red["similarity_score"] == pytest.approx(float(vectors[0] @ vectors[1]), abs=1e-5)


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
