"""ShuffleNetV2 in Flax.

Paper: Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design",
ECCV 2018 (arXiv:1807.11164), Table 5. Follows torchvision/models/shufflenetv2.py (module paths
`conv1`, `stage{2,3,4}.i.branch{1,2}.*`, `conv5`, `fc`).
"""
from __future__ import annotations

import functools
from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from flaxnets import MODELS
from netspecs.registry import register_variants
from flaxnets.layers import (Op, BatchNorm2d, Conv2d, ConvBNAct, Linear, max_pool2d, relu,
                             torch_default_init)

# Table 5: repeats of stages 2-4 and output channels of conv1, stages 2-4, conv5.
from netspecs.shufflenetv2 import STAGES_REPEATS, VARIANTS


def channel_shuffle(x, groups: int):
    """torch's NCHW view(b, g, c/g, h, w).transpose(1, 2) on the channel axis of NHWC."""
    *lead, c = x.shape
    x = x.reshape(*lead, groups, c // groups)
    return jnp.swapaxes(x, -1, -2).reshape(*lead, c)


class _Branch1(nn.Module):
    """depthwise 3x3 (0) + BN (1), pointwise (2) + BN (3) + ReLU."""

    features: int
    stride: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        conv = functools.partial(Conv2d, kernel_init=torch_default_init, dtype=self.dtype)
        bn = functools.partial(BatchNorm2d, dtype=self.dtype)
        c = x.shape[-1]
        x = bn(name="1")(conv(c, 3, self.stride, groups=c, name="0")(x), train)
        return relu(bn(name="3")(conv(self.features, 1, name="2")(x), train))


class _Branch2(nn.Module):
    """pointwise (0) + BN (1) + ReLU, depthwise 3x3 (3) + BN (4), pointwise (5) + BN (6) + ReLU."""

    features: int
    stride: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        conv = functools.partial(Conv2d, kernel_init=torch_default_init, dtype=self.dtype)
        bn = functools.partial(BatchNorm2d, dtype=self.dtype)
        c = self.features
        x = relu(bn(name="1")(conv(c, 1, name="0")(x), train))
        x = bn(name="4")(conv(c, 3, self.stride, groups=c, name="3")(x), train)
        return relu(bn(name="6")(conv(c, 1, name="5")(x), train))


class InvertedResidual(nn.Module):
    features: int
    stride: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        branch = self.features // 2
        if self.stride == 1:
            if x.shape[-1] != 2 * branch:
                raise ValueError(f"{self.name}: stride 1 needs {2 * branch} input channels")
            x1, x2 = jnp.split(x, 2, axis=-1)  # torch's x.chunk(2, dim=1)
        else:
            x1 = _Branch1(branch, self.stride, self.dtype, name="branch1")(x, train)
            x2 = x
        x2 = _Branch2(branch, self.stride, self.dtype, name="branch2")(x2, train)
        return channel_shuffle(jnp.concatenate([x1, x2], axis=-1), 2)


class _Stage(nn.Module):
    features: int
    repeats: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        for i in range(self.repeats):
            x = InvertedResidual(self.features, 2 if i == 0 else 1, self.dtype,
                                 name=str(i))(x, train)
        return x


def _maxpool(x):
    return max_pool2d(x, 3, 2, 1)


class ShuffleNetV2(nn.Module):
    # backbone (flaxnets.features): the last of conv1, maxpool, stage2..4, conv5 at each
    # resolution (conv1, maxpool, stage2, stage3, conv5)
    feature_modules: ClassVar = ("conv1", "maxpool", "stage*", "conv5")
    classifier: ClassVar = "fc"

    stages_out_channels: tuple[int, ...]
    stages_repeats: tuple[int, ...] = STAGES_REPEATS
    num_classes: int = 1000
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        ch = self.stages_out_channels
        # torchvision leaves every conv and the fc at torch's default init.
        x = ConvBNAct(ch[0], 3, 2, dtype=self.dtype, kernel_init=torch_default_init, name="conv1")(x, train)
        x = Op(_maxpool, name="maxpool")(x)
        for s, (repeats, c) in enumerate(zip(self.stages_repeats, ch[1:4]), start=2):
            x = _Stage(c, repeats, self.dtype, name=f"stage{s}")(x, train)
        x = ConvBNAct(ch[4], 1, dtype=self.dtype, kernel_init=torch_default_init, name="conv5")(x, train)
        x = jnp.mean(x, axis=(1, 2))
        return Linear(self.num_classes, dtype=self.dtype, name="fc")(x)


def build(channels: tuple[int, ...], *, num_classes: int = 1000, dtype: Any = None) -> ShuffleNetV2:
    return ShuffleNetV2(channels, num_classes=num_classes, dtype=dtype)


register_variants(MODELS, VARIANTS, build)
