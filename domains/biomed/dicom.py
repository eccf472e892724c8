"""The DICOM chain: a DICOM file → model-ready RGB images, PHI-free metadata and a caption.

The chain follows the display pipeline of DICOM PS3.3 (and the order the reference lists):
decode → modality LUT / rescale → VOI (LUT sequence, window by index, or a named preset) →
invert (MONOCHROME1 or an INVERSE presentation LUT) → scale to [0, 1] → 3 channels at the model's
size. The pixel-wise steps are evaluated once per distinct stored value (a lookup table over the
frame's value range) with pydicom's own functions and then applied with one gather, which is exact
because every one of them is a function of the stored value alone.

Patient-identifying header fields never leave :func:`read_dicom_image`: captions and metadata are
built from an allow-list of descriptive fields (:data:`DICOM_DESCRIPTIVE_FIELDS`), identifiers that
leak into descriptive free text are scrubbed, and pydicom's own warnings and log lines (which quote
raw header values) are silenced while a file is read. Error messages name the file and the reason,
never a header value. Report text given as a caption is scrubbed of the same file's identifying header
values and of common identifier shapes (:mod:`domains.biomed.report_scrubbing`) before it becomes a
caption; each sample records that scrubbing ran and how many spans it replaced.

Pixels are not scrubbed: files that declare burned-in text (``BurnedInAnnotation = YES``) are skipped
unless :attr:`DicomChainConfig.include_burned_in`, and files of modalities where burned-in text is common
(:data:`BURNED_IN_TEXT_MODALITIES`, secondary capture) that do not declare it either way are flagged.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from domains.biomed.report_scrubbing import (
    IDENTIFYING_FIELDS,
    REPLACEMENT,
    header_identifiers,
    scrub_report_text,
)
from domains.biomed.samples import BiomedSample, SkippedInput, content_key, letterbox_rgb
from shared.user_errors import UserError

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

#: Fields whose values are scrubbed out of any descriptive free text and report text that echoes them.
DICOM_IDENTIFYING_FIELDS: tuple[str, ...] = IDENTIFYING_FIELDS

#: Modalities whose images often carry burned-in text (ultrasound, secondary capture, other, angiography,
#: fluoroscopy, endoscopy, photographs, documents): a file of these that does not say
#: ``BurnedInAnnotation`` either way is flagged in the manifest.
BURNED_IN_TEXT_MODALITIES: frozenset[str] = frozenset(
    {"US", "IVUS", "SC", "OT", "XA", "RF", "ES", "XC", "OP", "DOC", "GM"}
)
#: SOP class UID prefix of the secondary capture image storage classes (flagged like modality SC).
SECONDARY_CAPTURE_SOP_PREFIX = "1.2.840.10008.5.1.4.1.1.7"

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
    include_burned_in: bool = False
    """Also ingest files that declare burned-in text (BurnedInAnnotation = YES). Their pixels may show names, IDs and dates readable at model resolution: only for data already de-identified in the pixels. Default: skipped, with the reason in the manifest."""

    def __post_init__(self) -> None:
        named = {"auto", "window", "minmax", *WINDOW_PRESETS_HU}
        if self.voi not in named:
            raise ValueError(f"voi (--dicom.voi) {self.voi!r}: unknown; choose one of {sorted(named)}")
        if self.frame_policy not in ("first", "middle", "all"):
            raise ValueError(
                f"frame_policy (--dicom.frame_policy) {self.frame_policy!r}: unknown; choose first, middle or all"
            )
        if self.image_size < 8:
            raise ValueError(f"image_size (--dicom.image_size): must be at least 8 px, got {self.image_size}")


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
    burned_in_annotation: str = ""
    """The header's BurnedInAnnotation ('YES', 'NO') or '' when the file does not say."""
    burned_in_text_likely: bool = False
    """The modality (or secondary-capture SOP class) is one where burned-in text is common."""
    identifiers: dict[str, list[str]] = field(default_factory=dict, repr=False)
    """The header's identifying values, kept only to scrub report text; never written anywhere."""

    @property
    def burned_in_flags(self) -> list[str]:
        """Manifest flags about burned-in text: declared and included, or likely but undeclared."""
        if self.burned_in_annotation == "YES":
            return ["burned_in_annotation_declared"]
        if self.burned_in_text_likely and not self.burned_in_annotation:
            return ["burned_in_annotation_unknown"]
        return []


def _scrub_identifiers(text: str, identifiers: dict[str, list[str]]) -> str:
    """Descriptive free text with identifying values and shapes removed (not marked: it is a description)."""
    scrubbed = scrub_report_text(text, identifiers).text.replace(REPLACEMENT, " ")
    return re.sub(r"\s{2,}", " ", scrubbed).strip(" ,;-")


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
    identifiers = header_identifiers(ds)
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
        if "Rows" in ds and "Columns" in ds:
            # pydicom stops quietly at the end of a file cut short: an image header without its pixels.
            raise DicomReadError(
                f"{path}: truncated (the header describes a {ds.Rows}x{ds.Columns} image but the file ends "
                "before its pixel data)"
            )
        raise DicomReadError(f"{path}: no pixel data (SOP class {ds.get('SOPClassUID', 'unknown')})")
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric not in SUPPORTED_PHOTOMETRIC:
        raise DicomReadError(f"{path}: unsupported photometric interpretation {photometric!r}")

    try:
        n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        raise DicomReadError(f"{path}: NumberOfFrames is not an integer") from None
    shortfall = _pixel_data_shortfall(ds, n_frames)
    if shortfall is not None:
        raise DicomReadError(
            f"{path}: truncated (pixel data holds {shortfall[0]} of the {shortfall[1]} bytes the header describes)"
        )
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
        if any(
            word in str(error).lower() for word in ("less than expected", "truncat", "end of file", "unexpected end")
        ):
            raise DicomReadError(f"{path}: truncated (pixel data ends early: {type(error).__name__})") from error
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
    modality = str(ds.get("Modality", "")).upper()
    sop_class = str(ds.get("SOPClassUID", ""))
    return DicomImage(
        frames=frames,
        frame_indices=indices,
        header=header,
        steps=steps,
        caption=dicom_caption(header),
        burned_in_annotation=str(ds.get("BurnedInAnnotation", "") or "").strip().upper(),
        burned_in_text_likely=modality in BURNED_IN_TEXT_MODALITIES
        or sop_class.startswith(SECONDARY_CAPTURE_SOP_PREFIX),
        identifiers=header_identifiers(ds),
    )


def _pixel_data_shortfall(ds: Any, n_frames: int) -> tuple[int, int] | None:
    """(bytes present, bytes expected) when native (uncompressed) pixel data is shorter than the header says."""
    transfer_syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if "PixelData" not in ds or transfer_syntax is None or transfer_syntax.is_compressed:
        return None
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        samples, bits = int(ds.get("SamplesPerPixel", 1)), int(ds.BitsAllocated)
        photometric = str(ds.get("PhotometricInterpretation", ""))
    except (AttributeError, TypeError, ValueError):
        return None
    pixels = rows * columns * n_frames * samples
    if photometric == "YBR_FULL_422":
        pixels = pixels * 2 // 3  # two chroma samples shared by two pixels
    expected = (pixels + 7) // 8 if bits == 1 else pixels * ((bits + 7) // 8)
    present = len(ds.PixelData)
    return (present, expected) if present < expected else None


def _report_candidates(relative: Path) -> tuple[str, ...]:
    """The report ids that name ``relative``: its path with and without suffix, its name, its stem."""
    return (relative.as_posix(), relative.with_suffix("").as_posix(), relative.name, relative.stem)


def _report_for(relative: Path, reports: dict[str, str]) -> tuple[str, str] | None:
    """(report id, text) of the report naming ``relative``, or None."""
    for candidate in _report_candidates(relative):
        if candidate in reports:
            return candidate, reports[candidate]
    return None


def dicom_image_samples(
    image: DicomImage, relative: Path, report: str | None = None, license_name: str = "unknown"
) -> Iterator[BiomedSample]:
    """BIOMEDICA-format samples (one per frame) from a processed DICOM image.

    A report is scrubbed (:func:`domains.biomed.report_scrubbing.scrub_report_text`, with the file's own
    identifying header values) before it becomes the caption; each sample's JSON (``caption_scrub``) and
    manifest record say that scrubbing ran and how many spans it replaced.

    Args:
        image: Output of :func:`read_dicom_image`.
        relative: The file's path relative to the input root; only its hash enters the sample key.
        report: Caption text from a report; None builds the caption from descriptive header fields.
        license_name: Licence recorded in ``article_license``.
    """
    if report:
        scrubbed = scrub_report_text(report, image.identifiers)
        caption, spans = scrubbed.text, scrubbed.spans_replaced
    else:
        caption, spans = image.caption, 0  # built from allow-listed fields, themselves scrubbed
    caption_source = "report" if report else "dicom header"
    caption_scrub = {"ran": True, "spans_replaced": spans}
    modality_name = MODALITY_NAMES.get(str(image.header.get("Modality", "")), "medical image")
    burned_in = image.burned_in_annotation or "absent"
    for frame, index in zip(image.frames, image.frame_indices):
        key = content_key("dicom", relative, index if len(image.frame_indices) > 1 else None)
        metadata = {
            "image_file_name": f"{key}.jpg",
            "image_size": [int(frame.shape[1]), int(frame.shape[0])],
            "image_panel_type": "single",
            "image_primary_label": ["Clinical Imaging"],
            "image_secondary_label": [modality_name],
            "image_set": "dicom",
            "article_license": license_name,
            "caption_source": caption_source,
            "caption_scrub": caption_scrub,
            "dicom": {
                "header": image.header,
                "frame_index": index,
                "steps": image.steps,
                "burned_in_annotation": burned_in,
                "flags": image.burned_in_flags,
            },  # fmt: skip
        }
        record = {"key": key, "caption_source": caption_source, "caption_scrub": caption_scrub,
                  "burned_in_annotation": burned_in, "flags": image.burned_in_flags}  # fmt: skip
        yield BiomedSample(key=key, image=frame, caption=caption, metadata=metadata, manifest_record=record)


@dataclass
class DicomFolderNotes:
    """What a walk over a DICOM folder found besides its samples (filled when the walk ends)."""

    unmatched_reports: list[str] = field(default_factory=list)
    """Report ids that name no file in the folder (their text is never used or written)."""
    burned_in_skipped: int = 0
    """Files skipped because they declare burned-in text."""


def read_dicom_folder(
    root: str | Path,
    config: DicomChainConfig | None = None,
    reports: dict[str, str] | None = None,
    license_name: str = "unknown",
    skipped: list[SkippedInput] | None = None,
    notes: DicomFolderNotes | None = None,
) -> Iterator[BiomedSample]:
    """Read every DICOM file under ``root`` (recursively) into BIOMEDICA-format samples.

    Files are visited in sorted order. Anything that is not a usable DICOM image is appended to
    ``skipped`` with its reason and the walk continues; so are files that declare burned-in text
    (``BurnedInAnnotation = YES``) unless ``config.include_burned_in``.

    Args:
        root: Folder to search (all files, any suffix: DICOM files often have none).
        config: The DICOM chain settings.
        reports: Optional id → report text (see :func:`domains.biomed.caption_tables.read_reports_csv`),
            scrubbed before use; otherwise the caption is built from descriptive header fields.
        license_name: Licence recorded in each sample's ``article_license``.
        skipped: List that collects :class:`SkippedInput` records.
        notes: Receives the report ids that matched no file, when the walk has ended.

    Yields:
        One sample per selected frame.
    """
    config = config or DicomChainConfig()
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: DICOM input folder not found")
    skipped = skipped if skipped is not None else []
    notes = notes if notes is not None else DicomFolderNotes()
    named: set[str] = set()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root)
        named.update(_report_candidates(relative))
        try:
            image = read_dicom_image(path, config)
        except DicomReadError as error:
            skipped.append(SkippedInput(relative.as_posix(), str(error).removeprefix(f"{path}: ")))
            continue
        if image.burned_in_annotation == "YES" and not config.include_burned_in:
            notes.burned_in_skipped += 1
            skipped.append(SkippedInput(relative.as_posix(), "burned-in annotation (BurnedInAnnotation = YES: "
                                        "identifiers may be readable in the pixels; --dicom.include_burned_in "
                                        "true ingests such files)"))  # fmt: skip
            continue
        found = _report_for(relative, reports) if reports else None
        yield from dicom_image_samples(image, relative, found[1] if found else None, license_name)
    notes.unmatched_reports = sorted(set(reports or {}) - named)
