"""SqueezeNet 1.0 / 1.1 reference in PyTorch, state_dict-identical to
torchvision/models/squeezenet.py.

Paper: Iandola et al., arXiv:1602.07360. Layer tables come from `flaxnets.squeezenet.VARIANTS`.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import init

from netspecs.squeezenet import M, VARIANTS, SqueezeNetConfig
from torchref import MODELS
from netspecs.registry import register_variants


class Fire(nn.Module):
    def __init__(self, inplanes: int, squeeze_planes: int, expand1x1_planes: int,
                 expand3x3_planes: int):
        super().__init__()
        self.squeeze = nn.Conv2d(inplanes, squeeze_planes, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze_planes, expand1x1_planes, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze_planes, expand3x3_planes, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat([self.expand1x1_activation(self.expand1x1(x)),
                          self.expand3x3_activation(self.expand3x3(x))], 1)


class SqueezeNet(nn.Module):
    def __init__(self, cfg: SqueezeNetConfig, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        channels, k = cfg.stem
        layers: list[nn.Module] = [nn.Conv2d(3, channels, kernel_size=k, stride=2),
                                   nn.ReLU(inplace=True)]
        for spec in cfg.layers:
            if spec == M:
                layers.append(nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True))
            else:
                layers.append(Fire(channels, *spec))
                channels = spec[1] + spec[2]
        self.features = nn.Sequential(*layers)
        final_conv = nn.Conv2d(channels, num_classes, kernel_size=1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), final_conv, nn.ReLU(inplace=True),
                                        nn.AdaptiveAvgPool2d((1, 1)))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if m is final_conv:
                    init.normal_(m.weight, mean=0.0, std=0.01)
                else:
                    init.kaiming_uniform_(m.weight)
                init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


def build(cfg: SqueezeNetConfig, *, num_classes: int = 1000, dropout: float = 0.5) -> SqueezeNet:
    return SqueezeNet(cfg, num_classes, dropout)


register_variants(MODELS, VARIANTS, build)
