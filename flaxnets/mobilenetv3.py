"""MobileNetV3 (small, large) in Flax.

Paper: Howard et al., "Searching for MobileNetV3", ICCV 2019 (arXiv:1905.02244); block
tables from its Table 1 (large) and Table 2 (small). Follows torchvision/models/mobilenetv3.py
(module paths `features.N[.block.M]`, `classifier.{0,3}`), including its `width_mult`,
`reduced_tail` and `dilated` options. `spatial_dims=1` builds the same network for (N, L, C)
signals; `in_channels` the stem's input channels.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn

from flaxnets import register
from flaxnets.blocks import SE, BlockSpec, InvertedResidual
from flaxnets.layers import ConvBNAct, Linear, check_input, hardswish, make_divisible, spatial_mean

BN_EPS, BN_MOMENTUM = 1e-3, 0.01


@dataclasses.dataclass(frozen=True)
class Bneck:
    """One row of paper Table 1/2 (torchvision's InvertedResidualConfig, before width_mult)."""

    in_channels: int
    kernel: int
    expanded: int
    out_channels: int
    use_se: bool
    act: str          # "RE" (ReLU) or "HS" (hardswish)
    stride: int
    dilation: int = 1


def _large(rd: int, d: int):  # paper Table 1; the last 3 rows (C4) are the "tail"
    rows = [
        Bneck(16, 3, 16, 16, False, "RE", 1),
        Bneck(16, 3, 64, 24, False, "RE", 2),
        Bneck(24, 3, 72, 24, False, "RE", 1),
        Bneck(24, 5, 72, 40, True, "RE", 2),
        Bneck(40, 5, 120, 40, True, "RE", 1),
        Bneck(40, 5, 120, 40, True, "RE", 1),
        Bneck(40, 3, 240, 80, False, "HS", 2),
        Bneck(80, 3, 200, 80, False, "HS", 1),
        Bneck(80, 3, 184, 80, False, "HS", 1),
        Bneck(80, 3, 184, 80, False, "HS", 1),
        Bneck(80, 3, 480, 112, True, "HS", 1),
        Bneck(112, 3, 672, 112, True, "HS", 1),
        Bneck(112, 5, 672, 160 // rd, True, "HS", 2, d),
        Bneck(160 // rd, 5, 960 // rd, 160 // rd, True, "HS", 1, d),
        Bneck(160 // rd, 5, 960 // rd, 160 // rd, True, "HS", 1, d),
    ]
    return rows, 1280 // rd


def _small(rd: int, d: int):  # paper Table 2
    rows = [
        Bneck(16, 3, 16, 16, True, "RE", 2),
        Bneck(16, 3, 72, 24, False, "RE", 2),
        Bneck(24, 3, 88, 24, False, "RE", 1),
        Bneck(24, 5, 96, 40, True, "HS", 2),
        Bneck(40, 5, 240, 40, True, "HS", 1),
        Bneck(40, 5, 240, 40, True, "HS", 1),
        Bneck(40, 5, 120, 48, True, "HS", 1),
        Bneck(48, 5, 144, 48, True, "HS", 1),
        Bneck(48, 5, 288, 96 // rd, True, "HS", 2, d),
        Bneck(96 // rd, 5, 576 // rd, 96 // rd, True, "HS", 1, d),
        Bneck(96 // rd, 5, 576 // rd, 96 // rd, True, "HS", 1, d),
    ]
    return rows, 1024 // rd


VARIANTS = {"mobilenet_v3_large": _large, "mobilenet_v3_small": _small}


def mobilenet_v3_conf(name: str, width_mult: float = 1.0, reduced_tail: bool = False,
                      dilated: bool = False) -> tuple[tuple[BlockSpec, ...], int]:
    """Block specs and last_channel, as torchvision's `_mobilenet_v3_conf`."""
    rows, last = VARIANTS[name](2 if reduced_tail else 1, 2 if dilated else 1)
    adjust = lambda c: make_divisible(c * width_mult, 8)  # noqa: E731
    specs = []
    for r in rows:
        exp = adjust(r.expanded)
        se = SE(make_divisible(exp // 4, 8), "relu", "hardsigmoid") if r.use_se else None
        specs.append(BlockSpec(adjust(r.in_channels), exp, adjust(r.out_channels), r.kernel,
                               r.stride, "hardswish" if r.act == "HS" else "relu", se,
                               dilation=r.dilation))
    return tuple(specs), adjust(last)


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
