"""MNASNet (B1) in Flax.

Paper: Tan et al., "MnasNet: Platform-Aware Neural Architecture Search for Mobile", CVPR 2019
(arXiv:1807.11626), Figure 7(a). Follows torchvision/models/mnasnet.py, version 2 (depth
scaling of the stem too): module paths `layers.N` (stacks `layers.8`..`layers.13`, each a
Sequential of blocks with their own `layers.{0..7}`), `classifier.{0,1}`.

`spatial_dims=1` builds the same network for (N, L, C) signals (torch twin: Conv1d,
BatchNorm1d), `in_channels` the stem's input channels.
"""
from __future__ import annotations

import functools
from typing import Any, ClassVar

import flax.linen as nn

from flaxnets import register
from flaxnets.layers import Op, BatchNorm2d, Conv2d, check_input, relu, spatial_mean
from flaxnets.mobilenetv2 import Classifier

# The paper's TensorFlow momentum 0.9997, as a torch momentum (torchvision's expression).
from netspecs.mnasnet import BN_MOMENTUM, ALPHAS, STACKS, get_depths


class _BlockLayers(nn.Module):
    """An _InvertedResidual's `layers`: pointwise(0,1), depthwise(3,4), linear pointwise(6,7)."""

    mid: int
    out: int
    kernel_size: int
    stride: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        bn = functools.partial(BatchNorm2d, BN_MOMENTUM, dtype=self.dtype)
        conv = functools.partial(Conv2d, dtype=self.dtype)
        x = relu(bn(name="1")(conv(self.mid, 1, name="0")(x), train))
        x = conv(self.mid, self.kernel_size, self.stride, groups=self.mid, name="3")(x)
        x = relu(bn(name="4")(x, train))
        return bn(name="7")(conv(self.out, 1, name="6")(x), train)


class InvertedResidual(nn.Module):
    in_ch: int
    out_ch: int
    kernel_size: int
    stride: int
    expansion: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        y = _BlockLayers(self.in_ch * self.expansion, self.out_ch, self.kernel_size, self.stride,
                         self.dtype, name="layers")(x, train)
        return x + y if self.in_ch == self.out_ch and self.stride == 1 else y


class _Stack(nn.Module):
    in_ch: int
    out_ch: int
    kernel_size: int
    stride: int
    expansion: int
    repeats: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        for i in range(self.repeats):
            x = InvertedResidual(self.in_ch if i == 0 else self.out_ch, self.out_ch,
                                 self.kernel_size, self.stride if i == 0 else 1, self.expansion,
                                 self.dtype, name=str(i))(x, train)
        return x


class _Layers(nn.Module):
    alpha: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        d = get_depths(self.alpha)
        bn = functools.partial(BatchNorm2d, BN_MOMENTUM, dtype=self.dtype)
        conv = functools.partial(Conv2d, dtype=self.dtype)
        x = Op(relu, name="2")(bn(name="1")(conv(d[0], 3, 2, name="0")(x), train))
        x = Op(relu, name="5")(bn(name="4")(conv(d[0], 3, groups=d[0], name="3")(x), train))
        x = bn(name="7")(conv(d[1], 1, name="6")(x), train)
        for i, (k, s, e, r) in enumerate(STACKS):
            x = _Stack(d[i + 1], d[i + 2], k, s, e, r, self.dtype, name=str(8 + i))(x, train)
        return Op(relu, name="16")(bn(name="15")(conv(1280, 1, name="14")(x), train))


class MNASNet(nn.Module):
    # backbone (flaxnets.features): the last module of `layers` at each resolution
    feature_modules: ClassVar = ("layers.*",)
    classifier: ClassVar = "classifier.1"

    alpha: float
    num_classes: int = 1000
    dropout: float = 0.2
    dtype: Any = None
    spatial_dims: int = 2
    in_channels: int = 3

    @nn.compact
    def __call__(self, x, train: bool = False):
        check_input(x, self.spatial_dims, self.in_channels, "MNASNet")
        x = _Layers(self.alpha, self.dtype, name="layers")(x, train)
        x = spatial_mean(x)
        # torchvision: kaiming_uniform_(mode="fan_out", nonlinearity="sigmoid") for the Linear.
        init = nn.initializers.variance_scaling(1.0, "fan_out", "uniform")
        return Classifier(self.num_classes, self.dropout, init, self.dtype,
                          name="classifier")(x, train)


def _builder(alpha: float):
    def build(*, num_classes: int = 1000, dropout: float = 0.2, spatial_dims: int = 2,
              in_channels: int = 3, dtype: Any = None) -> MNASNet:
        return MNASNet(alpha, num_classes, dropout, dtype, spatial_dims, in_channels)
    return build


for _name, _alpha in ALPHAS.items():
    register(_name, _builder(_alpha))
