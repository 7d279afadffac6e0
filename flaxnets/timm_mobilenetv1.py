"""MobileNetV1 in Flax, in timm's layout (timm/models/efficientnet.py `EfficientNet` built by
`_gen_mobilenet_v1`; blocks from timm/models/_efficientnet_blocks.py).

Howard et al. 2017, Table 1; table and timm's rounding in `netspecs.timm_mobilenetv1`.
torchvision-layout MobileNetV1 is `flaxnets.mobilenetv1` (names mobilenet_v1*). Keys:

    conv_stem, bn1                      3x3/2 conv, BatchNormAct2d (ReLU6)
    blocks.i.j.conv_dw, .bn1            DepthwiseSeparableConv: 3x3 depthwise, BN + ReLU6
    blocks.i.j.conv_pw, .bn2            1x1 pointwise, BN + ReLU6 (no shortcut)
    conv_head, bn2                      the 'h' variant only: 1x1 conv, BN + ReLU6
    classifier                          Linear after the global average pool and dropout

BN eps 1e-5, momentum 0.1; convolutions without bias. Init as timm's `_init_weight_goog`.
`drop_path_rate` is accepted as timm does but inert: MobileNetV1's blocks have no shortcut.
"""
from __future__ import annotations

import math
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from flaxnets import MODELS
from flaxnets.layers import BatchNormAct2d, Conv2d, Linear, relu6, timm_padding
from netspecs.registry import register_variants
from netspecs.timm_mobilenetv1 import VARIANTS, Block, TimmMobileNetV1Config


def _goog_conv_init(groups: int):
    """timm's _init_weight_goog for Conv2d: N(0, sqrt(2 / fan_out)), fan_out = k*k*out/groups."""
    def init(key, shape, dtype):
        kh, kw, _, out = shape
        return jax.random.normal(key, shape, dtype) * math.sqrt(2.0 / (kh * kw * out // groups))
    return init


def _goog_linear_init(key, shape, dtype):
    """timm's _init_weight_goog for Linear: U(-1/sqrt(out), 1/sqrt(out))."""
    r = 1.0 / math.sqrt(shape[1])
    return jax.random.uniform(key, shape, dtype, -r, r)


def _conv(features, kernel, stride=1, groups=1, dtype=None, name=None):
    return Conv2d(features, kernel, stride, timm_padding(kernel, stride), groups=groups,
                  dtype=dtype, kernel_init=_goog_conv_init(groups), name=name)


def _bn(dtype, name):
    return BatchNormAct2d(act=relu6, dtype=dtype, name=name)


class DepthwiseSeparableConv(nn.Module):
    """timm's DepthwiseSeparableConv with pw_act=True, noskip=True (the 'dsa' block)."""

    block: Block
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        b = self.block
        x = _conv(b.in_chs, b.kernel, b.stride, b.in_chs, self.dtype, "conv_dw")(x)
        x = _bn(self.dtype, "bn1")(x, train)
        x = _conv(b.out_chs, 1, dtype=self.dtype, name="conv_pw")(x)
        return _bn(self.dtype, "bn2")(x, train)


class _Stage(nn.Module):
    blocks: tuple[Block, ...]
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        for j, b in enumerate(self.blocks):
            x = DepthwiseSeparableConv(b, self.dtype, name=str(j))(x, train)
        return x


class _Blocks(nn.Module):
    config: TimmMobileNetV1Config
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        for i, stage in enumerate(self.config.blocks()):
            x = _Stage(stage, self.dtype, name=str(i))(x, train)
        return x


class MobileNetV1(nn.Module):
    # backbone (flaxnets.features): timm's feature_info: the last of bn1, blocks.* at each
    # resolution (conv_head excluded)
    feature_modules: ClassVar = ("bn1", "blocks.*")
    classifier: ClassVar = "classifier"

    config: TimmMobileNetV1Config
    num_classes: int = 1000
    drop_rate: float = 0.0
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        cfg = self.config
        x = _conv(cfg.stem_chs, 3, 2, dtype=self.dtype, name="conv_stem")(x)
        x = _bn(self.dtype, "bn1")(x, train)
        x = _Blocks(cfg, self.dtype, name="blocks")(x, train)
        if cfg.head_chs:
            x = _conv(cfg.head_chs, 1, dtype=self.dtype, name="conv_head")(x)
            x = _bn(self.dtype, "bn2")(x, train)
        x = jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))
        x = nn.Dropout(self.drop_rate)(x, deterministic=not train)
        if self.num_classes <= 0:
            return x
        return Linear(self.num_classes, dtype=self.dtype, kernel_init=_goog_linear_init,
                      bias_init=nn.initializers.zeros, name="classifier")(x)


def build(config: TimmMobileNetV1Config, *, num_classes: int = 1000, drop_rate: float = 0.0,
          drop_path_rate: float = 0.0, dtype: Any = None) -> MobileNetV1:
    del drop_path_rate  # no shortcut to drop (timm builds DropPath modules that never run)
    return MobileNetV1(config, num_classes, drop_rate, dtype)


register_variants(MODELS, VARIANTS, build)
