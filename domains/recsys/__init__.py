"""Recommender domain: two applications, each with its own library subpackage.

- LLMRec-style graph recommendation with LLM augmentation (:mod:`domains.recsys.llmrec`), run by the commands
  ``python -m domains.recsys.{ingest,train,augment,evaluate,recommend,embed,ablate,noisy_augmentation}``;
- unbiased learning from MNAR implicit feedback (``domains.recsys.mnar``).

:mod:`domains.recsys.recbole_io` (RecBole atomic files) is shared by both.
"""
