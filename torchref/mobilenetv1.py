"""MobileNetV1 reference in PyTorch (the definition flaxnets converts from; no torchvision twin).

Paper: Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
Applications", 2017 (arXiv:1704.04861), Table 1. state_dict layout, width rounding and defaults
are documented in `flaxnets/mobilenetv1.py` and docs/mobilenet_v1.md; channels come from
`flaxnets.mobilenetv1.architecture`.
"""
from __future__ import annotations

import torch
from torch import nn

from netspecs.mobilenetv1 import WIDTHS, architecture
from torchref import MODELS
from netspecs.registry import register_variants
from torchref.layers import Conv2dNormActivation, init_mobile_


class DepthwiseSeparable(nn.Sequential):
    def __init__(self, inp: int, oup: int, stride: int):
        super().__init__(Conv2dNormActivation(inp, inp, 3, stride, groups=inp),
                         Conv2dNormActivation(inp, oup, 1))


class MobileNetV1(nn.Module):
    def __init__(self, width_mult: float = 1.0, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        stem, blocks = architecture(width_mult)
        self.features = nn.Sequential(Conv2dNormActivation(3, stem, stride=2),
                                      *[DepthwiseSeparable(*b) for b in blocks])
        self.classifier = nn.Sequential(nn.Dropout(p=dropout),
                                        nn.Linear(blocks[-1][1], num_classes))
        init_mobile_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


def build(width_mult: float, *, num_classes: int = 1000, dropout: float = 0.2) -> MobileNetV1:
    return MobileNetV1(width_mult, num_classes, dropout)


register_variants(MODELS, WIDTHS, build)
