"""RegNetX / RegNetY reference in PyTorch, state_dict-identical to torchvision/models/regnet.py.

Paper: Radosavovic et al., "Designing Network Design Spaces", CVPR 2020. Stage widths come
from `flaxnets.regnet.RegNetParams.stages`, the one place the design rule is written.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Optional

import torch
from torch import nn

from netspecs.regnet import VARIANTS, RegNetParams, StageSpec
from torchref import MODELS
from netspecs.registry import register_variants
from torchref.layers import Conv2dNormActivation, SqueezeExcitation


class BottleneckTransform(nn.Sequential):
    def __init__(self, width_in: int, width_out: int, stride: int, group_width: int,
                 bottleneck_multiplier: float, se_ratio: Optional[float]):
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        w_b = int(round(width_out * bottleneck_multiplier))
        g = w_b // group_width
        layers["a"] = Conv2dNormActivation(width_in, w_b, kernel_size=1)
        layers["b"] = Conv2dNormActivation(w_b, w_b, kernel_size=3, stride=stride, groups=g)
        if se_ratio:
            layers["se"] = SqueezeExcitation(w_b, int(round(se_ratio * width_in)))
        layers["c"] = Conv2dNormActivation(w_b, width_out, kernel_size=1, activation_layer=None)
        super().__init__(layers)


class ResBottleneckBlock(nn.Module):
    def __init__(self, width_in: int, width_out: int, stride: int, group_width: int,
                 bottleneck_multiplier: float, se_ratio: Optional[float]):
        super().__init__()
        self.proj = None
        if width_in != width_out or stride != 1:
            self.proj = Conv2dNormActivation(width_in, width_out, kernel_size=1, stride=stride,
                                             activation_layer=None)
        self.f = BottleneckTransform(width_in, width_out, stride, group_width,
                                     bottleneck_multiplier, se_ratio)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x):
        shortcut = self.proj(x) if self.proj is not None else x
        return self.activation(shortcut + self.f(x))


class AnyStage(nn.Sequential):
    def __init__(self, width_in: int, spec: StageSpec, se_ratio: Optional[float], index: int):
        super().__init__()
        for i in range(spec.depth):
            self.add_module(f"block{index}-{i}", ResBottleneckBlock(
                width_in if i == 0 else spec.width, spec.width, spec.stride if i == 0 else 1,
                spec.group_width, spec.bottleneck_multiplier, se_ratio))


class RegNet(nn.Module):
    def __init__(self, config: RegNetParams, num_classes: int = 1000, stem_width: int = 32):
        super().__init__()
        self.stem = Conv2dNormActivation(3, stem_width, kernel_size=3, stride=2)
        width = stem_width
        stages = []
        for s, spec in enumerate(config.stages(), start=1):
            stages.append((f"block{s}", AnyStage(width, spec, config.se_ratio, s)))
            width = spec.width
        self.trunk_output = nn.Sequential(OrderedDict(stages))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, mean=0.0, std=math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, mean=0.0, std=0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.trunk_output(self.stem(x))
        return self.fc(self.avgpool(x).flatten(start_dim=1))


def build(cfg: RegNetParams, *, num_classes: int = 1000, stem_width: int = 32) -> RegNet:
    return RegNet(cfg, num_classes=num_classes, stem_width=stem_width)


register_variants(MODELS, VARIANTS, build)
