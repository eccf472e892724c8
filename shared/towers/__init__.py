"""Towers: modules turning one modality's batch into features, created by name from a registry.

The built-in towers are: ``open_clip_vision``, ``open_clip_text``, ``hf_text``,
``minilm_text``, ``efficientnet_lite0``, ``sequence_transformer``, ``cnn1d`` and ``mlp`` (their modules are imported on first use). Domains register
their own with :func:`register_tower`.
"""

from shared.towers._registry import builtin_towers, create_tower, list_towers, register_tower
from shared.towers.locking import layer_groups, lock_tower, trainable_parameter_count

__all__ = [
    "builtin_towers",
    "create_tower",
    "layer_groups",
    "list_towers",
    "lock_tower",
    "register_tower",
    "trainable_parameter_count",
]
