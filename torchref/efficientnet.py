"""EfficientNet B0-B7 / V2 S/M/L reference in PyTorch, state_dict-identical to
torchvision/models/efficientnet.py.

Papers: Tan & Le, "EfficientNet", ICML 2019; Tan & Le, "EfficientNetV2", ICML 2021. Block
specs (and the stochastic-depth schedule) come from `flaxnets.efficientnet.EfficientNetConfig`.
"""
from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn

from netspecs.efficientnet import VARIANTS, EfficientNetConfig
from torchref import register
from torchref.blocks import InvertedResidual
from torchref.layers import Conv2dNormActivation


class EfficientNet(nn.Module):
    def __init__(self, config: EfficientNetConfig, dropout: float, stochastic_depth_prob: float = 0.2,
                 num_classes: int = 1000):
        super().__init__()
        norm_layer = partial(nn.BatchNorm2d, eps=config.bn_eps, momentum=config.bn_momentum)
        stages = config.blocks(stochastic_depth_prob)
        last_in = stages[-1][-1].out_channels
        head = config.last_channel or 4 * last_in
        layers: list[nn.Module] = [Conv2dNormActivation(3, stages[0][0].in_channels, 3, 2,
                                                        norm_layer=norm_layer, activation_layer=nn.SiLU)]
        layers += [nn.Sequential(*[InvertedResidual(s, norm_layer) for s in specs]) for specs in stages]
        layers.append(Conv2dNormActivation(last_in, head, 1, norm_layer=norm_layer,
                                           activation_layer=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True),
                                        nn.Linear(head, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                r = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -r, r)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


def _builder(cfg: EfficientNetConfig):
    def build(*, num_classes: int = 1000, dropout: float = cfg.dropout,
              stochastic_depth_prob: float = 0.2) -> EfficientNet:
        return EfficientNet(cfg, dropout, stochastic_depth_prob, num_classes)
    return build


for _name, _cfg in VARIANTS.items():
    register(_name, _builder(_cfg))
