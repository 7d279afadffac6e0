"""MobileNetV2 in Flax.

Paper: Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018
(arXiv:1801.04381), Table 2. Follows torchvision/models/mobilenetv2.py (module paths
`features.N` with `features.N.conv.*` inside inverted residuals, `classifier.{0,1}`).
`spatial_dims=1` builds the same network for (N, L, C) signals; `in_channels` the stem's input.
"""
from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn

from flaxnets import register
from flaxnets.layers import (BatchNorm2d, Conv2d, ConvBNAct, Linear, check_input, relu6,
                             spatial_mean)
from netspecs.mobilenetv2 import BlockSpec, architecture


class _InvertedResidualConv(nn.Module):
    """The `conv` Sequential: [expand ConvBNAct], depthwise ConvBNAct, project conv, BN."""

    spec: BlockSpec
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        sp, i = self.spec, 0
        hidden = int(round(sp.inp * sp.expand_ratio))
        if sp.expand_ratio != 1:
            x = ConvBNAct(hidden, 1, act=relu6, dtype=self.dtype, name="0")(x, train)
            i = 1
        x = ConvBNAct(hidden, 3, sp.stride, groups=hidden, act=relu6, dtype=self.dtype,
                      name=str(i))(x, train)
        x = Conv2d(sp.oup, 1, dtype=self.dtype, name=str(i + 1))(x)
        return BatchNorm2d(dtype=self.dtype, name=str(i + 2))(x, train)


class InvertedResidual(nn.Module):
    spec: BlockSpec
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        y = _InvertedResidualConv(self.spec, self.dtype, name="conv")(x, train)
        residual = self.spec.stride == 1 and self.spec.inp == self.spec.oup
        return x + y if residual else y


class _Features(nn.Module):
    stem: int
    blocks: tuple[BlockSpec, ...]
    last: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = ConvBNAct(self.stem, 3, 2, act=relu6, dtype=self.dtype, name="0")(x, train)
        for i, spec in enumerate(self.blocks, start=1):
            x = InvertedResidual(spec, self.dtype, name=str(i))(x, train)
        return ConvBNAct(self.last, 1, act=relu6, dtype=self.dtype,
                         name=str(len(self.blocks) + 1))(x, train)


class Classifier(nn.Module):
    """Sequential(Dropout "0", Linear "1"), as in torchvision's MobileNetV2 / MNASNet."""

    num_classes: int
    dropout: float
    kernel_init: Any = nn.initializers.normal(0.01)
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Dropout(self.dropout, name="0")(x, deterministic=not train)
        return Linear(self.num_classes, dtype=self.dtype, kernel_init=self.kernel_init,
                      bias_init=nn.initializers.zeros, name="1")(x)


class MobileNetV2(nn.Module):
    # backbone (flaxnets.features): the last module of `features` at each resolution (torchvision's detection
    # backbones take `features.N` too)
    feature_modules: ClassVar = ("features.*",)
    classifier: ClassVar = "classifier.1"

    num_classes: int = 1000
    width_mult: float = 1.0
    round_nearest: int = 8
    dropout: float = 0.2
    dtype: Any = None
    spatial_dims: int = 2
    in_channels: int = 3

    @nn.compact
    def __call__(self, x, train: bool = False):
        check_input(x, self.spatial_dims, self.in_channels, "MobileNetV2")
        stem, blocks, last = architecture(self.width_mult, self.round_nearest)
        x = _Features(stem, blocks, last, self.dtype, name="features")(x, train)
        x = spatial_mean(x)
        return Classifier(self.num_classes, self.dropout, dtype=self.dtype,
                          name="classifier")(x, train)


@register("mobilenet_v2")
def mobilenet_v2(*, num_classes: int = 1000, width_mult: float = 1.0, round_nearest: int = 8,
                 dropout: float = 0.2, spatial_dims: int = 2, in_channels: int = 3,
                 dtype: Any = None) -> MobileNetV2:
    return MobileNetV2(num_classes, width_mult, round_nearest, dropout, dtype, spatial_dims,
                       in_channels)
