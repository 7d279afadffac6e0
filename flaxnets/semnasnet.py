"""MnasNet-A1 with squeeze-and-excitation (timm's `semnasnet_050/075/100/140`) in Flax.

Paper: Tan et al., "MnasNet: Platform-Aware Neural Architecture Search for Mobile", CVPR 2019
(arXiv:1807.11626), Figure 7(a); block table in `netspecs.semnasnet`. Follows timm's layout
(timm/models/efficientnet.py `EfficientNet` built by `_gen_mnasnet_a1`;
timm/models/_efficientnet_blocks.py `DepthwiseSeparableConv`, `InvertedResidual`,
`SqueezeExcite`): module paths `conv_stem`, `bn1`, `blocks.S.B.{conv_pw, bn1, conv_dw, bn2,
se.conv_reduce, se.conv_expand, conv_pwl, bn3}` (the SepConv block: `conv_dw, bn1, conv_pw,
bn2`), `conv_head`, `bn2`, `classifier`. timm's `bnN` are BatchNormAct2d (BN + ReLU in one
module). Knobs: num_classes, drop_rate (dropout before the classifier), drop_path_rate
(timm's linear per-block schedule), in_channels (timm's in_chans), spatial_dims (1: the same
network for (N, L, C) signals).
"""
from __future__ import annotations

import math
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from flaxnets import MODELS
from flaxnets.layers import (BatchNormAct2d, Conv2d, Linear, check_input, relu, sigmoid,
                             spatial_mean, stochastic_depth)
from netspecs.registry import register_variants
from netspecs.semnasnet import VARIANTS, Block, MnasNetConfig


def goog_conv_init(groups: int = 1):
    """timm's `_init_weight_goog` for convolutions: N(0, sqrt(2 / fan_out)), fan_out =
    kernel size x out channels / groups."""
    def init(key, shape, dtype=jnp.float32):
        fan_out = math.prod(shape[:-2]) * shape[-1] // groups
        return jax.random.normal(key, shape, dtype) * math.sqrt(2.0 / fan_out)
    return init


def _goog_linear_init(key, shape, dtype=jnp.float32):
    r = 1.0 / math.sqrt(shape[-1])  # timm: U(-1/sqrt(fan_out), 1/sqrt(fan_out)), zero bias
    return jax.random.uniform(key, shape, dtype, -r, r)


class SqueezeExcite(nn.Module):
    """timm's _efficientnet_blocks.SqueezeExcite: mean -> conv_reduce -> ReLU -> conv_expand
    -> sigmoid gate -> x * gate."""

    channels: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        conv = dict(use_bias=True, dtype=self.dtype, kernel_init=goog_conv_init())
        s = spatial_mean(x, keepdims=True)
        s = relu(Conv2d(self.channels, 1, name="conv_reduce", **conv)(s))
        s = Conv2d(x.shape[-1], 1, name="conv_expand", **conv)(s)
        return x * sigmoid(s)


class MnasBlock(nn.Module):
    """timm's DepthwiseSeparableConv ("ds") or InvertedResidual ("ir"), by `block.kind`."""

    block: Block
    bn_eps: float
    bn_momentum: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        b = self.block
        conv = lambda c, k, s=1, g=1, name=None: Conv2d(  # noqa: E731
            c, k, s, groups=g, dtype=self.dtype, kernel_init=goog_conv_init(g), name=name)
        bn = lambda act, name: BatchNormAct2d(  # noqa: E731
            self.bn_momentum, self.bn_eps, dtype=self.dtype, act=act, name=name)
        shortcut = x
        if b.kind == "ir":
            x = bn(relu, "bn1")(conv(b.mid_channels, 1, name="conv_pw")(x), train)
        dw = conv(b.mid_channels, b.kernel, b.stride, b.mid_channels, name="conv_dw")(x)
        x = bn(relu, "bn2" if b.kind == "ir" else "bn1")(dw, train)
        if b.se_channels:
            x = SqueezeExcite(b.se_channels, self.dtype, name="se")(x)
        if b.kind == "ir":
            x = bn(None, "bn3")(conv(b.out_channels, 1, name="conv_pwl")(x), train)
        else:
            x = bn(None, "bn2")(conv(b.out_channels, 1, name="conv_pw")(x), train)
        if b.has_skip:
            x = stochastic_depth(x, b.drop_path, train, self) + shortcut
        return x


class _Stage(nn.Module):
    blocks: tuple[Block, ...]
    bn_eps: float
    bn_momentum: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        for i, b in enumerate(self.blocks):
            x = MnasBlock(b, self.bn_eps, self.bn_momentum, self.dtype, name=str(i))(x, train)
        return x


class _Blocks(nn.Module):
    stages: tuple[tuple[Block, ...], ...]
    bn_eps: float
    bn_momentum: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        for i, blocks in enumerate(self.stages):
            x = _Stage(blocks, self.bn_eps, self.bn_momentum, self.dtype, name=str(i))(x, train)
        return x


class MnasNetA1(nn.Module):
    # backbone (flaxnets.features): timm's feature_info: the last of bn1, blocks.* at each
    # resolution (conv_head excluded)
    feature_modules: ClassVar = ("bn1", "blocks.*")
    classifier: ClassVar = "classifier"

    config: MnasNetConfig
    num_classes: int = 1000
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    in_channels: int = 3
    spatial_dims: int = 2
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        cfg = self.config
        check_input(x, self.spatial_dims, self.in_channels, "MnasNet-A1")
        bn = dict(momentum=cfg.bn_momentum, eps=cfg.bn_eps, dtype=self.dtype)
        x = Conv2d(cfg.stem, 3, 2, dtype=self.dtype, kernel_init=goog_conv_init(),
                   name="conv_stem")(x)
        x = BatchNormAct2d(act=relu, name="bn1", **bn)(x, train)
        x = _Blocks(cfg.blocks(self.drop_path_rate), cfg.bn_eps, cfg.bn_momentum, self.dtype,
                    name="blocks")(x, train)
        x = Conv2d(cfg.num_features, 1, dtype=self.dtype, kernel_init=goog_conv_init(),
                   name="conv_head")(x)
        x = BatchNormAct2d(act=relu, name="bn2", **bn)(x, train)
        x = spatial_mean(x)
        x = nn.Dropout(self.drop_rate)(x, deterministic=not train)
        return Linear(self.num_classes, dtype=self.dtype, kernel_init=_goog_linear_init,
                      bias_init=nn.initializers.zeros, name="classifier")(x)


def build(config: MnasNetConfig, *, num_classes: int = 1000, drop_rate: float = 0.0,
          drop_path_rate: float = 0.0, in_channels: int = 3, spatial_dims: int = 2,
          dtype: Any = None) -> MnasNetA1:
    return MnasNetA1(config, num_classes, drop_rate, drop_path_rate, in_channels, spatial_dims,
                     dtype)


register_variants(MODELS, VARIANTS, build)
