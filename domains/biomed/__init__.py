"""Biomed domain: BiomedCLIP / BMCA-CLIP style contrastive pretraining on BIOMEDICA-format shards, with DICOM input.

Library modules: ``samples`` (the sample type, the shard writer), ``dicom`` (the DICOM chain, PHI-free
header), ``image_folder`` and ``caption_tables`` (image folders, report/caption tables), ``biomedica``
(BIOMEDICA samples, filters, streams, HF streaming URLs), ``open_clip_loading`` (open_clip configs as data,
validation, loading), ``model`` (the trainer's model on the core contrastive model, locking, WiSE-FT,
loading trained models), ``training`` (the pretraining run), ``evaluation``, ``export_open_clip``,
``embedding``, ``demo`` (built-in corpus). Commands: ``ingest``, ``pretrain``, ``evaluate``, ``export``,
``embed`` (``python -m domains.biomed.<command> --help``).
"""
