"""The tower registry: names → builder functions (timm's ``register_model`` / ``create_model`` pattern)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from torch import nn

TowerBuilder = Callable[..., nn.Module]

_BUILDERS: dict[str, TowerBuilder] = {}

# Built-in towers live in modules with heavy imports (open_clip, transformers, torchvision); they are imported
# the first time one of their towers is created, so light commands and ``--help`` stay fast.
_BUILT_IN_MODULES: dict[str, str] = {
    "open_clip_vision": "shared.towers.open_clip_towers",
    "open_clip_text": "shared.towers.open_clip_towers",
    "hf_text": "shared.towers.hf_text",
    "minilm_text": "shared.towers.hf_text",
    "efficientnet_lite0": "shared.towers.efficientnet_lite",
    "sequence_transformer": "shared.towers.sequence_and_tabular",
    "cnn1d": "shared.towers.sequence_and_tabular",
    "mlp": "shared.towers.sequence_and_tabular",
}


def register_tower(name: str) -> Callable[[TowerBuilder], TowerBuilder]:
    """Decorator registering ``builder`` under ``name``; a second registration of the same name is an error."""

    def decorate(builder: TowerBuilder) -> TowerBuilder:
        existing = _BUILDERS.get(name)
        if existing is not None and existing is not builder:
            qualified = f"{existing.__module__}.{existing.__qualname__}"
            raise ValueError(f"tower {name!r} is already registered by {qualified}")
        _BUILDERS[name] = builder
        return builder

    return decorate


def create_tower(name: str, **kwargs: Any) -> nn.Module:
    """Build the tower registered as ``name`` with its typed keyword arguments.

    The returned module has an ``output_dim`` attribute (feature width before projection).
    """
    if name not in _BUILDERS and name in _BUILT_IN_MODULES:
        importlib.import_module(_BUILT_IN_MODULES[name])
    try:
        builder = _BUILDERS[name]
    except KeyError:
        known = ", ".join(list_towers())
        raise KeyError(f"unknown tower {name!r}; registered towers: {known}") from None
    tower = builder(**kwargs)
    if not isinstance(getattr(tower, "output_dim", None), int):
        raise TypeError(f"tower {name!r} does not expose an integer output_dim")
    return tower


def builtin_towers() -> list[str]:
    """Names of the core's own towers (domains add theirs with :func:`register_tower`), sorted."""
    return sorted(_BUILT_IN_MODULES)


def list_towers() -> list[str]:
    """Names of all registered towers (built-in ones included before their module is imported), sorted."""
    return sorted(set(_BUILDERS) | set(_BUILT_IN_MODULES))
