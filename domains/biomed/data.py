"""Transitional: the names ``apps/upload_checks.py`` and ``benchmarks/bench_dicom.py`` still import from here.

The old ``data`` module was split: the DICOM chain is :mod:`domains.biomed.dicom`, BIOMEDICA shards
:mod:`domains.biomed.biomedica`, image folders :mod:`domains.biomed.image_folder`, caption tables
:mod:`domains.biomed.caption_tables`, the sample type and shard writer :mod:`domains.biomed.samples`.
Delete this module once those two callers import from :mod:`domains.biomed.dicom`.
"""

from __future__ import annotations

from domains.biomed.dicom import DicomChainConfig, DicomImage, DicomReadError, read_dicom_folder, read_dicom_image

__all__ = ["DicomChainConfig", "DicomImage", "DicomReadError", "read_dicom_folder", "read_dicom_image"]
