"""The shared contrastive core: towers, contrastive model and loss, trainer, shards, evaluation, store.

Nothing domain-specific lives here; domains build on these pieces (see docs/core_api.md).
"""
