"""VGG reference in PyTorch, state_dict-identical to torchvision/models/vgg.py.

Paper: Simonyan & Zisserman, ICLR 2015, Table 1. Configurations come from
`flaxnets.vgg.VARIANTS`.
"""
from __future__ import annotations

import torch
from torch import nn

from netspecs.vgg import M, VARIANTS, VGGConfig
from torchref import MODELS
from netspecs.registry import register_variants


def make_layers(cfg: VGGConfig) -> nn.Sequential:
    layers: list[nn.Module] = []
    cin = 3
    for v in cfg.layers:
        if v == M:
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(cin, v, kernel_size=3, padding=1))
        if cfg.batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        cin = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    def __init__(self, cfg: VGGConfig, num_classes: int = 1000, init_weights: bool = True,
                 dropout: float = 0.5):
        super().__init__()
        self.features = make_layers(cfg)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes))
        if init_weights:
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    nn.init.constant_(m.bias, 0)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)
                elif isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0, 0.01)
                    nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def build(cfg: VGGConfig, *, num_classes: int = 1000, init_weights: bool = True, dropout: float = 0.5) -> VGG:
    return VGG(cfg, num_classes, init_weights, dropout)


register_variants(MODELS, VARIANTS, build)
