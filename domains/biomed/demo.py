"""The built-in default biomedical corpus: real DICOM, real bio images and generated figures.

Three parts, all offline and deterministic (documented in ``data_cards/biomed/biomed_demo.md``):

1. **Real DICOM** from pydicom's and pydicom-data's test files, through the full ingest chain; the
   caption is built from the header, completed by a short description of what the file shows (from
   the files' documentation) where the header says little.
2. **Real bio images** bundled with scikit-image (IHC colon tissue, retina fundus, retina
   microaneurysm crop, a phase image of a cell); the caption comes from each image's docstring;
   several crops per image.
3. **Generated biomedical-style images** (fluorescence microscopy, H&E-like histology, chest
   radiographs, brain MRI slices, ultrasound): drawn from a seed, each caption states exactly what the
   picture shows (kind, stain colour, density, lesion side/zone/size), so retrieval is learnable and
   measurable.

The held-out split measures learning, not memorisation: it holds only generated figures whose
attribute *combination* (and so caption) never occurs in training (:data:`HELD_OUT_COMBINATIONS`),
while every single attribute value of those combinations does (:func:`check_compositional_split`
verifies both when the corpus is built). The real images are all in the training split (too few to
hold out).
"""

from __future__ import annotations

import inspect
import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from skimage import draw, filters

from domains.biomed.dicom import DicomChainConfig, DicomReadError, dicom_image_samples, read_dicom_image
from domains.biomed.samples import BiomedSample, biomedica_sample_dict, letterbox_rgb
from shared.atomic_files import write_text_atomically

DEMO_LICENSE = "CC0-1.0"
#: Version of the corpus layout; a corpus folder written by another version is rebuilt.
DEMO_CORPUS_VERSION = 2
DEMO_CORPUS_MARKER = "corpus.json"
CONCEPT_FIELDS = ("image_primary_label",)
TRACKED_FIELDS = ("article_license", "image_panel_type", "image_set", "caption_source")

#: DICOM test files that show distinct anatomy, with what they show where the header is terse
#: (descriptions from pydicom-data's / NEMA WG04 documentation of the files).
DEMO_DICOM_FILES: dict[str, str] = {
    "CT_small.dcm": "axial CT slice",
    "MR_small.dcm": "small MRI slice",
    "RG1_UNCI.dcm": "frontal chest radiograph",
    "RG3_UNCI.dcm": "radiograph of the tibia showing a non-ossifying fibroma of the distal tibia",
    "MR2_UNCI.dcm": "MRI of the shoulder",
    "US1_UNCI.dcm": "colour ultrasound image",
    "OBXXXX1A.dcm": "obstetric ultrasound image with palette colour",
    "JPEG2000.dcm": "whole-body bone scintigraphy",
    "examples_overlay.dcm": "MRI of the abdomen and liver with a marked lesion",
    "J2K_pixelrep_mismatch.dcm": "axial CT of the head",
    "693_UNCI.dcm": "axial CT slice, 5 mm plain",
    "emri_small.dcm": "small MRI slice of the head",
    "eCT_Supplemental.dcm": "enhanced CT slice",
    "examples_ybr_color.dcm": "ultrasound cine frame",
    "examples_palette.dcm": "ultrasound image with palette colour",
    "examples_rgb_color.dcm": "colour ultrasound image",
    "MR-SIEMENS-DICOM-WithOverlays.dcm": "MRI of the abdomen and liver with a marked lesion",
    "liver_1frame.dcm": "segmentation mask of the liver",
}

SKIMAGE_IMAGES = ("immunohistochemistry", "retina", "microaneurysms", "cell")

COLOURS = {"green": (0.15, 1.0, 0.3), "red": (1.0, 0.2, 0.15), "blue": (0.25, 0.45, 1.0)}


@dataclass(frozen=True)
class GeneratedFigure:
    """Attributes of one generated figure; :meth:`caption` states them in words."""

    kind: str
    a: str
    b: str
    c: str

    @property
    def combination(self) -> str:
        """The attribute combination as one label, e.g. ``"fluorescence/green/dense/large"``."""
        return "/".join(part for part in (self.kind, self.a, self.b, self.c) if part)

    def caption(self) -> str:
        """The caption: exactly what the generator draws."""
        if self.kind == "fluorescence":
            return f"fluorescence microscopy of {self.b} {self.c} {self.a}-stained nuclei on a dark background"
        if self.kind == "histology":
            return f"H&E stained histology section with {self.b} {self.c} {self.a} nuclei"
        if self.kind == "radiograph":
            if self.a == "none":
                return "frontal chest radiograph with clear lungs and no opacity"
            return f"frontal chest radiograph with a {self.c} opacity in the {self.b} zone of the {self.a} lung"
        if self.kind == "mri":
            return f"axial brain MRI with a {self.c} {self.b} lesion in the {self.a} hemisphere"
        return f"ultrasound image with a {self.c} {self.b} on the {self.a} side"


def generated_figure_grid() -> list[GeneratedFigure]:
    """Every attribute combination of the generator (45 figures)."""
    grid = [GeneratedFigure("fluorescence", colour, density, size)
            for colour, density, size in itertools.product(COLOURS, ("sparse", "dense"), ("small", "large"))]  # fmt: skip
    grid += [GeneratedFigure("histology", tone, density, size)
             for tone, density, size in itertools.product(("pale", "dark"), ("sparse", "dense"), ("small", "large"))]  # fmt: skip
    grid += [GeneratedFigure("radiograph", "none", "", "")]
    grid += [GeneratedFigure("radiograph", side, zone, size)
             for side, zone, size in itertools.product(("left", "right"), ("upper", "lower"), ("small", "large"))]  # fmt: skip
    grid += [GeneratedFigure("mri", side, lobe, tone)
             for side, lobe, tone in itertools.product(("left", "right"), ("frontal", "occipital"), ("bright", "dark"))]  # fmt: skip
    grid += [GeneratedFigure("ultrasound", side, what, size)
             for side, what, size in itertools.product(("left", "right"), ("cyst", "solid mass"), ("small", "large"))]  # fmt: skip
    return grid


#: Attribute combinations that only the held-out split shows (2–3 per kind, 11 of 45). Chosen so that
#: each attribute value of a held-out combination still occurs in training with the same kind: the
#: test asks for new compositions of known words and shapes, which a model can only get right by
#: composing what it learned.
HELD_OUT_COMBINATIONS: frozenset[GeneratedFigure] = frozenset(
    {
        GeneratedFigure("fluorescence", "green", "dense", "large"),
        GeneratedFigure("fluorescence", "red", "sparse", "small"),
        GeneratedFigure("fluorescence", "blue", "dense", "small"),
        GeneratedFigure("histology", "pale", "dense", "large"),
        GeneratedFigure("histology", "dark", "sparse", "small"),
        GeneratedFigure("radiograph", "left", "lower", "small"),
        GeneratedFigure("radiograph", "right", "upper", "large"),
        GeneratedFigure("mri", "left", "occipital", "dark"),
        GeneratedFigure("mri", "right", "frontal", "bright"),
        GeneratedFigure("ultrasound", "left", "solid mass", "large"),
        GeneratedFigure("ultrasound", "right", "cyst", "small"),
    }
)


def compositional_split() -> tuple[list[GeneratedFigure], list[GeneratedFigure]]:
    """The generator grid split into (training combinations, held-out combinations), in grid order."""
    grid = generated_figure_grid()
    train = [figure for figure in grid if figure not in HELD_OUT_COMBINATIONS]
    test = [figure for figure in grid if figure in HELD_OUT_COMBINATIONS]
    check_compositional_split(train, test)
    return train, test


def check_compositional_split(train: Iterable[GeneratedFigure], test: Iterable[GeneratedFigure]) -> None:
    """Refuse a split whose held-out captions leak or cannot be composed from training.

    Raises:
        ValueError: A held-out combination or caption also occurs in training, or an attribute value of a
            held-out combination never occurs in training with the same kind (then the test would ask for
            a word the model never saw, not for a new composition).
    """
    train, test = list(train), list(test)
    train_captions = {figure.caption() for figure in train}
    seen_values = {(figure.kind, slot, value) for figure in train
                   for slot, value in (("a", figure.a), ("b", figure.b), ("c", figure.c))}  # fmt: skip
    for figure in test:
        if figure in train or figure.caption() in train_captions:
            raise ValueError(f"held-out combination {figure.combination} also occurs in training")
        for slot, value in (("a", figure.a), ("b", figure.b), ("c", figure.c)):
            if (figure.kind, slot, value) not in seen_values:
                raise ValueError(f"held-out combination {figure.combination}: {value!r} never occurs in training")


def _blobs(rng: np.random.Generator, size: int, count: int, radius: float, channel: np.ndarray, value: float) -> None:
    for _ in range(count):
        r = radius * rng.uniform(0.8, 1.2)
        center = rng.uniform(r, size - r, 2)
        rr, cc = draw.ellipse(center[0], center[1], r, r * rng.uniform(0.7, 1.3), shape=channel.shape)
        channel[rr, cc] = value


def render_generated_figure(figure: GeneratedFigure, size: int, seed: int) -> np.ndarray:
    """Draw a figure as an RGB uint8 image (size × size). Patient left is image right (radiology)."""
    rng = np.random.default_rng(seed)
    image = np.zeros((size, size, 3))
    dense = figure.b == "dense"
    large = figure.c == "large"
    if figure.kind in ("fluorescence", "histology"):
        count = int((28 if dense else 7) * rng.uniform(0.85, 1.15))
        radius = size * (0.075 if large else 0.035)
        mask = np.zeros((size, size))
        _blobs(rng, size, count, radius, mask, 1.0)
        mask = filters.gaussian(mask, sigma=size / 160)
        if figure.kind == "fluorescence":
            image = mask[:, :, None] * np.array(COLOURS[figure.a])[None, None, :]
        else:
            background = np.array([0.95, 0.72, 0.8]) + rng.normal(0, 0.03, (size, size, 3))
            nucleus = np.array([0.55, 0.35, 0.7]) if figure.a == "pale" else np.array([0.3, 0.1, 0.45])
            image = background * (1 - mask[:, :, None]) + nucleus[None, None, :] * mask[:, :, None]
    elif figure.kind == "radiograph":
        grey = np.full((size, size), 0.75)
        for column in (0.3, 0.7):  # lungs (dark) either side of the mediastinum
            rr, cc = draw.ellipse(size * 0.5, size * column, size * 0.33, size * 0.15, shape=grey.shape)
            grey[rr, cc] = 0.2
        if figure.a != "none":
            column = 0.7 if figure.a == "left" else 0.3
            row = 0.35 if figure.b == "upper" else 0.65
            radius = size * (0.1 if large else 0.045)
            rr, cc = draw.disk((size * row + rng.normal(0, size * 0.02), size * column), radius, shape=grey.shape)
            grey[rr, cc] = 0.85
        grey = filters.gaussian(grey, sigma=size / 64) + rng.normal(0, 0.03, grey.shape)
        image = np.repeat(grey[:, :, None], 3, axis=2)
    elif figure.kind == "mri":
        grey = np.zeros((size, size))
        rr, cc = draw.ellipse(size * 0.5, size * 0.5, size * 0.42, size * 0.34, shape=grey.shape)
        grey[rr, cc] = 0.55
        column = 0.65 if figure.a == "left" else 0.35
        row = 0.3 if figure.b == "frontal" else 0.7
        rr, cc = draw.disk((size * row, size * column + rng.normal(0, size * 0.02)), size * 0.08, shape=grey.shape)
        grey[rr, cc] = 0.95 if figure.c == "bright" else 0.12
        grey = filters.gaussian(grey, sigma=size / 96) + rng.normal(0, 0.03, grey.shape)
        image = np.repeat(grey[:, :, None], 3, axis=2)
    else:
        grey = np.zeros((size, size))
        rr, cc = draw.polygon(
            [size * 0.05, size * 0.95, size * 0.95], [size * 0.5, size * 0.02, size * 0.98], shape=grey.shape
        )
        grey[rr, cc] = 0.45 + rng.normal(0, 0.12, rr.shape)  # speckle
        column = 0.35 if figure.a == "left" else 0.65
        radius = size * (0.12 if large else 0.06)
        rr, cc = draw.disk((size * 0.62, size * column), radius, shape=grey.shape)
        grey[rr, cc] = 0.03 if figure.b == "cyst" else 0.85
        grey = filters.gaussian(grey, sigma=size / 128)
        image = np.repeat(grey[:, :, None], 3, axis=2)
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def skimage_caption(name: str) -> str:
    """Caption of a scikit-image sample image: the first paragraph of its docstring plus the first
    sentence of the second (when that is prose, not a Notes section)."""
    import skimage.data

    paragraphs = [
        p.replace("\n", " ").strip() for p in inspect.cleandoc(getattr(skimage.data, name).__doc__).split("\n\n")
    ]
    caption = paragraphs[0]
    if len(paragraphs) > 1 and not paragraphs[1].startswith("Notes"):
        caption += " " + paragraphs[1].split(". ")[0].rstrip(".") + "."
    return caption


def _generated_samples(
    figures: list[GeneratedFigure], image_size: int, variants: int, seed_offset: int, split: str
) -> Iterator[BiomedSample]:
    grid_index = {figure: index for index, figure in enumerate(generated_figure_grid())}
    for figure in figures:
        figure_index = grid_index[figure]
        for variant in range(variants):
            seed = seed_offset + figure_index * 1000 + variant
            key = f"generated-{split}-{figure_index:03d}-{variant:02d}"
            concept = "Microscopy" if figure.kind in ("fluorescence", "histology") else "Clinical Imaging"
            metadata = {
                "image_file_name": f"{key}.jpg",
                "image_size": [image_size, image_size],
                "image_panel_type": "single",
                "image_primary_label": [concept],
                "image_secondary_label": [figure.kind],
                "image_set": "generated",
                "article_license": DEMO_LICENSE,
                "caption_source": "generator",
                "generator": {
                    "kind": figure.kind,
                    "attributes": [figure.a, figure.b, figure.c],
                    "combination": figure.combination,
                    "seed": seed,
                },  # fmt: skip
            }
            yield BiomedSample(key, render_generated_figure(figure, image_size, seed), figure.caption(), metadata)


def _skimage_samples(image_size: int, crops: int, seed: int) -> Iterator[BiomedSample]:
    import skimage.data

    rng = np.random.default_rng(seed)
    for name in SKIMAGE_IMAGES:
        pixels = np.asarray(getattr(skimage.data, name)(), dtype=np.float64)
        pixels = pixels / (255.0 if pixels.max() > 1.0 else 1.0)
        if name == "cell":
            pixels = (pixels - pixels.min()) / max(pixels.max() - pixels.min(), 1e-9)
        caption = skimage_caption(name)
        height, width = pixels.shape[:2]
        for crop in range(crops):
            side = int(min(height, width) * (1.0 if crop == 0 else rng.uniform(0.6, 0.9)))
            top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
            key = f"skimage-{name}-{crop:02d}"
            metadata = {
                "image_file_name": f"{key}.jpg",
                "image_size": [image_size, image_size],
                "image_panel_type": "single",
                "image_primary_label": [
                    "Microscopy" if name in ("immunohistochemistry", "cell") else "Clinical Imaging"
                ],
                "image_secondary_label": [name],
                "image_set": "scikit-image",
                "article_license": DEMO_LICENSE,
                "caption_source": "scikit-image docstring",
            }
            yield BiomedSample(
                key, letterbox_rgb(pixels[top : top + side, left : left + side], image_size), caption, metadata
            )


def _dicom_samples(image_size: int) -> Iterator[BiomedSample]:
    from pydicom.data import get_testdata_file

    config = DicomChainConfig(image_size=image_size, frame_policy="middle")
    for name, description in DEMO_DICOM_FILES.items():
        path = get_testdata_file(name)
        if path is None:
            continue  # pydicom-data not installed: the corpus documents which files it used
        try:
            image = read_dicom_image(path, config)
        except DicomReadError:
            continue
        header_caption = image.caption
        caption = description if description.lower() in header_caption.lower() else f"{description}; {header_caption}"
        for sample in dicom_image_samples(image, Path(name), caption, DEMO_LICENSE):
            sample.metadata["caption_source"] = "file documentation + dicom header"
            yield sample


def build_demo_corpus(
    out_dir: str | Path,
    image_size: int = 96,
    train_variants: int = 12,
    test_variants: int = 4,
    skimage_crops: int = 6,
    seed: int = 0,
    overwrite: bool = True,
) -> dict[str, Path]:
    """Write the demo corpus as BIOMEDICA-format shards: ``<out_dir>/train`` and ``<out_dir>/test``.

    Args:
        out_dir: Folder for the two shard sets (each with its ``manifest.json``).
        image_size: Side of every image in pixels.
        train_variants: Generated images per attribute combination in the training split.
        test_variants: Generated images per held-out combination (own seeds); the held-out split holds
            only the combinations of :data:`HELD_OUT_COMBINATIONS`, never seen in training.
        skimage_crops: Crops per scikit-image picture (training split).
        seed: Base seed; the same seed gives the same corpus.
        overwrite: Replace an existing corpus in ``out_dir``.

    Returns:
        ``{"train": path, "test": path}``.
    """
    from shared.shards import ShardWriter

    out_dir = Path(out_dir)
    train_figures, test_figures = compositional_split()
    splits = {
        "train": itertools.chain(
            _dicom_samples(image_size),
            _skimage_samples(image_size, skimage_crops, seed),
            _generated_samples(train_figures, image_size, train_variants, seed * 1_000_003 + 17, "train"),
        ),
        "test": _generated_samples(test_figures, image_size, test_variants, seed * 1_000_003 + 900_001, "test"),
    }
    paths = {}
    for split, samples in splits.items():
        with ShardWriter(out_dir / split, prefix="demo", max_samples=2000, track_json_fields=TRACKED_FIELDS,
                         concept_fields=CONCEPT_FIELDS, overwrite=overwrite) as writer:  # fmt: skip
            for sample in samples:
                writer.write(biomedica_sample_dict(sample))
        paths[split] = out_dir / split
    marker = {"version": DEMO_CORPUS_VERSION, "image_size": image_size, "train_variants": train_variants,
              "test_variants": test_variants, "skimage_crops": skimage_crops, "seed": seed,
              "held_out_combinations": sorted(figure.combination for figure in test_figures)}  # fmt: skip
    write_text_atomically(out_dir / DEMO_CORPUS_MARKER, json.dumps(marker, indent=2) + "\n")
    return paths


def demo_corpus_is_current(out_dir: str | Path, image_size: int) -> bool:
    """True if ``out_dir`` holds both splits written by this corpus version at ``image_size`` px."""
    out_dir = Path(out_dir)
    if not all((out_dir / split / "manifest.json").is_file() for split in ("train", "test")):
        return False
    try:
        marker = json.loads((out_dir / DEMO_CORPUS_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return marker.get("version") == DEMO_CORPUS_VERSION and marker.get("image_size") == image_size
