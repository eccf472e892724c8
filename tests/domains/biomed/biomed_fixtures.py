"""Test fixtures for the biomed domain: DICOM files written with pydicom, tiny shard sets."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

PHI = {
    "PatientName": "Doe^Jane^Quincy",
    "PatientID": "MRN0042424242",
    "PatientBirthDate": "19610203",
    "PatientAddress": "Elm Street Springfield",
    "InstitutionName": "Mercy General Hospital",
    "AccessionNumber": "ACC98765",
    "StudyDate": "20240105",
    "ReferringPhysicianName": "House^Gregory",
}


def write_dicom(path: Path, pixels: np.ndarray, **attributes: Any) -> Path:
    """Write an uncompressed DICOM file with ``pixels`` (frames × rows × cols or rows × cols, integers)."""
    pixels = np.asarray(pixels)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    frames = pixels if pixels.ndim == 3 else pixels[None]
    ds.Rows, ds.Columns = int(frames.shape[1]), int(frames.shape[2])
    if pixels.ndim == 3:
        ds.NumberOfFrames = int(frames.shape[0])
    signed = np.issubdtype(pixels.dtype, np.signedinteger)
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if signed else 0
    for name, value in attributes.items():
        setattr(ds, name, value)
    ds.PixelData = frames.astype(np.int16 if signed else np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def jpeg_bytes(size: tuple[int, int] = (32, 32), colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A small solid-colour JPEG."""
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def biomedica_sample(key: str, caption: str = "a caption", size: tuple[int, int] = (32, 32), **metadata: Any) -> dict:
    """A raw BIOMEDICA-format sample dict for the core ShardWriter."""
    meta = {"image_size": list(size), "image_primary_label": ["Microscopy"], "image_panel_type": "single",
            "article_license": "CC BY", **metadata}  # fmt: skip
    return {"__key__": key, "jpg": jpeg_bytes(size), "txt": caption, "json": json.dumps(meta)}
