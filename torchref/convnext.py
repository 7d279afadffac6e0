"""ConvNeXt T/S/B/L reference in PyTorch, state_dict-identical to torchvision/models/convnext.py.

Paper: Liu et al., "A ConvNet for the 2020s", CVPR 2022 (arXiv:2201.03545). Stage table and
per-variant stochastic depth defaults from `netspecs.convnext`.
"""
from __future__ import annotations

from functools import partial
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from netspecs.convnext import VARIANTS, ConvNeXtConfig
from netspecs.registry import register_variants
from torchref import MODELS
from torchref.layers import Conv2dNormActivation, StochasticDepth


class LayerNorm2d(nn.LayerNorm):
    """torchvision's LayerNorm2d: LayerNorm over the channels of an NCHW map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Permute(nn.Module):
    """torchvision.ops.misc.Permute."""

    def __init__(self, dims: list[int]):
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.permute(x, self.dims)


class CNBlock(nn.Module):
    def __init__(self, dim: int, layer_scale: float, stochastic_depth_prob: float, eps: float = 1e-6):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim, bias=True),
            Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, eps=eps),
            nn.Linear(dim, 4 * dim, bias=True),
            nn.GELU(),
            nn.Linear(4 * dim, dim, bias=True),
            Permute([0, 3, 1, 2]),
        )
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        result = self.layer_scale * self.block(input)
        result = self.stochastic_depth(result)
        result += input
        return result


class ConvNeXt(nn.Module):
    def __init__(self, config: ConvNeXtConfig, stochastic_depth_prob: float = 0.0,
                 layer_scale: float = 1e-6, num_classes: int = 1000):
        super().__init__()
        norm_layer = partial(LayerNorm2d, eps=config.norm_eps)
        stages = config.stages
        layers: list[nn.Module] = [Conv2dNormActivation(3, stages[0].input_channels, kernel_size=4,
                                                        stride=4, padding=0, norm_layer=norm_layer,
                                                        activation_layer=None, bias=True)]
        for cnf, probs in zip(stages, config.block_probs(stochastic_depth_prob)):
            layers.append(nn.Sequential(*[CNBlock(cnf.input_channels, layer_scale, p, config.norm_eps)
                                          for p in probs]))
            if cnf.out_channels is not None:
                layers.append(nn.Sequential(
                    norm_layer(cnf.input_channels),
                    nn.Conv2d(cnf.input_channels, cnf.out_channels, kernel_size=2, stride=2)))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        head = config.head_channels
        self.classifier = nn.Sequential(norm_layer(head), nn.Flatten(1), nn.Linear(head, num_classes))
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(self.features(x)))


def build(config: ConvNeXtConfig, *, num_classes: int = 1000,
          stochastic_depth_prob: Optional[float] = None, layer_scale: float = 1e-6) -> ConvNeXt:
    """`stochastic_depth_prob=None`: the variant's torchvision default (0.1 T, 0.4 S, 0.5 B/L)."""
    if stochastic_depth_prob is None:
        stochastic_depth_prob = config.stochastic_depth_prob
    return ConvNeXt(config, stochastic_depth_prob, layer_scale, num_classes)


register_variants(MODELS, VARIANTS, build)
