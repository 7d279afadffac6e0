"""Inverted-residual blocks shared by MobileNetV3 and EfficientNet V1/V2, in Flax.

MobileNetV3's bneck (Howard et al. 2019, "Searching for MobileNetV3"), EfficientNet's MBConv
(Tan & Le 2019, "EfficientNet") and EfficientNetV2's FusedMBConv (Tan & Le 2021,
"EfficientNetV2"). Follows torchvision/models/mobilenetv3.py `InvertedResidual` and
torchvision/models/efficientnet.py `MBConv` / `FusedMBConv`: each is a `block` Sequential
("0", "1", ...) plus an optional residual, so one spec and one module cover all three.
`torchref/blocks.py` builds the same `block` from the same `BlockSpec.layers()`.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn

from flaxnets.layers import (ConvBNAct, SqueezeExcitation, hardsigmoid, hardswish, relu, sigmoid,
                             silu, stochastic_depth)
from netspecs.blocks import SE, BlockSpec

ACTS = {"relu": relu, "hardswish": hardswish, "silu": silu, "sigmoid": sigmoid,
        "hardsigmoid": hardsigmoid}


class _Block(nn.Module):
    spec: BlockSpec
    bn_eps: float
    bn_momentum: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        for i, layer in enumerate(self.spec.layers()):
            if isinstance(layer, SE):
                x = SqueezeExcitation(layer.squeeze, ACTS[layer.act], ACTS[layer.scale_act],
                                      dtype=self.dtype, name=str(i))(x)
            else:
                x = ConvBNAct(layer.out, layer.kernel, layer.stride, dilation=layer.dilation,
                              groups=layer.groups, act=ACTS.get(layer.act),
                              bn_eps=self.bn_eps, bn_momentum=self.bn_momentum,
                              dtype=self.dtype, name=str(i))(x, train)
        return x


class InvertedResidual(nn.Module):
    """`block` (+ stochastic depth and the identity when stride 1 and in == out)."""

    spec: BlockSpec
    bn_eps: float
    bn_momentum: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        y = _Block(self.spec, self.bn_eps, self.bn_momentum, self.dtype, name="block")(x, train)
        if self.spec.use_res_connect:
            y = stochastic_depth(y, self.spec.sd_prob or 0.0, train, self) + x
        return y
