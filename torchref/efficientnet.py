"""EfficientNet B0-B7 / V2 S/M/L reference in PyTorch, state_dict-identical to
torchvision/models/efficientnet.py.

Papers: Tan & Le, "EfficientNet", ICML 2019; Tan & Le, "EfficientNetV2", ICML 2021. Block
specs (and the stochastic-depth schedule) come from `flaxnets.efficientnet.EfficientNetConfig`.
`spatial_dims=1`: Conv1d / BatchNorm1d (same keys), `in_channels`: the stem's input channels.
"""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from netspecs.efficientnet import VARIANTS, EfficientNetConfig
from torchref import register
from torchref.blocks import InvertedResidual
from torchref.layers import Conv2dNormActivation, adaptive_avg_pool_nd, batch_norm_nd, init_mobile_


class EfficientNet(nn.Module):
    def __init__(self, config: EfficientNetConfig, dropout: float, stochastic_depth_prob: float = 0.2,
                 num_classes: int = 1000, spatial_dims: int = 2, in_channels: int = 3):
        super().__init__()
        norm_layer = partial(batch_norm_nd(spatial_dims), eps=config.bn_eps,
                             momentum=config.bn_momentum)
        stages = config.blocks(stochastic_depth_prob)
        last_in = stages[-1][-1].out_channels
        head = config.last_channel or 4 * last_in
        layers: list[nn.Module] = [Conv2dNormActivation(in_channels, stages[0][0].in_channels, 3, 2,
                                                        norm_layer=norm_layer, activation_layer=nn.SiLU,
                                                        spatial_dims=spatial_dims)]
        layers += [nn.Sequential(*[InvertedResidual(s, norm_layer, spatial_dims) for s in specs])
                   for specs in stages]
        layers.append(Conv2dNormActivation(last_in, head, 1, norm_layer=norm_layer,
                                           activation_layer=nn.SiLU, spatial_dims=spatial_dims))
        self.features = nn.Sequential(*layers)
        self.avgpool = adaptive_avg_pool_nd(spatial_dims)(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True),
                                        nn.Linear(head, num_classes))
        init_mobile_(self, linear="uniform")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


def _builder(cfg: EfficientNetConfig):
    def build(*, num_classes: int = 1000, dropout: float = cfg.dropout,
              stochastic_depth_prob: float = 0.2, spatial_dims: int = 2,
              in_channels: int = 3) -> EfficientNet:
        return EfficientNet(cfg, dropout, stochastic_depth_prob, num_classes, spatial_dims,
                            in_channels)
    return build


for _name, _cfg in VARIANTS.items():
    register(_name, _builder(_cfg))
