"""RegNetX / RegNetY in Flax.

Paper: Radosavovic et al., "Designing Network Design Spaces", CVPR 2020 (arXiv:2003.13678);
variant parameters from its Appendix C tables (RegNetX, RegNetY with SE ratio 0.25).
Follows torchvision/models/regnet.py (module paths `stem`, `trunk_output.blockS.blockS-i.{proj,f.{a,b,se,c}}`, `fc`).
"""
from __future__ import annotations

from typing import Any, ClassVar, Optional

import flax.linen as nn
import jax.numpy as jnp

from flaxnets import MODELS
from netspecs.registry import register_variants
from flaxnets.layers import ConvBNAct, Linear, SqueezeExcitation, relu
from netspecs.regnet import StageSpec, RegNetParams, VARIANTS


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
    # backbone (flaxnets.features): torchvision's detection backbones take trunk_output.block1..4
    feature_modules: ClassVar = ("trunk_output.*",)
    feature_rule: ClassVar = "all"
    classifier: ClassVar = "fc"

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


def build(cfg: RegNetParams, *, num_classes: int = 1000, stem_width: int = 32, dtype: Any = None) -> RegNet:
    return RegNet(cfg, num_classes=num_classes, stem_width=stem_width, dtype=dtype)


register_variants(MODELS, VARIANTS, build)
