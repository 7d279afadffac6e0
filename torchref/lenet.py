"""LeNet-5 reference in PyTorch (LeCun et al., Proc. IEEE 1998; modern ReLU / max-pool form).

There is no torchvision LeNet: this module defines the state_dict layout (conv1, conv2, fc1,
fc2, fc3; see `flaxnets/lenet.py` and docs/lenet5.md). 32x32 inputs only.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from netspecs.lenet import VARIANTS, LeNetConfig
from torchref import MODELS
from netspecs.registry import register_variants


class LeNet(nn.Module):
    def __init__(self, cfg: LeNetConfig, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        (c1, c3), k, (f5, f6) = cfg.conv_channels, cfg.kernel_size, cfg.fc_features
        side = ((cfg.input_size - k + 1) // 2 - k + 1) // 2
        self.conv1 = nn.Conv2d(in_channels, c1, k)
        self.conv2 = nn.Conv2d(c1, c3, k)
        self.fc1 = nn.Linear(c3 * side * side, f5)
        self.fc2 = nn.Linear(f5, f6)
        self.fc3 = nn.Linear(f6, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def build(cfg: LeNetConfig, *, num_classes: int = 10, in_channels: int = 3) -> LeNet:
    return LeNet(cfg, num_classes, in_channels)


register_variants(MODELS, VARIANTS, build)
