"""Inverted-residual blocks shared by MobileNetV3 and EfficientNet V1/V2, in PyTorch.

torchvision's mobilenetv3 `InvertedResidual` and efficientnet `MBConv` / `FusedMBConv`
(keys `block.N.*`), built from `flaxnets.blocks.BlockSpec.layers()`, the one description of
the layer sequence shared with the Flax side; `spatial_dims` 2 (default) or 1 (`norm_layer` of
the same rank).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from netspecs.blocks import SE, BlockSpec
from torchref.layers import Conv2dNormActivation, SqueezeExcitation, StochasticDepth

ACTS = {"relu": nn.ReLU, "hardswish": nn.Hardswish, "silu": nn.SiLU, "sigmoid": nn.Sigmoid,
        "hardsigmoid": nn.Hardsigmoid}


class InvertedResidual(nn.Module):
    def __init__(self, spec: BlockSpec, norm_layer: Callable[..., nn.Module], spatial_dims: int = 2):
        super().__init__()
        self.use_res_connect = spec.use_res_connect
        layers: list[nn.Module] = []
        cin = spec.in_channels
        for layer in spec.layers():
            if isinstance(layer, SE):
                layers.append(SqueezeExcitation(cin, layer.squeeze, ACTS[layer.act],
                                                ACTS[layer.scale_act], spatial_dims))
            else:
                layers.append(Conv2dNormActivation(
                    cin, layer.out, layer.kernel, layer.stride, groups=layer.groups,
                    dilation=layer.dilation, norm_layer=norm_layer,
                    activation_layer=ACTS[layer.act] if layer.act else None,
                    spatial_dims=spatial_dims))
                cin = layer.out
        self.block = nn.Sequential(*layers)
        if spec.sd_prob is not None:
            self.stochastic_depth = StochasticDepth(spec.sd_prob, "row")
        self.out_channels = spec.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.block(x)
        if self.use_res_connect:
            if hasattr(self, "stochastic_depth"):
                result = self.stochastic_depth(result)
            result = result + x
        return result
