"""Recommender domain: LLMRec-style graph recommendation with LLM augmentation (and MNAR estimators)."""
