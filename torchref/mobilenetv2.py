"""MobileNetV2 reference in PyTorch, state_dict-identical to torchvision/models/mobilenetv2.py.

Paper: Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018.
Channel widths come from `flaxnets.mobilenetv2.architecture`.
"""
from __future__ import annotations

import torch
from torch import nn

from netspecs.mobilenetv2 import BlockSpec, architecture
from torchref import register
from torchref.layers import Conv2dNormActivation


class InvertedResidual(nn.Module):
    def __init__(self, spec: BlockSpec):
        super().__init__()
        hidden = int(round(spec.inp * spec.expand_ratio))
        self.use_res_connect = spec.stride == 1 and spec.inp == spec.oup
        layers: list[nn.Module] = []
        if spec.expand_ratio != 1:
            layers.append(Conv2dNormActivation(spec.inp, hidden, kernel_size=1,
                                               activation_layer=nn.ReLU6))
        layers += [
            Conv2dNormActivation(hidden, hidden, stride=spec.stride, groups=hidden,
                                 activation_layer=nn.ReLU6),
            nn.Conv2d(hidden, spec.oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(spec.oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, round_nearest: int = 8,
                 dropout: float = 0.2):
        super().__init__()
        stem, blocks, last = architecture(width_mult, round_nearest)
        features: list[nn.Module] = [Conv2dNormActivation(3, stem, stride=2,
                                                          activation_layer=nn.ReLU6)]
        features += [InvertedResidual(spec) for spec in blocks]
        features.append(Conv2dNormActivation(blocks[-1].oup, last, kernel_size=1,
                                             activation_layer=nn.ReLU6))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(last, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


@register("mobilenet_v2")
def mobilenet_v2(*, num_classes: int = 1000, width_mult: float = 1.0, round_nearest: int = 8,
                 dropout: float = 0.2) -> MobileNetV2:
    return MobileNetV2(num_classes, width_mult, round_nearest, dropout)
