"""SqueezeNet 1.0 / 1.1 in Flax.

Paper: Iandola et al., "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and
<0.5MB model size" (arXiv:1602.07360), Table 1 (v1.0); v1.1 is the authors' revised release
(3x3/64 stem, earlier pooling). Follows torchvision/models/squeezenet.py (module paths
`features.N` with Fire modules `features.N.{squeeze,expand1x1,expand3x3}`, `classifier.1`).
"""
from __future__ import annotations

import functools
from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from flaxnets import MODELS
from netspecs.registry import register_variants
from flaxnets.layers import Op, Conv2d, adaptive_avg_pool2d, max_pool2d, relu

# torchvision: init.kaiming_uniform_ (gain sqrt(2), fan_in), biases zero.
kaiming_uniform = nn.initializers.variance_scaling(2.0, "fan_in", "uniform")
from netspecs.squeezenet import M, SqueezeNetConfig, VARIANTS


class Fire(nn.Module):
    squeeze_planes: int
    expand1x1_planes: int
    expand3x3_planes: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        conv = functools.partial(Conv2d, use_bias=True, dtype=self.dtype,
                                 kernel_init=kaiming_uniform)
        x = relu(conv(self.squeeze_planes, 1, name="squeeze")(x))
        return jnp.concatenate([relu(conv(self.expand1x1_planes, 1, name="expand1x1")(x)),
                                relu(conv(self.expand3x3_planes, 3, name="expand3x3")(x))], axis=-1)


def _pool(x):
    return max_pool2d(x, 3, 2, ceil_mode=True)


class Features(nn.Module):
    config: SqueezeNetConfig
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        channels, k = self.config.stem
        x = Conv2d(channels, k, 2, 0, use_bias=True, dtype=self.dtype,
                   kernel_init=kaiming_uniform, name="0")(x)
        x = Op(relu, name="1")(x)
        for i, spec in enumerate(self.config.layers, start=2):
            if spec == M:
                x = Op(_pool, name=str(i))(x)
            else:
                x = Fire(*spec, dtype=self.dtype, name=str(i))(x)
        return x


class Classifier(nn.Module):
    """Sequential(Dropout, Conv2d "1", ReLU, AdaptiveAvgPool2d(1))."""

    num_classes: int
    dropout: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Dropout(self.dropout)(x, deterministic=not train)
        x = Conv2d(self.num_classes, 1, use_bias=True, dtype=self.dtype,
                   kernel_init=nn.initializers.normal(0.01), name="1")(x)
        return adaptive_avg_pool2d(relu(x), 1)


class SqueezeNet(nn.Module):
    # backbone (flaxnets.features): the last module of `features` at each resolution; the
    # pooled features (num_classes=0) skip the final 1x1 convolution `classifier.1`
    feature_modules: ClassVar = ("features.*",)
    classifier: ClassVar = "classifier.1"

    config: SqueezeNetConfig
    num_classes: int = 1000
    dropout: float = 0.5
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = Features(self.config, self.dtype, name="features")(x)
        x = Classifier(self.num_classes, self.dropout, self.dtype, name="classifier")(x, train)
        return x.reshape(x.shape[0], -1)


def build(cfg: SqueezeNetConfig, *, num_classes: int = 1000, dropout: float = 0.5, dtype: Any = None) -> SqueezeNet:
    return SqueezeNet(cfg, num_classes, dropout, dtype)


register_variants(MODELS, VARIANTS, build)
