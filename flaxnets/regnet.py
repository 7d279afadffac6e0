"""RegNetX / RegNetY in Flax.

Paper: Radosavovic et al., "Designing Network Design Spaces", CVPR 2020 (arXiv:2003.13678);
variant parameters from its Appendix C tables (RegNetX, RegNetY with SE ratio 0.25).
Follows torchvision/models/regnet.py (module paths `stem`, `trunk_output.blockS.blockS-i.{proj,f.{a,b,se,c}}`, `fc`).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from flaxnets import register
from flaxnets.layers import ConvBNAct, Linear, SqueezeExcitation, make_divisible, relu


@dataclasses.dataclass(frozen=True)
class StageSpec:
    width: int
    stride: int
    depth: int
    group_width: int
    bottleneck_multiplier: float


@dataclasses.dataclass(frozen=True)
class RegNetParams:
    """The quantised-linear design parameters (paper Sec. 3.3): depth d, w_0, w_a, w_m, g."""

    depth: int
    w_0: int
    w_a: float
    w_m: float
    group_width: int
    bottleneck_multiplier: float = 1.0
    se_ratio: Optional[float] = None

    def stages(self) -> list[StageSpec]:
        """Per-stage widths/depths exactly as torchvision's BlockParams.from_init_params."""
        if self.w_a < 0 or self.w_0 <= 0 or self.w_m <= 1 or self.w_0 % 8:
            raise ValueError(f"invalid RegNet settings {self}")
        # torchvision computes this in float32 torch arithmetic; rounding must match it.
        f32 = np.float32
        widths_cont = np.arange(self.depth, dtype=f32) * f32(self.w_a) + f32(self.w_0)
        capacity = np.round(np.log(widths_cont / f32(self.w_0)) / f32(math.log(self.w_m)))
        block_widths = (np.round((f32(self.w_0) * np.power(f32(self.w_m), capacity)) / f32(8))
                        * f32(8)).astype(np.int32).tolist()
        splits = [w != wp for w, wp in zip(block_widths + [0], [0] + block_widths)]
        stage_widths = [w for w, t in zip(block_widths, splits[:-1]) if t]
        ends = [d for d, t in enumerate(splits) if t]
        stage_depths = [b - a for a, b in zip(ends[:-1], ends[1:])]
        b = self.bottleneck_multiplier
        stages = []
        for w, d in zip(stage_widths, stage_depths):
            w_bot = int(w * b)
            g = min(self.group_width, w_bot)
            w_bot = make_divisible(w_bot, g)
            stages.append(StageSpec(int(w_bot / b), 2, d, g, b))
        return stages


# Appendix C of the paper (torchvision's values; RegNetY adds SE with ratio 0.25).
VARIANTS: dict[str, RegNetParams] = {
    "regnet_y_400mf": RegNetParams(16, 48, 27.89, 2.09, 8, se_ratio=0.25),
    "regnet_y_800mf": RegNetParams(14, 56, 38.84, 2.4, 16, se_ratio=0.25),
    "regnet_y_1_6gf": RegNetParams(27, 48, 20.71, 2.65, 24, se_ratio=0.25),
    "regnet_y_3_2gf": RegNetParams(21, 80, 42.63, 2.66, 24, se_ratio=0.25),
    "regnet_y_8gf": RegNetParams(17, 192, 76.82, 2.19, 56, se_ratio=0.25),
    "regnet_y_16gf": RegNetParams(18, 200, 106.23, 2.48, 112, se_ratio=0.25),
    "regnet_y_32gf": RegNetParams(20, 232, 115.89, 2.53, 232, se_ratio=0.25),
    "regnet_y_128gf": RegNetParams(27, 456, 160.83, 2.52, 264, se_ratio=0.25),
    "regnet_x_400mf": RegNetParams(22, 24, 24.48, 2.54, 16),
    "regnet_x_800mf": RegNetParams(16, 56, 35.73, 2.28, 16),
    "regnet_x_1_6gf": RegNetParams(18, 80, 34.01, 2.25, 24),
    "regnet_x_3_2gf": RegNetParams(25, 88, 26.31, 2.25, 48),
    "regnet_x_8gf": RegNetParams(23, 80, 49.56, 2.88, 120),
    "regnet_x_16gf": RegNetParams(22, 216, 55.59, 2.1, 128),
    "regnet_x_32gf": RegNetParams(23, 320, 69.86, 2.0, 168),
}

BN_EPS, BN_MOMENTUM = 1e-5, 0.1


class BottleneckTransform(nn.Module):
    width_in: int
    width_out: int
    stride: int
    group_width: int
    bottleneck_multiplier: float
    se_ratio: Optional[float]
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        w_b = int(round(self.width_out * self.bottleneck_multiplier))
        g = w_b // self.group_width
        x = ConvBNAct(w_b, 1, dtype=self.dtype, name="a")(x, train)
        x = ConvBNAct(w_b, 3, self.stride, groups=g, dtype=self.dtype, name="b")(x, train)
        if self.se_ratio:
            x = SqueezeExcitation(int(round(self.se_ratio * self.width_in)), dtype=self.dtype,
                                  name="se")(x)
        return ConvBNAct(self.width_out, 1, act=None, dtype=self.dtype, name="c")(x, train)


class ResBottleneckBlock(nn.Module):
    width_in: int
    width_out: int
    stride: int
    group_width: int
    bottleneck_multiplier: float
    se_ratio: Optional[float]
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        f = BottleneckTransform(self.width_in, self.width_out, self.stride, self.group_width,
                                self.bottleneck_multiplier, self.se_ratio, self.dtype, name="f")
        if self.width_in != self.width_out or self.stride != 1:
            shortcut = ConvBNAct(self.width_out, 1, self.stride, act=None, dtype=self.dtype,
                                 name="proj")(x, train)
        else:
            shortcut = x
        return relu(shortcut + f(x, train))


class Trunk(nn.Module):
    """`trunk_output`: stages `block1..blockN`, each with blocks `blockS-i`."""

    stages: tuple[StageSpec, ...]
    width_in: int
    se_ratio: Optional[float]
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        width = self.width_in
        for s, spec in enumerate(self.stages, start=1):
            stage = _Stage(spec, width, s, self.se_ratio, self.dtype, name=f"block{s}")
            x = stage(x, train)
            width = spec.width
        return x


class _Stage(nn.Module):
    spec: StageSpec
    width_in: int
    index: int
    se_ratio: Optional[float]
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        sp = self.spec
        for i in range(sp.depth):
            x = ResBottleneckBlock(self.width_in if i == 0 else sp.width, sp.width,
                                   sp.stride if i == 0 else 1, sp.group_width,
                                   sp.bottleneck_multiplier, self.se_ratio, self.dtype,
                                   name=f"block{self.index}-{i}")(x, train)
        return x


class RegNet(nn.Module):
    config: RegNetParams
    num_classes: int = 1000
    stem_width: int = 32
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = ConvBNAct(self.stem_width, 3, 2, dtype=self.dtype, name="stem")(x, train)
        stages = tuple(self.config.stages())
        x = Trunk(stages, self.stem_width, self.config.se_ratio, self.dtype,
                  name="trunk_output")(x, train)
        x = jnp.mean(x, axis=(1, 2))
        return Linear(self.num_classes, dtype=self.dtype, name="fc",
                      kernel_init=nn.initializers.normal(0.01),
                      bias_init=nn.initializers.zeros)(x)


def _builder(cfg: RegNetParams):
    def build(*, num_classes: int = 1000, stem_width: int = 32, dtype: Any = None) -> RegNet:
        return RegNet(cfg, num_classes=num_classes, stem_width=stem_width, dtype=dtype)
    return build


for _name, _cfg in VARIANTS.items():
    register(_name, _builder(_cfg))
