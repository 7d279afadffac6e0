"""MobileNetV1 in Flax (not in torchvision; laid out the torchvision way).

Paper: Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
Applications", 2017 (arXiv:1704.04861), Table 1 body and the width multiplier alpha of Sec. 3.3.
Module structure follows torchvision's MobileNetV2 (torchvision/models/mobilenetv2.py):

    features.0                 stem: Conv2dNormActivation(3, 32a, 3x3, stride 2), ReLU
        features.0.0.weight        conv
        features.0.1.*             BatchNorm2d (weight, bias, running_mean, running_var,
                                   num_batches_tracked)
    features.1 .. features.13  depthwise-separable blocks, Sequential of two
                               Conv2dNormActivation, each conv -> BN -> ReLU:
        features.N.0.0.weight      3x3 depthwise conv (groups = in channels), (C, 1, 3, 3)
        features.N.0.1.*           its BatchNorm2d
        features.N.1.0.weight      1x1 pointwise conv, (C_out, C, 1, 1)
        features.N.1.1.*           its BatchNorm2d
    (global average pool)
    classifier.0               Dropout(dropout), no parameters
    classifier.1.weight/bias   Linear(1024a, num_classes)

Convolutions have no bias. Blocks 1..13 output 64, 128/s2, 128, 256/s2, 256, 512/s2, 5x512,
1024/s2, 1024 channels (Table 1 prints stride 2 for the last depthwise conv, a typo: its input
and output are both 7x7, so it is stride 1 here). Width multiplier a: every layer has
`make_divisible(c * a, 8)` channels (torchvision's rounding; exact for a in {1, 0.75, 0.5,
0.25}). Torch defaults elsewhere: BN eps 1e-5, momentum 0.1; ReLU (not ReLU6); dropout 0.2 by
default as in torchvision's MobileNets; init as torchvision's MobileNetV2.
"""
from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from flaxnets import MODELS
from netspecs.registry import register_variants
from flaxnets.layers import ConvBNAct
from flaxnets.mobilenetv2 import Classifier

from netspecs.mobilenetv1 import WIDTHS, architecture

class DepthwiseSeparable(nn.Module):
    features: int
    stride: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        c = x.shape[-1]
        x = ConvBNAct(c, 3, self.stride, groups=c, dtype=self.dtype, name="0")(x, train)
        return ConvBNAct(self.features, 1, dtype=self.dtype, name="1")(x, train)


class _Features(nn.Module):
    width_mult: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        stem, blocks = architecture(self.width_mult)
        x = ConvBNAct(stem, 3, 2, dtype=self.dtype, name="0")(x, train)
        for i, (_, oup, s) in enumerate(blocks, start=1):
            x = DepthwiseSeparable(oup, s, self.dtype, name=str(i))(x, train)
        return x


class MobileNetV1(nn.Module):
    # backbone (flaxnets.features): the last module of `features` at each resolution
    feature_modules: ClassVar = ("features.*",)
    classifier: ClassVar = "classifier.1"

    width_mult: float = 1.0
    num_classes: int = 1000
    dropout: float = 0.2
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = _Features(self.width_mult, self.dtype, name="features")(x, train)
        x = jnp.mean(x, axis=(1, 2))
        return Classifier(self.num_classes, self.dropout, dtype=self.dtype,
                          name="classifier")(x, train)


def build(width_mult: float, *, num_classes: int = 1000, dropout: float = 0.2, dtype: Any = None) -> MobileNetV1:
    return MobileNetV1(width_mult, num_classes, dropout, dtype)


register_variants(MODELS, WIDTHS, build)
