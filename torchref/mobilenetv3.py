"""MobileNetV3 reference in PyTorch, state_dict-identical to torchvision/models/mobilenetv3.py.

Paper: Howard et al., "Searching for MobileNetV3", ICCV 2019. Block specs come from
`flaxnets.mobilenetv3.mobilenet_v3_conf`, the one place the tables are written.
`spatial_dims=1`: Conv1d / BatchNorm1d (same keys), `in_channels`: the stem's input channels.
"""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from netspecs.blocks import BlockSpec
from netspecs.mobilenetv3 import BN_EPS, BN_MOMENTUM, VARIANTS, mobilenet_v3_conf
from torchref import register
from torchref.blocks import InvertedResidual
from torchref.layers import Conv2dNormActivation, adaptive_avg_pool_nd, batch_norm_nd, init_mobile_


class MobileNetV3(nn.Module):
    def __init__(self, specs: tuple[BlockSpec, ...], last_channel: int, num_classes: int = 1000,
                 dropout: float = 0.2, spatial_dims: int = 2, in_channels: int = 3):
        super().__init__()
        norm_layer = partial(batch_norm_nd(spatial_dims), eps=BN_EPS, momentum=BN_MOMENTUM)
        first, last_in = specs[0].in_channels, specs[-1].out_channels
        layers: list[nn.Module] = [Conv2dNormActivation(in_channels, first, 3, 2, norm_layer=norm_layer,
                                                        activation_layer=nn.Hardswish,
                                                        spatial_dims=spatial_dims)]
        layers += [InvertedResidual(spec, norm_layer, spatial_dims) for spec in specs]
        layers.append(Conv2dNormActivation(last_in, 6 * last_in, 1, norm_layer=norm_layer,
                                           activation_layer=nn.Hardswish, spatial_dims=spatial_dims))
        self.features = nn.Sequential(*layers)
        self.avgpool = adaptive_avg_pool_nd(spatial_dims)(1)
        self.classifier = nn.Sequential(
            nn.Linear(6 * last_in, last_channel),
            nn.Hardswish(inplace=True),
            nn.Dropout(p=dropout, inplace=True),
            nn.Linear(last_channel, num_classes),
        )
        init_mobile_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


def _builder(name: str):
    def build(*, num_classes: int = 1000, dropout: float = 0.2, width_mult: float = 1.0,
              reduced_tail: bool = False, dilated: bool = False, spatial_dims: int = 2,
              in_channels: int = 3) -> MobileNetV3:
        specs, last = mobilenet_v3_conf(name, width_mult, reduced_tail, dilated)
        return MobileNetV3(specs, last, num_classes=num_classes, dropout=dropout,
                           spatial_dims=spatial_dims, in_channels=in_channels)
    return build


for _name in VARIANTS:
    register(_name, _builder(_name))
