"""FND-CLIP multimodal fake-news detection (Zhou et al., ICME 2023) on the suite's core.

Commands (``python -m domains.news.<command>``; each parses its flags, calls the library, prints what it
wrote and what to run next): ``ingest``, ``train``, ``evaluate``, ``detect``, ``embed``, ``ablate``.

Library modules (no command line):

- :mod:`~domains.news.data`: raw layouts (FakeNewsNet, Fakeddit, Weibo, JSONL) → posts → shards;
- :mod:`~domains.news.demo`: the built-in out-of-context set, made offline from emoji art and names;
- :mod:`~domains.news.ingestion`: the configured input → shards (what ``ingest`` runs);
- :mod:`~domains.news.model`: the FND-CLIP modules and towers, the head settings;
- :mod:`~domains.news.frozen_encoders`: the frozen text/image/CLIP encoders and the stand-in CLIP's fitting;
- :mod:`~domains.news.feature_cache`: frozen features of a shard folder, computed once and cached;
- :mod:`~domains.news.splits`: the train/val/test split, the same everywhere;
- :mod:`~domains.news.detector_training`: training with validation selection (what ``train`` runs);
- :mod:`~domains.news.detector_metrics`: metrics on a split (what ``evaluate`` runs);
- :mod:`~domains.news.trained_detector`: saving and loading a trained detector's run folder;
- :mod:`~domains.news.post_scoring`: scoring and explaining posts (what ``detect`` and the explorer run);
- :mod:`~domains.news.store_export`: vectors and scores into the embedding store (what ``embed`` runs);
- :mod:`~domains.news.ablation_study`: variants × seeds with 95% intervals (what ``ablate`` runs).
"""
