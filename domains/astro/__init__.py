"""AstroM3-style trimodal contrastive learning: light curves, spectra and catalogue metadata of variable stars.

Library modules: ``lightcurve_readers`` (ASAS-SN ``.dat`` and generic light-curve tables),
``spectrum_readers`` (LAMOST FITS), ``catalogue`` (the ASAS-SN/Gaia catalogue, spectrum index, feature
transforms, cross-matching), ``period_search`` (Lomb–Scargle periods), ``preprocessing`` (AstroM3's
normalisation, splits, label subsets), ``shard_samples`` (one ingested object and its shard sample),
``datasets`` (the torch datasets and batches of an ingest folder), ``ingest_pipeline`` (raw files → shards
and splits), ``model`` (towers, CLIP model, classifier), ``training_budget`` (epoch budgets),
``clip_pretraining``, ``classifier_finetuning``, ``classifier_evaluation``, ``embedding_export`` (the
store), ``paper_table`` (the paper's results table), ``downstream`` (similarity, anomalies, label errors),
``demo`` (built-in star set), ``input_errors``. Commands: ``ingest``, ``pretrain``, ``finetune``,
``evaluate``, ``embed``, ``table`` (``python -m domains.astro.<command> --help``).
"""
