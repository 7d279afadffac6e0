"""ConvNeXt T/S/B/L in Flax.

Paper: Liu et al., "A ConvNet for the 2020s", CVPR 2022 (arXiv:2201.03545). Follows
torchvision/models/convnext.py: module paths `features.0` (stem: 4x4/4 conv "0" + LayerNorm2d
"1"), `features.{1,3,5,7}.B` (CNBlock: `layer_scale` (C, 1, 1) and `block.{0,2,3,5}` = 7x7
depthwise conv, LayerNorm, Linear 4C, GELU, Linear C), `features.{2,4,6}` (LayerNorm2d "0" +
2x2/2 conv "1"), `classifier.{0,2}` (LayerNorm2d, flatten, Linear); stochastic depth per block
rising linearly to `stochastic_depth_prob`. torch's LayerNorm2d (channels-first) and the
block's LayerNorm after its NHWC permute are both the shared LayerNorm over the last axis here.
"""
from __future__ import annotations

from typing import Any, ClassVar, Optional

import flax.linen as nn
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype

from flaxnets import MODELS
from flaxnets.layers import Conv2d, LayerNorm, Linear, gelu, stochastic_depth
from netspecs.convnext import VARIANTS, ConvNeXtConfig, Stage
from netspecs.registry import register_variants

# torch.nn.init.trunc_normal_(std=0.02) truncates at a=-2, b=2 in absolute units (100 std).
_trunc_normal = nn.initializers.truncated_normal(0.02, lower=-2 / 0.02, upper=2 / 0.02)
_zeros = nn.initializers.zeros


def _conv(features: int, kernel: int, stride: int, padding: int, groups: int, dtype, name: str):
    return Conv2d(features, kernel, stride, padding, groups=groups, use_bias=True, dtype=dtype,
                  kernel_init=_trunc_normal, bias_init=_zeros, name=name)


def _linear(features: int, dtype, name: str):
    return Linear(features, dtype=dtype, kernel_init=_trunc_normal, bias_init=_zeros, name=name)


class _Stem(nn.Module):
    """Conv2dNormActivation(3, C, 4, 4, padding=0, norm_layer=LayerNorm2d, activation=None)."""

    features: int
    eps: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        x = _conv(self.features, 4, 4, 0, 1, self.dtype, "0")(x)
        return LayerNorm(self.eps, dtype=self.dtype, name="1")(x)


class _Downsample(nn.Module):
    """Sequential(LayerNorm2d "0", Conv2d(C, C', 2, stride=2) "1")."""

    features: int
    eps: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        x = LayerNorm(self.eps, dtype=self.dtype, name="0")(x)
        return _conv(self.features, 2, 2, 0, 1, self.dtype, "1")(x)


class _BlockBody(nn.Module):
    """CNBlock.block: dwconv 7x7 "0", (permute), LayerNorm "2", Linear 4C "3", GELU, Linear C "5"."""

    eps: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        dim = x.shape[-1]
        x = _conv(dim, 7, 1, 3, dim, self.dtype, "0")(x)
        x = LayerNorm(self.eps, dtype=self.dtype, name="2")(x)
        x = gelu(_linear(4 * dim, self.dtype, "3")(x))
        return _linear(dim, self.dtype, "5")(x)


class CNBlock(nn.Module):
    """torchvision's CNBlock: x + stochastic_depth(layer_scale * block(x)).
    `layer_scale` is kept in torch's (C, 1, 1) layout under torch's name."""

    sd_prob: float
    layer_scale: float = 1e-6
    eps: float = 1e-6
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        dim = x.shape[-1]
        scale = self.param("layer_scale", nn.initializers.constant(self.layer_scale), (dim, 1, 1),
                           jnp.float32)
        y = _BlockBody(self.eps, self.dtype, name="block")(x)
        y, scale = promote_dtype(y, scale, dtype=self.dtype)
        y = stochastic_depth(y * scale.reshape(dim), self.sd_prob, train, self)
        return y + x


class _Stage(nn.Module):
    probs: tuple[float, ...]
    layer_scale: float
    eps: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        for i, p in enumerate(self.probs):
            x = CNBlock(p, self.layer_scale, self.eps, self.dtype, name=str(i))(x, train)
        return x


class _Features(nn.Module):
    stages: tuple[Stage, ...]
    probs: tuple[tuple[float, ...], ...]
    layer_scale: float
    eps: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = _Stem(self.stages[0].input_channels, self.eps, self.dtype, name="0")(x)
        idx = 1
        for stage, probs in zip(self.stages, self.probs):
            x = _Stage(probs, self.layer_scale, self.eps, self.dtype, name=str(idx))(x, train)
            idx += 1
            if stage.out_channels is not None:
                x = _Downsample(stage.out_channels, self.eps, self.dtype, name=str(idx))(x)
                idx += 1
        return x


class _Classifier(nn.Module):
    """Sequential(LayerNorm2d "0", Flatten "1", Linear "2") on the pooled (N, 1, 1, C) map."""

    num_classes: int
    eps: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        x = LayerNorm(self.eps, dtype=self.dtype, name="0")(x)
        x = x.reshape(x.shape[0], -1)
        return _linear(self.num_classes, self.dtype, "2")(x)


class ConvNeXt(nn.Module):
    # backbone (flaxnets.features): the last module of `features` at each resolution (the stages
    # features.1, .3, .5, .7, channels-first in torch)
    feature_modules: ClassVar = ("features.*",)
    classifier: ClassVar = "classifier.2"

    config: ConvNeXtConfig
    num_classes: int = 1000
    stochastic_depth_prob: float = 0.0
    layer_scale: float = 1e-6
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        cfg = self.config
        x = _Features(cfg.stages, cfg.block_probs(self.stochastic_depth_prob), self.layer_scale,
                      cfg.norm_eps, self.dtype, name="features")(x, train)
        x = jnp.mean(x, axis=(1, 2), keepdims=True)
        return _Classifier(self.num_classes, cfg.norm_eps, self.dtype, name="classifier")(x)


def build(config: ConvNeXtConfig, *, num_classes: int = 1000,
          stochastic_depth_prob: Optional[float] = None, layer_scale: float = 1e-6,
          dtype: Any = None) -> ConvNeXt:
    """`stochastic_depth_prob=None`: the variant's torchvision default (0.1 T, 0.4 S, 0.5 B/L)."""
    if stochastic_depth_prob is None:
        stochastic_depth_prob = config.stochastic_depth_prob
    return ConvNeXt(config, num_classes=num_classes, stochastic_depth_prob=stochastic_depth_prob,
                    layer_scale=layer_scale, dtype=dtype)


register_variants(MODELS, VARIANTS, build)
