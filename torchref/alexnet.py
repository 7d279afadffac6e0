"""AlexNet reference in PyTorch, state_dict-identical to torchvision/models/alexnet.py.

Paper: Krizhevsky et al., NeurIPS 2012 (one-tower form, arXiv:1404.5997). The convolution
table is `flaxnets.alexnet.CONVS`.
"""
from __future__ import annotations

import torch
from torch import nn

from netspecs.alexnet import CONVS
from torchref import register


class AlexNet(nn.Module):
    def __init__(self, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for c in CONVS:
            layers += [nn.Conv2d(cin, c.features, c.kernel_size, c.stride, c.padding),
                       nn.ReLU(inplace=True)]
            if c.pool:
                layers.append(nn.MaxPool2d(kernel_size=3, stride=2))
            cin = c.features
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(cin * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(p=dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@register("alexnet")
def alexnet(*, num_classes: int = 1000, dropout: float = 0.5) -> AlexNet:
    return AlexNet(num_classes, dropout)
