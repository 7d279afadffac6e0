"""MNASNet (B1) reference in PyTorch, state_dict-identical to torchvision/models/mnasnet.py.

Paper: Tan et al., "MnasNet: Platform-Aware Neural Architecture Search for Mobile", CVPR 2019.
Depths and stacks come from `flaxnets.mnasnet`. Only torchvision's version 2 layout (scaled
stem) is built; its loader's patching of version-1 checkpoints is not reproduced.
"""
from __future__ import annotations

import torch
from torch import nn

from netspecs.mnasnet import ALPHAS, BN_MOMENTUM, STACKS, get_depths
from torchref import register


class _InvertedResidual(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int, expansion: int):
        super().__init__()
        mid = in_ch * expansion
        self.apply_residual = in_ch == out_ch and stride == 1
        self.layers = nn.Sequential(
            nn.Conv2d(in_ch, mid, 1, bias=False),
            nn.BatchNorm2d(mid, momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, kernel_size, padding=kernel_size // 2, stride=stride, groups=mid,
                      bias=False),
            nn.BatchNorm2d(mid, momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch, momentum=BN_MOMENTUM),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x) + x if self.apply_residual else self.layers(x)


def _stack(in_ch: int, out_ch: int, kernel_size: int, stride: int, expansion: int,
           repeats: int) -> nn.Sequential:
    return nn.Sequential(*[_InvertedResidual(in_ch if i == 0 else out_ch, out_ch, kernel_size,
                                             stride if i == 0 else 1, expansion)
                           for i in range(repeats)])


class MNASNet(nn.Module):
    _version = 2

    def __init__(self, alpha: float, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        d = get_depths(alpha)
        layers = [
            nn.Conv2d(3, d[0], 3, padding=1, stride=2, bias=False),
            nn.BatchNorm2d(d[0], momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
            nn.Conv2d(d[0], d[0], 3, padding=1, stride=1, groups=d[0], bias=False),
            nn.BatchNorm2d(d[0], momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
            nn.Conv2d(d[0], d[1], 1, padding=0, stride=1, bias=False),
            nn.BatchNorm2d(d[1], momentum=BN_MOMENTUM),
        ]
        layers += [_stack(d[i + 1], d[i + 2], *stack) for i, stack in enumerate(STACKS)]
        layers += [
            nn.Conv2d(d[7], 1280, 1, padding=0, stride=1, bias=False),
            nn.BatchNorm2d(1280, momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
        ]
        self.layers = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True),
                                        nn.Linear(1280, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_uniform_(m.weight, mode="fan_out", nonlinearity="sigmoid")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.layers(x).mean([2, 3]))


def _builder(alpha: float):
    def build(*, num_classes: int = 1000, dropout: float = 0.2) -> MNASNet:
        return MNASNet(alpha, num_classes, dropout)
    return build


for _name, _alpha in ALPHAS.items():
    register(_name, _builder(_alpha))
