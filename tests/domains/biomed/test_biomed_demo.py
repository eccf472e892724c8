"""The demo corpus: deterministic, captions that state what the images show, real sources included."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from domains.biomed.demo import (
    HELD_OUT_COMBINATIONS,
    GeneratedFigure,
    build_demo_corpus,
    check_compositional_split,
    compositional_split,
    demo_corpus_is_current,
    generated_figure_grid,
    render_generated_figure,
    skimage_caption,
)
from domains.biomed.evaluation import ZERO_SHOT_PRESETS


def read_split(folder: Path) -> dict[str, tuple[str, np.ndarray, dict]]:
    samples: dict[str, dict] = {}
    for shard in sorted(folder.glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                key, _, field = member.name.partition(".")
                samples.setdefault(key, {})[field] = tar.extractfile(member).read()
    return {
        key: (parts["txt"].decode(), np.asarray(Image.open(io.BytesIO(parts["jpg"]))), json.loads(parts["json"]))
        for key, parts in samples.items()
    }


def test_corpus_is_deterministic_and_holds_out_generated_figures(tmp_path: Path) -> None:
    kwargs = {"image_size": 32, "train_variants": 1, "test_variants": 1, "skimage_crops": 1}
    first = {split: read_split(path) for split, path in build_demo_corpus(tmp_path / "a", **kwargs).items()}
    second = {split: read_split(path) for split, path in build_demo_corpus(tmp_path / "b", **kwargs).items()}
    for split in ("train", "test"):
        assert first[split].keys() == second[split].keys()
        for key, (caption, pixels, meta) in first[split].items():
            assert caption == second[split][key][0] and meta == second[split][key][2]
            assert np.array_equal(pixels, second[split][key][1]), key
    train, test = first["train"], first["test"]
    sets = {meta["image_set"] for _, _, meta in train.values()}
    assert sets == {"dicom", "scikit-image", "generated"}
    assert {meta["image_set"] for _, _, meta in test.values()} == {"generated"}
    assert len(test) == len(HELD_OUT_COMBINATIONS) == 11 and len(generated_figure_grid()) == 45
    train_seeds = {meta["generator"]["seed"] for _, _, meta in train.values() if "generator" in meta}
    assert not train_seeds & {meta["generator"]["seed"] for _, _, meta in test.values()}
    manifest = json.loads((tmp_path / "a" / "train" / "manifest.json").read_text())
    assert manifest["num_samples"] == len(train)
    assert demo_corpus_is_current(tmp_path / "a", 32) and not demo_corpus_is_current(tmp_path / "a", 96)


def test_held_out_captions_are_compositions_never_seen_in_training(tmp_path: Path) -> None:
    paths = build_demo_corpus(tmp_path, image_size=16, train_variants=2, test_variants=2, skimage_crops=1)
    train, test = read_split(paths["train"]), read_split(paths["test"])
    train_captions = {caption for caption, _, _ in train.values()}
    train_combinations = {meta["generator"]["combination"] for _, _, meta in train.values() if "generator" in meta}
    test_combinations = {meta["generator"]["combination"] for _, _, meta in test.values()}
    # read back from the shards: no held-out caption or attribute combination occurs in training ...
    assert len(test) == 22 and len(test_combinations) == 11
    assert not {caption for caption, _, _ in test.values()} & train_captions
    assert not test_combinations & train_combinations
    # ... while every attribute value of a held-out combination does, with the same kind
    seen = {(m["generator"]["kind"], i, v) for _, _, m in train.values() if "generator" in m
            for i, v in enumerate(m["generator"]["attributes"])}  # fmt: skip
    for _, _, meta in test.values():
        for slot, value in enumerate(meta["generator"]["attributes"]):
            assert (meta["generator"]["kind"], slot, value) in seen
    # the zero-shot preset ranks every combination: the unseen true one against 34 seen distractors
    classes = ZERO_SHOT_PRESETS["demo_compositions"]["classnames"]
    assert test_combinations <= set(classes) and len(classes) == 45


def test_the_split_check_refuses_leaks_and_unlearnable_words() -> None:
    train, test = compositional_split()
    with pytest.raises(ValueError, match="also occurs in training"):
        check_compositional_split(train, test + [train[0]])
    never_seen = GeneratedFigure("fluorescence", "purple", "dense", "large")
    with pytest.raises(ValueError, match="'purple' never occurs in training"):
        check_compositional_split(train, [never_seen])


def brightness(image: np.ndarray, rows: slice, columns: slice) -> float:
    return float(image[rows, columns].mean())


def test_generated_captions_state_what_is_drawn() -> None:
    size = 64
    half = slice(0, size // 2), slice(size // 2, size)
    for seed in range(3):
        left = render_generated_figure(GeneratedFigure("radiograph", "left", "upper", "large"), size, seed)
        right = render_generated_figure(GeneratedFigure("radiograph", "right", "upper", "large"), size, seed)
        # patient's left lung is on the image's right: the opacity brightens that side's upper half
        assert brightness(left, half[0], half[1]) > brightness(left, half[0], slice(0, size // 2))
        assert brightness(right, half[0], slice(0, size // 2)) > brightness(right, half[0], half[1])
        dense = render_generated_figure(GeneratedFigure("fluorescence", "green", "dense", "small"), size, seed)
        sparse = render_generated_figure(GeneratedFigure("fluorescence", "green", "sparse", "small"), size, seed)
        assert dense[..., 1].mean() > 2 * sparse[..., 1].mean() and dense[..., 0].mean() < dense[..., 1].mean()
        cyst = render_generated_figure(GeneratedFigure("ultrasound", "left", "cyst", "large"), size, seed)
        mass = render_generated_figure(GeneratedFigure("ultrasound", "left", "solid mass", "large"), size, seed)
        lesion = (slice(int(size * 0.58), int(size * 0.66)), slice(int(size * 0.31), int(size * 0.39)))
        assert brightness(cyst, *lesion) < 30 < 180 < brightness(mass, *lesion)


def test_skimage_captions_come_from_docstrings() -> None:
    assert skimage_caption("immunohistochemistry").startswith("Immunohistochemical (IHC) staining")
    assert "colonic glands" in skimage_caption("immunohistochemistry")
    assert skimage_caption("retina").startswith("Human retina.")
