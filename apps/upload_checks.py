"""Checks on uploaded files: size re-checked on the server, type from the content, parsing guarded.

Streamlit's per-widget limits are enforced only in the browser and its type list checks the file name,
so the explorer trusts neither: the bytes decide what a file is (PNG and JPEG signatures, the DICOM
``DICM`` marker at offset 128), and the uploaded name is never used to build a path.
"""

from __future__ import annotations

import io
import os
import tempfile
from typing import Any

from PIL import Image, UnidentifiedImageError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
DICOM_PREAMBLE_BYTES = 128
DICOM_MAGIC = b"DICM"
IMAGE_KINDS = frozenset({"png", "jpeg"})
MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_DICOM_BYTES = 50 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000
"""Refuse decompression bombs well below Pillow's own warning threshold."""


class UploadRejected(ValueError):
    """An upload the explorer refuses; the message says why, in words a user can act on."""


def sniff_kind(data: bytes) -> str | None:
    """``"png"``, ``"jpeg"`` or ``"dicom"`` from the leading bytes; None for anything else."""
    if data.startswith(PNG_SIGNATURE):
        return "png"
    if data.startswith(JPEG_SIGNATURE):
        return "jpeg"
    if data[DICOM_PREAMBLE_BYTES : DICOM_PREAMBLE_BYTES + len(DICOM_MAGIC)] == DICOM_MAGIC:
        return "dicom"
    return None


def check_upload(data: bytes, allowed: frozenset[str] | set[str], max_bytes: int) -> str:
    """The kind of an upload after the size and content checks.

    Args:
        data: The uploaded bytes.
        allowed: Kinds accepted here (subset of ``png``, ``jpeg``, ``dicom``).
        max_bytes: Largest accepted size in bytes.

    Raises:
        UploadRejected: Empty, too large, or not one of the allowed kinds by its content.
    """
    if not data:
        raise UploadRejected("the uploaded file is empty")
    if len(data) > max_bytes:
        raise UploadRejected(f"the uploaded file has {len(data):,} bytes; the limit here is {max_bytes:,}")
    kind = sniff_kind(data)
    if kind is None or kind not in allowed:
        found = kind or "unrecognised content"
        raise UploadRejected(
            f"the uploaded file is {found}, not one of {', '.join(sorted(allowed))} "
            "(checked from its bytes, whatever its name says)"
        )
    return kind


def decode_image(data: bytes) -> Image.Image:
    """An RGB image from checked PNG/JPEG bytes.

    Raises:
        UploadRejected: Pillow cannot verify or decode it, or it has too many pixels.
    """
    try:
        with Image.open(io.BytesIO(data)) as probe:
            if probe.width * probe.height > MAX_IMAGE_PIXELS:
                raise UploadRejected(f"the image has {probe.width}×{probe.height} pixels; too large to process")
            probe.verify()
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except UploadRejected:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise UploadRejected(f"the uploaded image cannot be decoded ({type(error).__name__}: {error})") from error


def decode_dicom(data: bytes, image_size: int = 224) -> Any:
    """Checked DICOM bytes through biomed's DICOM chain (the one ingest uses); PHI-free header only.

    The bytes go to a temporary file whose name we choose (the chain reads paths); the uploaded file's
    own name is never used.

    Returns:
        ``domains.biomed.dicom.DicomImage`` (frames, allow-listed header, steps, caption).

    Raises:
        UploadRejected: The chain refuses the file (the message no longer names the temporary path).
    """
    from domains.biomed.dicom import DicomChainConfig, DicomReadError, read_dicom_image

    handle, temporary = tempfile.mkstemp(suffix=".dcm", prefix="explorer-upload-")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        return read_dicom_image(temporary, DicomChainConfig(image_size=image_size, frame_policy="middle"))
    except DicomReadError as error:
        raise UploadRejected(str(error).replace(temporary, "the uploaded DICOM file")) from error
    finally:
        os.unlink(temporary)
