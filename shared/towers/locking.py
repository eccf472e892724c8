"""Freezing towers, whole or all but their last N layers (open_clip's ``--lock-*-unlocked-layers``)."""

from __future__ import annotations

from torch import nn


def layer_groups(tower: nn.Module) -> list[nn.Module]:
    """The tower's ordered layers, used for partial unlocking.

    A tower may define ``layer_groups()`` itself; otherwise the longest ``nn.ModuleList`` or ``nn.Sequential``
    inside it (transformer blocks, conv stages) is taken as its layer stack.
    """
    custom = getattr(tower, "layer_groups", None)
    if callable(custom):
        return list(custom())
    best: list[nn.Module] = []
    for module in tower.modules():
        if isinstance(module, (nn.ModuleList, nn.Sequential)) and len(module) > len(best):
            best = list(module)
    return best


def lock_tower(tower: nn.Module, unlocked_last_n: int = 0, freeze_norm_stats: bool = True) -> nn.Module:
    """Freeze ``tower``'s parameters except those of its last ``unlocked_last_n`` layers.

    Args:
        tower: the module to lock (changed in place and returned).
        unlocked_last_n: number of trailing layers from :func:`layer_groups` left trainable.
        freeze_norm_stats: keep BatchNorm running statistics fixed in the locked part (eval mode),
            as open_clip does for locked image towers.
    """
    for parameter in tower.parameters():
        parameter.requires_grad = False
    if unlocked_last_n > 0:
        groups = layer_groups(tower)
        if not groups:
            raise ValueError(f"{type(tower).__name__} has no layer stack to partly unlock")
        for group in groups[-unlocked_last_n:]:
            for parameter in group.parameters():
                parameter.requires_grad = True
    if freeze_norm_stats:
        tower.locked_batchnorms = [  # type: ignore[attr-defined]
            module
            for module in tower.modules()
            if isinstance(module, nn.modules.batchnorm._BatchNorm)
            and not any(p.requires_grad for p in module.parameters())
        ]
        for module in tower.locked_batchnorms:  # type: ignore[attr-defined]
            module.eval()
            module.train = _stay_in_eval.__get__(module)  # type: ignore[method-assign]
    return tower


def _stay_in_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    """Replacement ``train`` for locked BatchNorm layers: they stay in eval mode."""
    return nn.Module.train(self, False)


def trainable_parameter_count(module: nn.Module) -> int:
    """Number of parameters with ``requires_grad``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
