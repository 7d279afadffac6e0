"""DarkNet-53 and CSPDarkNet-53 (and timm's darknet17/21, sedarknet21) in Flax.

Papers: Redmon & Farhadi, "YOLOv3: An Incremental Improvement", 2018 (Darknet-53, Table 1);
Wang et al., "CSPNet: A New Backbone that can Enhance Learning Capability of CNN", CVPRW 2020
(CSPDarknet-53). Follows timm/models/cspnet.py (`CspNet` with `DarkStage` / `CrossStage` of
`DarkBlock`s) and the timm layers it uses: module paths `stem.conv1.{conv,bn}`,
`stages.S.conv_down`, `stages.S.conv_exp`, `stages.S.blocks.B.{conv1,attn,conv2}`,
`stages.S.conv_transition_b`, `stages.S.conv_transition`, `head.fc`.
Architecture tables: netspecs/darknet.py.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from flaxnets import MODELS
from flaxnets.layers import (ClassifierHead, ConvNormAct, SqueezeExcitation, kaiming_fan_out, leaky_relu,
                             stochastic_depth)
from netspecs.darknet import (VARIANTS, CrossStageSpec, DarkNetConfig, DarkStageSpec,
                              drop_path_rates, se_channels)
from netspecs.registry import register_variants

_ZEROS = nn.initializers.zeros
_ONES = nn.initializers.ones


class DarkBlock(nn.Module):
    """timm DarkBlock: 1x1 `conv1`, optional SE `attn`, 3x3 `conv2`, drop path, + shortcut."""

    out_chs: int
    mid_chs: int
    se: bool
    drop_path: float
    act: Callable
    config: DarkNetConfig
    zero_init_last: bool = True
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        c = self.config
        kw = dict(act=self.act, bn_eps=c.bn_eps, bn_momentum=c.bn_momentum, dtype=self.dtype)
        y = ConvNormAct(self.mid_chs, 1, name="conv1", **kw)(x, train)
        if self.se:
            y = SqueezeExcitation(se_channels(self.mid_chs), act=self.act, dtype=self.dtype,
                                  kernel_init=kaiming_fan_out,
                                  name="attn")(y)
        y = ConvNormAct(self.out_chs, 3, name="conv2",
                        bn_scale_init=_ZEROS if self.zero_init_last else _ONES, **kw)(y, train)
        return stochastic_depth(y, self.drop_path, train, self) + x


class _Blocks(nn.Module):
    """`blocks`: an nn.Sequential of DarkBlocks ("0", "1", ...)."""

    spec: DarkStageSpec | CrossStageSpec
    drop_paths: tuple[float, ...]
    act: Callable
    config: DarkNetConfig
    zero_init_last: bool = True
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        for i, p in enumerate(self.drop_paths):
            x = DarkBlock(self.spec.block_chs, self.spec.mid_chs, self.spec.se, p, self.act,
                          self.config, self.zero_init_last, self.dtype, name=str(i))(x, train)
        return x


class DarkStage(nn.Module):
    """timm DarkStage: 3x3 strided `conv_down`, then `blocks`."""

    spec: DarkStageSpec
    drop_paths: tuple[float, ...]
    act: Callable
    config: DarkNetConfig
    zero_init_last: bool = True
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        c, s = self.config, self.spec
        x = ConvNormAct(s.out_chs, 3, s.stride, act=self.act, bn_eps=c.bn_eps,
                        bn_momentum=c.bn_momentum, dtype=self.dtype, name="conv_down")(x, train)
        return _Blocks(s, self.drop_paths, self.act, c, self.zero_init_last, self.dtype,
                       name="blocks")(x, train)


class CrossStage(nn.Module):
    """timm CrossStage: `conv_down`, `conv_exp`, split into halves (xs, xb) along channels,
    xb -> `blocks` -> `conv_transition_b`, `conv_transition`(concat[xs, xb])."""

    spec: CrossStageSpec
    drop_paths: tuple[float, ...]
    act: Callable
    config: DarkNetConfig
    zero_init_last: bool = True
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        c, s = self.config, self.spec
        kw = dict(act=self.act, bn_eps=c.bn_eps, bn_momentum=c.bn_momentum, dtype=self.dtype)
        x = ConvNormAct(s.down_chs(x.shape[-1]), 3, s.stride, name="conv_down", **kw)(x, train)
        x = ConvNormAct(s.exp_chs, 1, apply_act=not s.cross_linear, name="conv_exp", **kw)(x, train)
        half = s.exp_chs // 2
        xs, xb = x[..., :half], x[..., half:]
        xb = _Blocks(s, self.drop_paths, self.act, c, self.zero_init_last, self.dtype,
                     name="blocks")(xb, train)
        xb = ConvNormAct(half, 1, name="conv_transition_b", **kw)(xb, train)
        return ConvNormAct(s.out_chs, 1, name="conv_transition", **kw)(
            jnp.concatenate([xs, xb], axis=-1), train)


class _Stem(nn.Module):
    config: DarkNetConfig
    act: Callable
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        c = self.config
        return ConvNormAct(c.stem.out_chs, c.stem.kernel_size, c.stem.stride, act=self.act,
                           bn_eps=c.bn_eps, bn_momentum=c.bn_momentum, dtype=self.dtype,
                           name="conv1")(x, train)


class _Stages(nn.Module):
    config: DarkNetConfig
    act: Callable
    drop_path_rate: float = 0.0
    zero_init_last: bool = True
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        dprs = drop_path_rates(self.drop_path_rate, self.config.depths)
        for i, (spec, dpr) in enumerate(zip(self.config.stages, dprs)):
            cls = CrossStage if isinstance(spec, CrossStageSpec) else DarkStage
            x = cls(spec, tuple(dpr), self.act, self.config, self.zero_init_last, self.dtype,
                    name=str(i))(x, train)
        return x


class DarkNet(nn.Module):
    """timm CspNet for the darknet configs: `stem`, `stages`, `head`. NHWC input."""

    # backbone (flaxnets.features): timm's feature_info: stem and stages.*
    feature_modules: ClassVar = ("stem.*", "stages.*")
    classifier: ClassVar = "head.fc"

    config: DarkNetConfig
    num_classes: int = 1000
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    in_chans: int = 3
    zero_init_last: bool = True
    dtype: Any = None

    @property
    def in_channels(self) -> int:
        return self.in_chans

    @nn.compact
    def __call__(self, x, train: bool = False):
        if x.shape[-1] != self.in_chans:
            raise ValueError(f"expected {self.in_chans} input channels (NHWC), got shape {x.shape}")
        act = functools.partial(leaky_relu, negative_slope=self.config.negative_slope)
        x = _Stem(self.config, act, self.dtype, name="stem")(x, train)
        x = _Stages(self.config, act, self.drop_path_rate, self.zero_init_last, self.dtype,
                    name="stages")(x, train)
        return ClassifierHead(self.num_classes, self.drop_rate, self.dtype, name="head",
                              fc_kernel_init=nn.initializers.normal(0.01), fc_bias_init=_ZEROS)(x, train)


def build(config: DarkNetConfig, *, num_classes: int = 1000, drop_rate: float = 0.0,
          drop_path_rate: float = 0.0, in_chans: int = 3, zero_init_last: bool = True,
          dtype=None) -> DarkNet:
    return DarkNet(config, num_classes, drop_rate, drop_path_rate, in_chans, zero_init_last, dtype)


register_variants(MODELS, VARIANTS, build)
