"""VGG configurations: Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale
Image Recognition", ICLR 2015, Table 1 (A, B, D, E; `_bn` adds BatchNorm after every conv).
"""
from __future__ import annotations

import dataclasses
from typing import Union

M = "M"  # MaxPool2d(2, 2)


@dataclasses.dataclass(frozen=True)
class VGGConfig:
    layers: tuple[Union[int, str], ...]  # 3x3 conv widths and "M" max pools
    batch_norm: bool = False


# Simonyan & Zisserman 2015, Table 1.
A = (64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M)
B = (64, 64, M, 128, 128, M, 256, 256, M, 512, 512, M, 512, 512, M)
D = (64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M)
E = (64, 64, M, 128, 128, M, 256, 256, 256, 256, M, 512, 512, 512, 512, M, 512, 512, 512, 512, M)
VARIANTS: dict[str, VGGConfig] = {
    "vgg11": VGGConfig(A), "vgg11_bn": VGGConfig(A, True),
    "vgg13": VGGConfig(B), "vgg13_bn": VGGConfig(B, True),
    "vgg16": VGGConfig(D), "vgg16_bn": VGGConfig(D, True),
    "vgg19": VGGConfig(E), "vgg19_bn": VGGConfig(E, True),
}
