"""VGG in Flax.

Paper: Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015 (arXiv:1409.1556), Table 1 (configurations A, B, D, E; the `_bn`
variants add BatchNorm after every convolution). Follows torchvision/models/vgg.py (module
paths `features.N` in Sequential order, `classifier.{0,3,6}`).
"""
from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn

from flaxnets import MODELS
from netspecs.registry import register_variants
from flaxnets.layers import (Op, BatchNorm2d, Conv2d, Linear, adaptive_avg_pool2d, flatten_nchw,
                             kaiming_fan_out, max_pool2d, relu, torch_default_bias,
                             torch_default_init)

from netspecs.vgg import M, VGGConfig, VARIANTS


def _pool2(x):
    return max_pool2d(x, 2, 2)


class Features(nn.Module):
    config: VGGConfig
    init_weights: bool = True
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        i = 0
        for v in self.config.layers:
            if v == M:
                x, i = Op(_pool2, name=str(i))(x), i + 1
                continue
            if self.init_weights:
                inits = dict(kernel_init=kaiming_fan_out, bias_init=nn.initializers.zeros)
            else:
                inits = dict(kernel_init=torch_default_init,
                             bias_init=torch_default_bias(x.shape[-1] * 9))
            x = Conv2d(v, 3, padding=1, use_bias=True, dtype=self.dtype, name=str(i), **inits)(x)
            if self.config.batch_norm:
                x = BatchNorm2d(dtype=self.dtype, name=str(i + 1))(x, train)
            i += 2 if self.config.batch_norm else 1
            x, i = Op(relu, name=str(i))(x), i + 1
        return x


class Classifier(nn.Module):
    """Sequential(Linear "0", ReLU, Dropout, Linear "3", ReLU, Dropout, Linear "6")."""

    num_classes: int
    dropout: float
    init_weights: bool = True
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        inits = (dict(kernel_init=nn.initializers.normal(0.01), bias_init=nn.initializers.zeros)
                 if self.init_weights else {})
        for i in (0, 3):
            x = relu(Linear(4096, dtype=self.dtype, name=str(i), **inits)(x))
            x = nn.Dropout(self.dropout)(x, deterministic=not train)
        return Linear(self.num_classes, dtype=self.dtype, name="6", **inits)(x)


class VGG(nn.Module):
    # backbone (flaxnets.features): the last module of `features` at each resolution (the ReLU
    # before each max pool, the last pool)
    feature_modules: ClassVar = ("features.*",)
    classifier: ClassVar = "classifier.6"

    config: VGGConfig
    num_classes: int = 1000
    init_weights: bool = True
    dropout: float = 0.5
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = Features(self.config, self.init_weights, self.dtype, name="features")(x, train)
        x = flatten_nchw(adaptive_avg_pool2d(x, 7))
        return Classifier(self.num_classes, self.dropout, self.init_weights, self.dtype,
                          name="classifier")(x, train)


def build(cfg: VGGConfig, *, num_classes: int = 1000, init_weights: bool = True, dropout: float = 0.5,
          dtype: Any = None) -> VGG:
    return VGG(cfg, num_classes, init_weights, dropout, dtype)


register_variants(MODELS, VARIANTS, build)
