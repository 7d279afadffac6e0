"""MobileNetV3 (small, large) in Flax.

Paper: Howard et al., "Searching for MobileNetV3", ICCV 2019 (arXiv:1905.02244); block
tables from its Table 1 (large) and Table 2 (small). Follows torchvision/models/mobilenetv3.py
(module paths `features.N[.block.M]`, `classifier.{0,3}`), including its `width_mult`,
`reduced_tail` and `dilated` options. `spatial_dims=1` builds the same network for (N, L, C)
signals; `in_channels` the stem's input channels.
"""
from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn

from flaxnets import register
from flaxnets.blocks import BlockSpec, InvertedResidual
from flaxnets.layers import ConvBNAct, Linear, check_input, hardswish, spatial_mean

from netspecs.mobilenetv3 import BN_EPS, BN_MOMENTUM, VARIANTS, mobilenet_v3_conf

class _Features(nn.Module):
    specs: tuple[BlockSpec, ...]
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        conv = lambda c, k, s, name: ConvBNAct(c, k, s, act=hardswish, bn_eps=BN_EPS,  # noqa: E731
                                               bn_momentum=BN_MOMENTUM, dtype=self.dtype, name=name)
        x = conv(self.specs[0].in_channels, 3, 2, "0")(x, train)
        for i, spec in enumerate(self.specs, start=1):
            x = InvertedResidual(spec, BN_EPS, BN_MOMENTUM, self.dtype, name=str(i))(x, train)
        return conv(6 * self.specs[-1].out_channels, 1, 1, str(len(self.specs) + 1))(x, train)


class _Classifier(nn.Module):
    last_channel: int
    num_classes: int
    dropout: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        init = dict(kernel_init=nn.initializers.normal(0.01), bias_init=nn.initializers.zeros)
        x = hardswish(Linear(self.last_channel, dtype=self.dtype, name="0", **init)(x))
        x = nn.Dropout(self.dropout, name="2")(x, deterministic=not train)
        return Linear(self.num_classes, dtype=self.dtype, name="3", **init)(x)


class MobileNetV3(nn.Module):
    # backbone (flaxnets.features): the last module of `features` at each resolution (torchvision's detection
    # backbones take `features.N` too; the last is the 1x1 conv `features.16`/`.12`)
    feature_modules: ClassVar = ("features.*",)
    classifier: ClassVar = "classifier.3"

    specs: tuple[BlockSpec, ...]
    last_channel: int
    num_classes: int = 1000
    dropout: float = 0.2
    dtype: Any = None
    spatial_dims: int = 2
    in_channels: int = 3

    @nn.compact
    def __call__(self, x, train: bool = False):
        check_input(x, self.spatial_dims, self.in_channels, "MobileNetV3")
        x = _Features(self.specs, self.dtype, name="features")(x, train)
        x = spatial_mean(x)
        return _Classifier(self.last_channel, self.num_classes, self.dropout, self.dtype,
                           name="classifier")(x, train)


def _builder(name: str):
    def build(*, num_classes: int = 1000, dropout: float = 0.2, width_mult: float = 1.0,
              reduced_tail: bool = False, dilated: bool = False, spatial_dims: int = 2,
              in_channels: int = 3, dtype: Any = None) -> MobileNetV3:
        specs, last = mobilenet_v3_conf(name, width_mult, reduced_tail, dilated)
        return MobileNetV3(specs, last, num_classes=num_classes, dropout=dropout, dtype=dtype,
                           spatial_dims=spatial_dims, in_channels=in_channels)
    return build


for _name in VARIANTS:
    register(_name, _builder(_name))
