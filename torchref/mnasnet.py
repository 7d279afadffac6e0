"""MNASNet (B1) reference in PyTorch, state_dict-identical to torchvision/models/mnasnet.py.

Paper: Tan et al., "MnasNet: Platform-Aware Neural Architecture Search for Mobile", CVPR 2019.
Depths and stacks come from `flaxnets.mnasnet`. `spatial_dims=1`: Conv1d / BatchNorm1d
(same keys, 1-D shapes), `in_channels`: the stem's input channels. Only torchvision's version 2 layout (scaled
stem) is built; its loader's patching of version-1 checkpoints is not reproduced.
"""
from __future__ import annotations

import torch
from torch import nn

from netspecs.mnasnet import ALPHAS, BN_MOMENTUM, STACKS, get_depths
from torchref import register
from torchref.layers import BN_TYPES, CONV_TYPES, batch_norm_nd, conv_nd, spatial_mean


class _InvertedResidual(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int, expansion: int,
                 spatial_dims: int = 2):
        super().__init__()
        conv, bn = conv_nd(spatial_dims), batch_norm_nd(spatial_dims)
        mid = in_ch * expansion
        self.apply_residual = in_ch == out_ch and stride == 1
        self.layers = nn.Sequential(
            conv(in_ch, mid, 1, bias=False),
            bn(mid, momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
            conv(mid, mid, kernel_size, padding=kernel_size // 2, stride=stride, groups=mid,
                 bias=False),
            bn(mid, momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
            conv(mid, out_ch, 1, bias=False),
            bn(out_ch, momentum=BN_MOMENTUM),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x) + x if self.apply_residual else self.layers(x)


def _stack(in_ch: int, out_ch: int, kernel_size: int, stride: int, expansion: int,
           repeats: int, spatial_dims: int = 2) -> nn.Sequential:
    return nn.Sequential(*[_InvertedResidual(in_ch if i == 0 else out_ch, out_ch, kernel_size,
                                             stride if i == 0 else 1, expansion, spatial_dims)
                           for i in range(repeats)])


class MNASNet(nn.Module):
    _version = 2

    def __init__(self, alpha: float, num_classes: int = 1000, dropout: float = 0.2,
                 spatial_dims: int = 2, in_channels: int = 3):
        super().__init__()
        conv, bn = conv_nd(spatial_dims), batch_norm_nd(spatial_dims)
        d = get_depths(alpha)
        layers = [
            conv(in_channels, d[0], 3, padding=1, stride=2, bias=False),
            bn(d[0], momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
            conv(d[0], d[0], 3, padding=1, stride=1, groups=d[0], bias=False),
            bn(d[0], momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
            conv(d[0], d[1], 1, padding=0, stride=1, bias=False),
            bn(d[1], momentum=BN_MOMENTUM),
        ]
        layers += [_stack(d[i + 1], d[i + 2], *stack, spatial_dims) for i, stack in enumerate(STACKS)]
        layers += [
            conv(d[7], 1280, 1, padding=0, stride=1, bias=False),
            bn(1280, momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
        ]
        self.layers = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True),
                                        nn.Linear(1280, num_classes))
        for m in self.modules():
            if isinstance(m, CONV_TYPES):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, BN_TYPES):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_uniform_(m.weight, mode="fan_out", nonlinearity="sigmoid")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(spatial_mean(self.layers(x)))


def _builder(alpha: float):
    def build(*, num_classes: int = 1000, dropout: float = 0.2, spatial_dims: int = 2,
              in_channels: int = 3) -> MNASNet:
        return MNASNet(alpha, num_classes, dropout, spatial_dims, in_channels)
    return build


for _name, _alpha in ALPHAS.items():
    register(_name, _builder(_alpha))
