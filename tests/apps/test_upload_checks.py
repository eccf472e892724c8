"""Upload checks: the content decides the type, the size is re-checked, parsing errors become clear refusals."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from apps.upload_checks import (
    IMAGE_KINDS,
    UploadRejected,
    check_upload,
    decode_dicom,
    decode_image,
    sniff_kind,
)


def encoded(format_name: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (10, 200, 30)).save(buffer, format=format_name)
    return buffer.getvalue()


def test_the_bytes_decide_the_kind() -> None:
    assert sniff_kind(encoded("PNG")) == "png"
    assert sniff_kind(encoded("JPEG")) == "jpeg"
    assert sniff_kind(b"\x00" * 128 + b"DICM" + b"\x02\x00") == "dicom"
    assert sniff_kind(encoded("GIF")) is None
    assert sniff_kind(b"DICM" + b"\x00" * 200) is None  # the marker belongs at offset 128


def test_size_is_checked_on_the_server() -> None:
    data = encoded("PNG")
    assert check_upload(data, IMAGE_KINDS, max_bytes=len(data)) == "png"
    with pytest.raises(UploadRejected, match=f"{len(data):,} bytes; the limit here is {len(data) - 1:,}"):
        check_upload(data, IMAGE_KINDS, max_bytes=len(data) - 1)


def test_an_allowed_kind_outside_this_widgets_list_is_refused(dicom_bytes: bytes) -> None:
    with pytest.raises(UploadRejected, match="is dicom, not one of jpeg, png"):
        check_upload(dicom_bytes, IMAGE_KINDS, max_bytes=10**8)


def test_decoded_image_keeps_its_pixels() -> None:
    image = decode_image(encoded("PNG"))
    assert image.size == (8, 6) and image.getpixel((3, 3)) == (10, 200, 30)


def test_dicom_goes_through_biomeds_chain_without_phi(dicom_bytes: bytes) -> None:
    dicom = decode_dicom(dicom_bytes, image_size=64)
    assert dicom.frames[0].shape == (64, 64, 3)
    assert dicom.header["Modality"] == "CT"
    assert "Doe" not in str(dicom.header) and "MRN0042424242" not in str(dicom.header)


def test_undecodable_dicom_is_refused_without_the_temporary_path(dicom_bytes: bytes) -> None:
    with pytest.raises(UploadRejected) as refused:
        decode_dicom(dicom_bytes[:400])
    assert "the uploaded DICOM file" in str(refused.value) and "explorer-upload-" not in str(refused.value)
