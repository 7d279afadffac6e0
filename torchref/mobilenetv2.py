"""MobileNetV2 reference in PyTorch, state_dict-identical to torchvision/models/mobilenetv2.py.

Paper: Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018.
Channel widths come from `flaxnets.mobilenetv2.architecture`. `spatial_dims=1`: Conv1d /
BatchNorm1d (same keys), `in_channels`: the stem's input channels.
"""
from __future__ import annotations

import torch
from torch import nn

from netspecs.mobilenetv2 import BlockSpec, architecture
from torchref import register
from torchref.layers import Conv2dNormActivation, batch_norm_nd, conv_nd, init_mobile_


class InvertedResidual(nn.Module):
    def __init__(self, spec: BlockSpec, spatial_dims: int = 2):
        super().__init__()
        hidden = int(round(spec.inp * spec.expand_ratio))
        self.use_res_connect = spec.stride == 1 and spec.inp == spec.oup
        layers: list[nn.Module] = []
        if spec.expand_ratio != 1:
            layers.append(Conv2dNormActivation(spec.inp, hidden, kernel_size=1,
                                               activation_layer=nn.ReLU6, spatial_dims=spatial_dims))
        layers += [
            Conv2dNormActivation(hidden, hidden, stride=spec.stride, groups=hidden,
                                 activation_layer=nn.ReLU6, spatial_dims=spatial_dims),
            conv_nd(spatial_dims)(hidden, spec.oup, 1, 1, 0, bias=False),
            batch_norm_nd(spatial_dims)(spec.oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, round_nearest: int = 8,
                 dropout: float = 0.2, spatial_dims: int = 2, in_channels: int = 3):
        super().__init__()
        stem, blocks, last = architecture(width_mult, round_nearest)
        self.spatial_dims = spatial_dims
        features: list[nn.Module] = [Conv2dNormActivation(in_channels, stem, stride=2,
                                                          activation_layer=nn.ReLU6,
                                                          spatial_dims=spatial_dims)]
        features += [InvertedResidual(spec, spatial_dims) for spec in blocks]
        features.append(Conv2dNormActivation(blocks[-1].oup, last, kernel_size=1,
                                             activation_layer=nn.ReLU6, spatial_dims=spatial_dims))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(last, num_classes))
        init_mobile_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool = (nn.functional.adaptive_avg_pool2d if self.spatial_dims == 2
                else nn.functional.adaptive_avg_pool1d)
        x = pool(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


@register("mobilenet_v2")
def mobilenet_v2(*, num_classes: int = 1000, width_mult: float = 1.0, round_nearest: int = 8,
                 dropout: float = 0.2, spatial_dims: int = 2, in_channels: int = 3) -> MobileNetV2:
    return MobileNetV2(num_classes, width_mult, round_nearest, dropout, spatial_dims, in_channels)
