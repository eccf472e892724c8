"""Biomed domain: BiomedCLIP / BMCA-CLIP style contrastive pretraining on BIOMEDICA-format shards, with DICOM input.

Rooms: ``data`` (DICOM chain, BIOMEDICA samples, filters, HF streaming URLs), ``model`` (open_clip models
from configs-as-data, validation, loading, locking, WiSE-FT), ``demo`` (built-in corpus), and the commands
``ingest``, ``pretrain``, ``evaluate``, ``export``, ``embed`` (``python -m domains.biomed.<command> --help``).
"""
