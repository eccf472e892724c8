"""Biomedical data formats: DICOM → model-ready images, BIOMEDICA-format shards, image–caption folders.

Three ways in, one way out. Every reader here yields :class:`BiomedSample` objects that
:func:`biomedica_sample_dict` turns into a webdataset sample in the BIOMEDICA layout
(``jpg`` image, ``txt`` caption, ``json`` metadata). The shard writer and stream come from the
core (``shared.shards``, ``shared.shard_stream``); this module only knows the formats.

The DICOM chain follows the display pipeline of DICOM PS3.3 (and the order the reference lists):
decode → modality LUT / rescale → VOI (LUT sequence, window by index, or a named preset) →
invert (MONOCHROME1 or an INVERSE presentation LUT) → scale to [0, 1] → 3 channels at the model's
size. The pixel-wise steps are evaluated once per distinct stored value (a lookup table over the
frame's value range) with pydicom's own functions and then applied with one gather, which is exact
because every one of them is a function of the stored value alone.

Patient-identifying header fields never leave :func:`read_dicom_image`: captions and metadata are
built from an allow-list of descriptive fields (:data:`DICOM_DESCRIPTIVE_FIELDS`), and identifiers
that leak into descriptive free text are scrubbed.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import os
import re
import shlex
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from shared.shard_stream import MetadataFilter

# --------------------------------------------------------------------------------------------------
# Sample type shared by all readers
# --------------------------------------------------------------------------------------------------


@dataclass
class BiomedSample:
    """One image–caption pair on its way into a BIOMEDICA-format shard.

    Attributes:
        key: Webdataset ``__key__``; never contains patient identifiers.
        image: RGB image (uint8, H×W×3).
        caption: Caption text.
        metadata: JSON-serialisable metadata in the BIOMEDICA schema (plus a ``dicom`` section for
            DICOM inputs recording the preprocessing steps applied).
    """

    key: str
    image: np.ndarray
    caption: str
    metadata: dict[str, Any]


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    """Encode an RGB uint8 array as JPEG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def biomedica_sample_dict(sample: BiomedSample, jpeg_quality: int = 95) -> dict[str, Any]:
    """Turn a sample into a webdataset dict with BIOMEDICA's keys (``__key__``, ``jpg``, ``txt``, ``json``)."""
    return {
        "__key__": sample.key,
        "jpg": encode_jpeg(sample.image, jpeg_quality),
        "txt": sample.caption,
        "json": sample.metadata,
    }


# --------------------------------------------------------------------------------------------------
# DICOM
# --------------------------------------------------------------------------------------------------

#: Header fields that may appear in metadata; everything else (names, IDs, dates, addresses,
#: institution, accession numbers, UIDs) stays out by construction.
DICOM_DESCRIPTIVE_FIELDS: tuple[str, ...] = (
    "Modality",
    "BodyPartExamined",
    "StudyDescription",
    "SeriesDescription",
    "ProtocolName",
    "ViewPosition",
    "ImageLaterality",
    "PhotometricInterpretation",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "BitsStored",
    "PixelSpacing",
    "SliceThickness",
    "Manufacturer",
)

#: Fields whose values are scrubbed out of any descriptive free text that echoes them.
DICOM_IDENTIFYING_FIELDS: tuple[str, ...] = (
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "PatientBirthDate",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "InstitutionName",
    "InstitutionAddress",
    "AccessionNumber",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "OperatorsName",
    "StudyDate",
    "SeriesDate",
    "AcquisitionDate",
    "ContentDate",
    "StudyID",
)

MODALITY_NAMES: dict[str, str] = {
    "CT": "CT",
    "MR": "MRI",
    "CR": "computed radiograph",
    "DX": "digital radiograph",
    "MG": "mammogram",
    "US": "ultrasound",
    "NM": "nuclear medicine scan",
    "PT": "PET",
    "XA": "angiogram",
    "RF": "fluoroscopy",
    "OT": "medical image",
    "SC": "secondary capture image",
    "SM": "slide microscopy image",
    "OP": "ophthalmic photograph",
    "ES": "endoscopy image",
    "SEG": "segmentation mask",
    "RTDOSE": "radiotherapy dose map",
}

#: Named VOI windows as (center, width) in Hounsfield units (HU), the usual radiology presets.
WINDOW_PRESETS_HU: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "stroke": (40.0, 40.0),
    "soft_tissue": (50.0, 400.0),
    "mediastinum": (50.0, 350.0),
    "liver": (60.0, 160.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
}

SUPPORTED_PHOTOMETRIC = frozenset(
    {"MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "PALETTE COLOR"}
)

FramePolicy = Literal["first", "middle", "all"]


class DicomReadError(ValueError):
    """A DICOM file could not be turned into an image; the message names the file and the reason."""


@dataclass
class DicomChainConfig:
    """How DICOM pixels become model images."""

    image_size: int = 224
    """Side of the square output image in pixels (letterboxed, aspect ratio kept)."""
    voi: str = "auto"
    """VOI step: 'auto' (VOI LUT sequence, else the header window at `window_index`, else the frame's
    min–max), 'window' (header window at `window_index` only), 'minmax', or a preset name (brain, subdural, stroke, soft_tissue, mediastinum, liver, lung, bone; HU)."""
    window_index: int = 0
    """Which of several header windows (or VOI LUTs) to apply."""
    frame_policy: str = "middle"
    """Multi-frame files: 'first', 'middle' (one sample) or 'all' (one sample per frame)."""
    decoding_plugin: str = ""
    """Pin a pydicom decoding plugin (e.g. 'pylibjpeg', 'pyjpegls', 'gdcm'); empty = pydicom's choice."""

    def __post_init__(self) -> None:
        named = {"auto", "window", "minmax", *WINDOW_PRESETS_HU}
        if self.voi not in named:
            raise ValueError(f"unknown voi {self.voi!r}; choose one of {sorted(named)}")
        if self.frame_policy not in ("first", "middle", "all"):
            raise ValueError(f"unknown frame_policy {self.frame_policy!r}; choose first, middle or all")
        if self.image_size < 8:
            raise ValueError(f"image_size must be at least 8 px, got {self.image_size}")


@dataclass
class DicomImage:
    """Frames of one DICOM file after the full chain, with PHI-free descriptive metadata."""

    frames: list[np.ndarray]
    """RGB uint8 images, image_size × image_size × 3."""
    frame_indices: list[int]
    header: dict[str, Any]
    """Allow-listed descriptive header fields (see DICOM_DESCRIPTIVE_FIELDS)."""
    steps: list[str]
    """Preprocessing steps applied, in order, human readable."""
    caption: str
    """Caption built from descriptive header fields."""


def _scrub_identifiers(text: str, identifiers: Sequence[str]) -> str:
    for value in identifiers:
        for part in re.split(r"[\^\s,]+", value):
            if len(part) >= 2:
                text = re.sub(re.escape(part), "", text, flags=re.IGNORECASE)
    return re.sub(r"\s{2,}", " ", text).strip(" ,;-")


def _identifier_values(ds: Any) -> list[str]:
    values = []
    for name in DICOM_IDENTIFYING_FIELDS:
        value = ds.get(name)
        if value is None or value == "":
            continue
        if isinstance(value, (list, tuple)) or getattr(value, "VM", 1) > 1:
            values.extend(str(v) for v in value)
        else:
            values.append(str(value))
    return [v for v in values if v.strip()]


def _json_value(value: Any) -> Any:
    if isinstance(value, (int, float, str)):
        return value
    if hasattr(value, "__iter__") and not isinstance(value, (bytes, str)):
        return [_json_value(v) for v in value]
    text = str(value)
    try:
        return float(text) if "." in text else int(text)
    except ValueError:
        return text


def dicom_descriptive_header(ds: Any) -> dict[str, Any]:
    """The allow-listed descriptive fields of a dataset, with identifiers scrubbed from free text."""
    identifiers = _identifier_values(ds)
    header: dict[str, Any] = {}
    for name in DICOM_DESCRIPTIVE_FIELDS:
        value = ds.get(name)
        if value is None or value == "":
            continue
        value = _json_value(value)
        if isinstance(value, str):
            value = _scrub_identifiers(value, identifiers)
            if not value:
                continue
        header[name] = value
    return header


def dicom_caption(header: dict[str, Any]) -> str:
    """Caption from descriptive header fields, e.g. ``"computed radiograph of the chest. THORAX"``."""
    modality = str(header.get("Modality", ""))
    kind = MODALITY_NAMES.get(modality, f"{modality} image" if modality else "medical image")
    body_part = str(header.get("BodyPartExamined", "")).replace("_", " ").lower()
    caption = f"{kind} of the {body_part}" if body_part else kind
    details = []
    for name in ("StudyDescription", "SeriesDescription", "ProtocolName"):
        text = str(header.get(name, "")).replace("^", " ").strip()
        if text and text.lower() not in (d.lower() for d in details):
            details.append(text)
    if details:
        caption += ". " + ". ".join(details)
    return caption


def _pixel_value_chain(ds: Any, values: np.ndarray, config: DicomChainConfig, steps: list[str]) -> np.ndarray:
    """Modality LUT → VOI → inversion → [0, 1] on an array of stored values (float64 result)."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut, apply_windowing

    photometric = str(ds.PhotometricInterpretation)
    out = np.asarray(apply_modality_lut(values, ds), dtype=np.float64)
    if "ModalityLUTSequence" in ds:
        steps.append("modality LUT sequence")
    elif "RescaleSlope" in ds or "RescaleIntercept" in ds:
        steps.append(
            f"rescale slope={float(ds.get('RescaleSlope', 1.0)):g} intercept={float(ds.get('RescaleIntercept', 0.0)):g}"
        )
    else:
        steps.append("modality LUT: identity")

    has_voi_lut = "VOILUTSequence" in ds
    has_window = "WindowCenter" in ds and "WindowWidth" in ds
    voi = config.voi
    low, high = float(out.min()), float(out.max())
    if voi in WINDOW_PRESETS_HU:
        from pydicom.dataset import Dataset

        center, width = WINDOW_PRESETS_HU[voi]
        window_ds = Dataset()
        for name in ("PhotometricInterpretation", "BitsStored", "PixelRepresentation", "RescaleSlope",
                     "RescaleIntercept", "ModalityLUTSequence"):  # fmt: skip
            if name in ds:
                setattr(window_ds, name, ds[name].value)
        window_ds.WindowCenter, window_ds.WindowWidth = center, width
        out, low, high = _windowed(apply_windowing, out, window_ds, 0)
        steps.append(f"VOI preset {voi} (center {center:g} HU, width {width:g} HU)")
    elif voi == "auto" and has_voi_lut:
        index = min(config.window_index, len(ds.VOILUTSequence) - 1)
        # The LUT is indexed by stored values; hand it integers when the modality step was the identity.
        lut_input = values if steps[-1] == "modality LUT: identity" else out
        out = np.asarray(apply_voi_lut(lut_input, ds, index=index, prefer_lut=True), dtype=np.float64)
        bits = int(ds.VOILUTSequence[index].LUTDescriptor[2])
        low, high = 0.0, float(2**bits - 1)
        steps.append(f"VOI LUT sequence item {index}")
    elif voi in ("auto", "window") and has_window:
        n_windows = getattr(ds["WindowCenter"], "VM", 1)
        if config.window_index >= n_windows:
            raise DicomReadError(
                f"window_index {config.window_index} requested but the header has {n_windows} window(s)"
            )
        out, low, high = _windowed(apply_windowing, out, ds, config.window_index)
        centers = ds.WindowCenter if n_windows > 1 else [ds.WindowCenter]
        widths = ds.WindowWidth if getattr(ds["WindowWidth"], "VM", 1) > 1 else [ds.WindowWidth]
        steps.append(
            f"VOI window {config.window_index} (center {float(centers[config.window_index]):g}, "
            f"width {float(widths[config.window_index]):g}, {ds.get('VOILUTFunction', 'LINEAR')})"
        )
    elif voi == "window":
        raise DicomReadError("voi='window' requested but the header has no WindowCenter/WindowWidth")
    else:
        steps.append("VOI: min-max of the frame")

    scale = high - low
    out = (out - low) / scale if scale > 0 else np.zeros_like(out)
    out = np.clip(out, 0.0, 1.0)
    steps.append("scale to [0, 1]")
    inverse_lut = str(ds.get("PresentationLUTShape", "")).upper() == "INVERSE"
    if photometric == "MONOCHROME1" or inverse_lut:
        out = 1.0 - out
        steps.append("invert (" + ("MONOCHROME1" if photometric == "MONOCHROME1" else "INVERSE presentation LUT") + ")")
    return out


def _windowed(apply_windowing: Any, values: np.ndarray, ds: Any, index: int) -> tuple[np.ndarray, float, float]:
    out = np.asarray(apply_windowing(values.copy(), ds, index=index), dtype=np.float64)
    # The output range of a window is the whole input range mapped through it: probe both ends.
    probe = np.asarray(apply_windowing(np.array([-1e12, 1e12]), ds, index=index), dtype=np.float64)
    return out, float(probe.min()), float(probe.max())


def _monochrome_to_unit(frame: np.ndarray, ds: Any, config: DicomChainConfig, steps: list[str]) -> np.ndarray:
    """Monochrome frame → uint8 image (0–255 ≙ [0, 1]) through the pixel-value chain."""
    if np.issubdtype(frame.dtype, np.integer):
        low, high = int(frame.min()), int(frame.max())
        values = np.arange(low, high + 1, dtype=np.int64)
        lut = np.round(_pixel_value_chain(ds, values, config, steps) * 255.0).astype(np.uint8)
        # frame - low stays in the frame's own dtype for unsigned data (no widening copy of a large image)
        index = frame - frame.dtype.type(low) if low >= 0 else frame.astype(np.int32) - low
        return np.take(lut, index)
    return np.round(_pixel_value_chain(ds, frame.astype(np.float64), config, steps) * 255.0).astype(np.uint8)


def _color_to_unit(frame: np.ndarray, ds: Any, steps: list[str]) -> np.ndarray:
    """Colour frame → uint8 RGB image."""
    photometric = str(ds.PhotometricInterpretation)
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        frame = apply_color_lut(frame, ds)
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        steps.append("palette colour LUT")
    else:
        bits = int(ds.get("BitsStored", 8))
        if photometric != "RGB":
            steps.append(f"{photometric} → RGB (pydicom)")
    steps.append("scale to [0, 1]")
    if bits == 8 and frame.dtype == np.uint8:
        return frame
    return np.round(np.clip(frame.astype(np.float64) / float(2**bits - 1), 0.0, 1.0) * 255.0).astype(np.uint8)


def letterbox_rgb(image: np.ndarray, size: int) -> np.ndarray:
    """Grey (H×W) or RGB (H×W×3) image, uint8 or float in [0, 1] → size×size×3 uint8.

    The aspect ratio is kept (black padding); downscaling averages areas (box filter), upscaling is bicubic.
    """
    if image.dtype != np.uint8:
        image = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    pil = Image.fromarray(image)
    scale = size / max(pil.width, pil.height)
    new_size = (max(1, round(pil.width * scale)), max(1, round(pil.height * scale)))
    if scale > 1:
        pil = pil.resize(new_size, Image.Resampling.BICUBIC)
    else:
        pil = pil.resize(new_size, Image.Resampling.BOX, reducing_gap=3.0)
    canvas = Image.new("RGB", (size, size))
    canvas.paste(pil.convert("RGB"), ((size - new_size[0]) // 2, (size - new_size[1]) // 2))
    return np.asarray(canvas)


@contextlib.contextmanager
def _pydicom_messages_silenced() -> Iterator[None]:
    """Silence pydicom's warnings and log lines: they quote raw header values, which may be PHI."""
    logger = logging.getLogger("pydicom")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def read_dicom_image(path: str | Path, config: DicomChainConfig | None = None) -> DicomImage:
    """Read one DICOM file through the full chain.

    Args:
        path: A DICOM Part 10 file (with the ``DICM`` preamble; raw bytes are not accepted).
        config: Chain settings; defaults to 224 px, automatic VOI, middle frame.

    Returns:
        The processed frame(s), the allow-listed header, the steps applied and a caption.

    Raises:
        DicomReadError: Not a DICOM file, no pixel data, unsupported photometric interpretation,
            truncated or undecodable pixel data. The message names the file.
    """
    with _pydicom_messages_silenced():
        return _read_dicom_image(Path(path), config or DicomChainConfig())


def _read_dicom_image(path: Path, config: DicomChainConfig) -> DicomImage:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import iter_pixels, pixel_array

    try:
        ds = pydicom.dcmread(path)  # no force=True: random bytes must fail here, not decode as garbage
    except InvalidDicomError as error:
        raise DicomReadError(f"{path}: not a DICOM file ({error})") from error
    except Exception as error:  # noqa: BLE001 — truncated headers raise many types
        # only the type: a parser message can quote raw element values
        raise DicomReadError(f"{path}: unreadable DICOM header ({type(error).__name__})") from error
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise DicomReadError(f"{path}: no pixel data (SOP class {ds.get('SOPClassUID', 'unknown')})")
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric not in SUPPORTED_PHOTOMETRIC:
        raise DicomReadError(f"{path}: unsupported photometric interpretation {photometric!r}")

    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if config.frame_policy == "all":
        indices = list(range(n_frames))
    elif config.frame_policy == "first":
        indices = [0]
    else:
        indices = [n_frames // 2]
    options = {"decoding_plugin": config.decoding_plugin} if config.decoding_plugin else {}
    transfer_syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        if config.frame_policy == "all" and n_frames > 1:
            raw_frames = list(iter_pixels(ds, **options))
        elif n_frames > 1:
            raw_frames = [pixel_array(ds, index=indices[0], **options)]
        else:
            raw_frames = [ds.pixel_array if not options else pixel_array(ds, **options)]
    except Exception as error:  # noqa: BLE001 — decoders raise many types for truncated/corrupt data
        raise DicomReadError(f"{path}: pixel data could not be decoded ({type(error).__name__}: {error})") from error

    frames: list[np.ndarray] = []
    steps: list[str] = []
    for raw in raw_frames:
        frame_steps = [
            f"decode {transfer_syntax.name if transfer_syntax else 'unknown transfer syntax'}"
            + (f" with {config.decoding_plugin}" if config.decoding_plugin else "")
        ]
        if photometric.startswith("MONOCHROME"):
            if raw.ndim != 2:
                raise DicomReadError(f"{path}: expected a 2-D monochrome frame, got shape {raw.shape}")
            try:
                unit = _monochrome_to_unit(raw, ds, config, frame_steps)
            except DicomReadError as error:
                raise DicomReadError(f"{path}: {error}") from error
        else:
            unit = _color_to_unit(raw, ds, frame_steps)
        frames.append(letterbox_rgb(unit, config.image_size))
        frame_steps.append(f"3 channels, letterbox to {config.image_size}x{config.image_size} px")
        steps = frame_steps
    if n_frames > 1:
        steps.insert(1, f"frame policy {config.frame_policy} of {n_frames} frames")
    header = dicom_descriptive_header(ds)
    return DicomImage(frames=frames, frame_indices=indices, header=header, steps=steps, caption=dicom_caption(header))


def read_reports_csv(path: str | Path) -> dict[str, str]:
    """Read a reports/captions CSV mapping an id to text.

    The id column is the first of ``id, key, filename, filepath, path``; the text column the first of
    ``text, report, caption, title``. An id matches a DICOM file by relative path (with or without the
    suffix) or file stem.

    Raises:
        ValueError: Missing columns or duplicate ids, naming the file.
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        id_column = next((c for c in ("id", "key", "filename", "filepath", "path") if c in columns), None)
        text_column = next((c for c in ("text", "report", "caption", "title") if c in columns), None)
        if id_column is None or text_column is None:
            raise ValueError(f"{path}: need an id column (id/key/filename/filepath/path) and a text column "
                             f"(text/report/caption/title); found {columns}")  # fmt: skip
        reports: dict[str, str] = {}
        for line, row in enumerate(reader, start=2):
            key = (row[id_column] or "").strip()
            if not key:
                raise ValueError(f"{path}:{line}: empty id")
            if key in reports:
                raise ValueError(f"{path}:{line}: duplicate id {key!r}")
            reports[key] = (row[text_column] or "").strip()
    return reports


def _report_for(relative: Path, reports: dict[str, str]) -> str | None:
    for candidate in (relative.as_posix(), relative.with_suffix("").as_posix(), relative.name, relative.stem):
        if candidate in reports:
            return reports[candidate]
    return None


def _content_key(prefix: str, relative: Path, frame: int | None = None) -> str:
    # A hash of the relative path: stable across runs, and folder names (often patient names) stay out.
    digest = hashlib.sha256(relative.as_posix().encode()).hexdigest()[:16]
    return f"{prefix}-{digest}" + (f"-f{frame:04d}" if frame is not None else "")


def dicom_image_samples(
    image: DicomImage, relative: Path, report: str | None = None, license_name: str = "unknown"
) -> Iterator[BiomedSample]:
    """BIOMEDICA-format samples (one per frame) from a processed DICOM image.

    Args:
        image: Output of :func:`read_dicom_image`.
        relative: The file's path relative to the input root; only its hash enters the sample key.
        report: Caption text from a report; None builds the caption from descriptive header fields.
        license_name: Licence recorded in ``article_license``.
    """
    caption = report if report else image.caption
    modality_name = MODALITY_NAMES.get(str(image.header.get("Modality", "")), "medical image")
    for frame, index in zip(image.frames, image.frame_indices):
        key = _content_key("dicom", relative, index if len(image.frame_indices) > 1 else None)
        metadata = {
            "image_file_name": f"{key}.jpg",
            "image_size": [int(frame.shape[1]), int(frame.shape[0])],
            "image_panel_type": "single",
            "image_primary_label": ["Clinical Imaging"],
            "image_secondary_label": [modality_name],
            "image_set": "dicom",
            "article_license": license_name,
            "caption_source": "report" if report else "dicom header",
            "dicom": {"header": image.header, "frame_index": index, "steps": image.steps},
        }
        yield BiomedSample(key=key, image=frame, caption=caption, metadata=metadata)


@dataclass
class SkippedInput:
    """An input that did not become a sample, and why."""

    source: str
    reason: str


def read_dicom_folder(
    root: str | Path,
    config: DicomChainConfig | None = None,
    reports: dict[str, str] | None = None,
    license_name: str = "unknown",
    skipped: list[SkippedInput] | None = None,
) -> Iterator[BiomedSample]:
    """Read every DICOM file under ``root`` (recursively) into BIOMEDICA-format samples.

    Files are visited in sorted order. Anything that is not a usable DICOM image is appended to
    ``skipped`` with its reason and the walk continues.

    Args:
        root: Folder to search (all files, any suffix: DICOM files often have none).
        config: The DICOM chain settings.
        reports: Optional id → report text (see :func:`read_reports_csv`); otherwise the caption is
            built from descriptive header fields.
        license_name: Licence recorded in each sample's ``article_license``.
        skipped: List that collects :class:`SkippedInput` records.

    Yields:
        One sample per selected frame.
    """
    config = config or DicomChainConfig()
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: DICOM input folder not found")
    skipped = skipped if skipped is not None else []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root)
        try:
            image = read_dicom_image(path, config)
        except DicomReadError as error:
            skipped.append(SkippedInput(relative.as_posix(), str(error).removeprefix(f"{path}: ")))
            continue
        report = _report_for(relative, reports) if reports else None
        yield from dicom_image_samples(image, relative, report, license_name)


# --------------------------------------------------------------------------------------------------
# Ordinary image folders with a captions file (open_clip's filepath,title convention)
# --------------------------------------------------------------------------------------------------


def read_captions_table(path: str | Path) -> list[tuple[str, str]]:
    """Read ``(image path, caption)`` rows from a CSV (``filepath,title``) or JSONL file.

    CSV files need ``filepath`` (or ``image``/``file_name``) and ``title`` (or ``caption``/``text``)
    columns; JSONL lines need the same keys.

    Raises:
        ValueError: Unknown suffix, missing columns or malformed lines, naming the file and line.
    """
    path = Path(path)
    image_keys, text_keys = ("filepath", "image", "file_name"), ("title", "caption", "text")
    rows: list[tuple[str, str]] = []
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            image_key = next((c for c in image_keys if c in columns), None)
            text_key = next((c for c in text_keys if c in columns), None)
            if image_key is None or text_key is None:
                raise ValueError(
                    f"{path}: need columns filepath,title (or image/file_name, caption/text); found {columns}"
                )
            rows = [((row[image_key] or "").strip(), (row[text_key] or "").strip()) for row in reader]
    elif path.suffix.lower() in (".jsonl", ".json"):
        with path.open(encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}:{line_number}: not valid JSON ({error.msg})") from error
                image_key = next((c for c in image_keys if c in record), None)
                text_key = next((c for c in text_keys if c in record), None)
                if image_key is None or text_key is None:
                    raise ValueError(f"{path}:{line_number}: need keys filepath and title (or image/caption)")
                rows.append((str(record[image_key]).strip(), str(record[text_key]).strip()))
    else:
        raise ValueError(f"{path}: captions file must be .csv or .jsonl")
    return rows


def read_image_caption_folder(
    root: str | Path,
    captions_path: str | Path,
    image_size: int = 224,
    license_name: str = "unknown",
    skipped: list[SkippedInput] | None = None,
) -> Iterator[BiomedSample]:
    """Read a folder of ordinary images (PNG, JPEG, TIFF, …) listed in a captions table.

    Image paths in the table are relative to ``root`` (absolute paths are used as they are). Missing
    or unreadable images and empty captions are recorded in ``skipped``.
    """
    root = Path(root)
    skipped = skipped if skipped is not None else []
    for relative_name, caption in read_captions_table(captions_path):
        path = Path(relative_name) if Path(relative_name).is_absolute() else root / relative_name
        if not caption:
            skipped.append(SkippedInput(relative_name, "empty caption"))
            continue
        try:
            with Image.open(path) as pil:
                rgb = np.asarray(pil.convert("RGB"), dtype=np.float64) / 255.0
        except FileNotFoundError:
            skipped.append(SkippedInput(relative_name, "image file not found"))
            continue
        except Exception as error:  # noqa: BLE001 — Pillow raises many types for corrupt files
            skipped.append(SkippedInput(relative_name, f"unreadable image ({type(error).__name__}: {error})"))
            continue
        image = letterbox_rgb(rgb, image_size)
        key = _content_key("image", Path(relative_name))
        metadata = {
            "image_file_name": Path(relative_name).name,
            "image_size": [image_size, image_size],
            "image_panel_type": "single",
            "image_primary_label": [],
            "image_secondary_label": [],
            "image_set": "folder",
            "article_license": license_name,
        }
        yield BiomedSample(key=key, image=image, caption=caption, metadata=metadata)


# --------------------------------------------------------------------------------------------------
# BIOMEDICA-format shards: decoding and filters
# --------------------------------------------------------------------------------------------------

LicenseSubset = Literal["commercial", "noncommercial", "other"]

NO_CAPTION_MARKERS = frozenset({"", "no caption found"})


def license_subset(license_text: str | None) -> LicenseSubset:
    """Map an article licence string to BIOMEDICA's subset (commercial / noncommercial / other).

    ``commercial`` = CC0, CC BY, CC BY-SA, CC BY-ND and public domain; ``noncommercial`` = any CC
    licence with NC; everything else (unknown, publisher-specific) is ``other``.
    """
    text = (license_text or "").lower().replace("_", "-").replace(" ", "-")
    if "cc0" in text or "public-domain" in text or "publicdomain" in text:
        return "commercial"
    if "cc-by" in text or "ccby" in text or "creativecommons.org/licenses/by" in text:
        return "noncommercial" if "-nc" in text or "by-nc" in text else "commercial"
    return "other"


@dataclass
class BiomedicaFilter:
    """Which BIOMEDICA samples to keep. Empty lists keep everything for that field."""

    license_subsets: list[str] = field(default_factory=list)
    """Keep only these licence subsets: commercial, noncommercial, other."""
    concepts: list[str] = field(default_factory=list)
    """Keep samples whose primary (or secondary) concept labels include any of these (case-insensitive)."""
    panel_types: list[str] = field(default_factory=list)
    """Keep only these image_panel_type values (case-insensitive)."""
    min_side_px: int = 21
    """Drop images whose width or height is below this (BIOMEDICA keeps sides > 20 px)."""
    drop_missing_captions: bool = True
    """Drop empty captions and 'No caption found'."""

    def __post_init__(self) -> None:
        unknown = set(self.license_subsets) - {"commercial", "noncommercial", "other"}
        if unknown:
            raise ValueError(f"unknown licence subset(s) {sorted(unknown)}; use commercial, noncommercial, other")

    def rejection(self, caption: str, metadata: dict[str, Any]) -> str | None:
        """The reason this sample is filtered out, or None to keep it."""
        if self.drop_missing_captions and caption.strip().lower() in NO_CAPTION_MARKERS:
            return "missing caption"
        size = metadata.get("image_size") or [0, 0]
        if min(int(size[0]), int(size[1])) < self.min_side_px:
            return f"image side below {self.min_side_px} px"
        if self.license_subsets and license_subset(metadata.get("article_license")) not in self.license_subsets:
            return "licence subset"
        if self.concepts:
            labels = [str(x).lower() for x in _as_list(metadata.get("image_primary_label"))]
            labels += [str(x).lower() for x in _as_list(metadata.get("image_secondary_label"))]
            if not {c.lower() for c in self.concepts} & set(labels):
                return "concept"
        if self.panel_types:
            if str(metadata.get("image_panel_type", "")).lower() not in {p.lower() for p in self.panel_types}:
                return "panel type"
        return None

    def __call__(self, sample: dict[str, Any]) -> bool:
        """True to keep a decoded sample (a dict with ``caption`` and ``metadata``)."""
        return self.rejection(sample["caption"], sample["metadata"]) is None

    def stream_filters(self) -> list[Any]:
        """The metadata rules as core ``MetadataFilter`` objects for ``ShardStream(filters=...)``.

        The caption rule needs the ``txt`` field, which metadata filters do not see: decoders apply it
        with :meth:`caption_rejection` (see :class:`BiomedicaDecoder`).
        """
        rules: list[Any] = [MinImageSideFilter(field="image_size", min_value=self.min_side_px)]
        if self.license_subsets:
            rules.append(LicenseSubsetFilter(field="article_license", one_of=tuple(self.license_subsets)))
        if self.concepts:
            rules.append(ConceptFilter(field="image_primary_label", any_of=tuple(self.concepts)))
        if self.panel_types:
            rules.append(MetadataFilter(field="image_panel_type", one_of=tuple(self.panel_types)))
        return rules

    def caption_rejection(self, caption: str) -> str | None:
        """'missing caption' for empty / 'No caption found' captions (when enabled), else None."""
        if self.drop_missing_captions and caption.strip().lower() in NO_CAPTION_MARKERS:
            return "missing caption"
        return None


class LicenseSubsetFilter(MetadataFilter):
    """Keeps samples whose ``article_license`` falls in one of the ``one_of`` subsets (see :func:`license_subset`)."""

    def matches(self, metadata: dict[str, Any]) -> bool:
        """Whether the sample's licence subset is wanted (a missing licence counts as 'other')."""
        return license_subset(metadata.get(self.field)) in set(self.one_of or ())


class ConceptFilter(MetadataFilter):
    """Keeps samples whose primary or secondary concept labels include one of ``any_of`` (case-insensitive)."""

    def matches(self, metadata: dict[str, Any]) -> bool:
        """Whether any concept label matches."""
        labels = _as_list(metadata.get("image_primary_label")) + _as_list(metadata.get("image_secondary_label"))
        wanted = {str(c).lower() for c in self.any_of or ()}
        return any(str(label).lower() in wanted for label in labels)


class MinImageSideFilter(MetadataFilter):
    """Keeps samples whose ``image_size`` [width, height] has both sides ≥ ``min_value`` px (kept when absent)."""

    def matches(self, metadata: dict[str, Any]) -> bool:
        """Whether both sides are large enough."""
        size = metadata.get(self.field)
        if not isinstance(size, (list, tuple)) or len(size) != 2:
            return True  # checked after decoding, from the image itself
        return min(float(size[0]), float(size[1])) >= float(self.min_value)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def primary_concept(sample: dict[str, Any]) -> str:
    """The first primary concept label of a decoded sample (the key for concept-balanced sampling)."""
    labels = _as_list(sample["metadata"].get("image_primary_label"))
    return str(labels[0]) if labels else "unlabelled"


def read_biomedica_sample(raw: dict[str, Any]) -> dict[str, Any]:
    """Decode one raw webdataset sample in the BIOMEDICA layout.

    Args:
        raw: Bytes per extension as webdataset yields them (``__key__``, ``jpg``/``png``, ``txt``, ``json``).

    Returns:
        ``{"key", "image" (PIL RGB), "caption", "metadata"}``. The metadata's ``image_size`` is set
        from the decoded image when the JSON lacks it.

    Raises:
        ValueError: Missing image or caption, undecodable JSON or image (the stream skips and counts these).
    """
    key = raw.get("__key__", "?")
    image_bytes = raw.get("jpg") or raw.get("jpeg") or raw.get("png") or raw.get("webp")
    if image_bytes is None:
        raise ValueError(f"sample {key}: no image (jpg/png/webp)")
    if "txt" not in raw:
        raise ValueError(f"sample {key}: no caption (txt)")
    caption = raw["txt"].decode("utf-8") if isinstance(raw["txt"], bytes) else str(raw["txt"])
    metadata: dict[str, Any] = {}
    if raw.get("json") is not None:
        try:
            metadata = json.loads(raw["json"]) if isinstance(raw["json"], (bytes, str)) else dict(raw["json"])
        except json.JSONDecodeError as error:
            raise ValueError(f"sample {key}: metadata is not valid JSON ({error.msg})") from error
    try:
        with Image.open(io.BytesIO(image_bytes)) as pil:
            image = pil.convert("RGB")
    except Exception as error:  # noqa: BLE001
        raise ValueError(f"sample {key}: image could not be decoded ({type(error).__name__})") from error
    metadata.setdefault("image_size", [image.width, image.height])
    return {"key": key, "image": image, "caption": caption.strip(), "metadata": metadata}


class FilteredSampleError(ValueError):
    """A decoded sample failed a content rule (caption, image size); the stream counts it and moves on."""


#: JSON fields copied into the store / evaluation next to each vector (never anything identifying).
STORE_METADATA_FIELDS = ("image_set", "image_primary_label", "image_secondary_label", "image_panel_type",
                         "article_license", "caption_source")  # fmt: skip


class BiomedicaDecoder:
    """``decode_sample`` for the core ``ShardStream``: BIOMEDICA raw sample → model inputs.

    Returns ``{"image": (3, H, W) float tensor, "text": (L,) token ids, "key": str, "caption": str,
    "label": str, "metadata": JSON str}``; ``label`` is the value at ``label_field`` (first element of a
    list; "" when absent or no field is set).

    Args:
        transform: Image transform (open_clip's preprocess for training or validation).
        tokenizer: open_clip tokenizer (``tokenizer([caption]) -> (1, L)``).
        rules: Content rules (caption, minimum side); None applies BIOMEDICA's defaults.
        label_field: Dotted path of a class label in the JSON (for zero-shot evaluation).
    """

    def __init__(
        self, transform: Any, tokenizer: Any, rules: BiomedicaFilter | None = None, label_field: str = ""
    ) -> None:
        self.transform = transform
        self.tokenizer = tokenizer
        self.rules = rules or BiomedicaFilter()
        self.label_field = label_field

    def __call__(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Decode one sample; raises on corrupt data or a failed content rule (the stream skips it)."""
        sample = read_biomedica_sample(raw)
        reason = self.rules.caption_rejection(sample["caption"])
        if reason is None and min(sample["image"].size) < self.rules.min_side_px:
            reason = f"image side below {self.rules.min_side_px} px"
        if reason is not None:
            raise FilteredSampleError(f"sample {sample['key']}: {reason}")
        label: Any = ""
        if self.label_field:
            value: Any = sample["metadata"]
            for part in self.label_field.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            label = _as_list(value)[0] if _as_list(value) else ""
        kept = {name: sample["metadata"][name] for name in STORE_METADATA_FIELDS if name in sample["metadata"]}
        return {
            "image": self.transform(sample["image"]),
            "text": self.tokenizer([sample["caption"]])[0],
            "key": sample["key"],
            "caption": sample["caption"],
            "label": str(label),
            "metadata": json.dumps(kept, sort_keys=True),
        }


# --------------------------------------------------------------------------------------------------
# Hugging Face dataset streaming
# --------------------------------------------------------------------------------------------------


def huggingface_shard_urls(
    repo_id: str,
    shards: Sequence[str] | None = None,
    revision: str = "main",
    endpoint: str = "https://huggingface.co",
    token_env: str | None = "HF_TOKEN",  # noqa: S107 — the name of a variable, not a secret
    pattern: str = r"\.tar$",
) -> list[str]:
    """Streaming URLs for the ``.tar`` shards of a Hugging Face dataset repository.

    With a token variable, each URL is a ``pipe:`` command that sends ``Authorization: Bearer
    $<token_env>`` with curl (needed for gated sets such as BIOMEDICA). The token is expanded by the
    shell at read time and handed to curl on its standard input (``-H @-``), so it appears in no URL,
    config, log or process list. Join the result with ``::`` for the core ``ShardStream``.

    Args:
        repo_id: Dataset repository, e.g. ``BIOMEDICA/biomedica_webdataset_24M``.
        shards: Shard paths inside the repository; listed with ``HfApi.list_repo_files`` when None
            (needs network).
        revision: Branch, tag or commit.
        endpoint: Hub address (a mirror, or a loopback server in tests).
        token_env: Environment variable holding the access token; None for public sets (plain https URLs).
        pattern: Regular expression selecting shard files when listing.

    Returns:
        One URL per shard, sorted by shard path.
    """
    if shards is None:
        from huggingface_hub import HfApi

        token = os.environ.get(token_env) if token_env else None
        files = HfApi(endpoint=endpoint).list_repo_files(repo_id, repo_type="dataset", revision=revision, token=token)
        shards = [f for f in files if re.search(pattern, f)]
        if not shards:
            raise ValueError(f"{repo_id}: no files matching {pattern!r} in the dataset repository")
    urls = []
    for shard in sorted(shards):
        url = f"{endpoint.rstrip('/')}/datasets/{repo_id}/resolve/{revision}/{shard.lstrip('/')}"
        if token_env:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", token_env):
                raise ValueError(f"token_env must be an environment variable name, got {token_env!r}")
            # echo is a shell builtin (the token reaches no argv); no backslashes or braces, which the
            # stream's brace expansion would rewrite.
            header = f'echo "Authorization: Bearer ${token_env}"'
            urls.append(f"pipe:{header} | curl --silent --show-error --fail --location -H @- {shlex.quote(url)}")
        else:
            urls.append(url)
    return urls


def iter_batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Group an iterable into lists of ``size`` (the last one may be shorter)."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
