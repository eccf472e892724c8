"""The tower registry: names → builder functions (timm's ``register_model`` / ``create_model`` pattern)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

TowerBuilder = Callable[..., nn.Module]

_BUILDERS: dict[str, TowerBuilder] = {}


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
    try:
        builder = _BUILDERS[name]
    except KeyError:
        known = ", ".join(sorted(_BUILDERS))
        raise KeyError(f"unknown tower {name!r}; registered towers: {known}") from None
    tower = builder(**kwargs)
    if not isinstance(getattr(tower, "output_dim", None), int):
        raise TypeError(f"tower {name!r} does not expose an integer output_dim")
    return tower


def list_towers() -> list[str]:
    """Names of all registered towers, sorted."""
    return sorted(_BUILDERS)
