"""EfficientNet B0-B7 and EfficientNetV2 S/M/L in Flax.

Papers: Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
ICML 2019 (arXiv:1905.11946), baseline in its Table 1 scaled by (width, depth) coefficients;
Tan & Le, "EfficientNetV2: Smaller Models and Faster Training", ICML 2021 (arXiv:2104.00298),
its Table 4 (S) and the M/L configurations of its reference code. Follows
torchvision/models/efficientnet.py (module paths `features.S.B.block.M`, `classifier.1`),
including its per-block linear stochastic-depth schedule. `spatial_dims=1` builds the same
network for (N, L, C) signals; `in_channels` the stem's input channels.
"""
from __future__ import annotations

import math
from typing import Any, ClassVar

import flax.linen as nn
import jax

from flaxnets import register
from flaxnets.blocks import BlockSpec, InvertedResidual
from flaxnets.layers import ConvBNAct, Linear, check_input, silu, spatial_mean
from netspecs.efficientnet import EfficientNetConfig, VARIANTS


class _Stage(nn.Module):
    specs: tuple[BlockSpec, ...]
    bn_eps: float
    bn_momentum: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        for i, spec in enumerate(self.specs):
            x = InvertedResidual(spec, self.bn_eps, self.bn_momentum, self.dtype, name=str(i))(x, train)
        return x


class _Features(nn.Module):
    stages: tuple[tuple[BlockSpec, ...], ...]
    head_channels: int
    bn_eps: float
    bn_momentum: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        bn = dict(act=silu, bn_eps=self.bn_eps, bn_momentum=self.bn_momentum, dtype=self.dtype)
        x = ConvBNAct(self.stages[0][0].in_channels, 3, 2, name="0", **bn)(x, train)
        for i, specs in enumerate(self.stages, start=1):
            x = _Stage(specs, self.bn_eps, self.bn_momentum, self.dtype, name=str(i))(x, train)
        return ConvBNAct(self.head_channels, 1, name=str(len(self.stages) + 1), **bn)(x, train)


class _Classifier(nn.Module):
    num_classes: int
    dropout: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Dropout(self.dropout, name="0")(x, deterministic=not train)
        r = 1.0 / math.sqrt(self.num_classes)
        init = lambda key, shape, dtype: jax.random.uniform(key, shape, dtype, -r, r)  # noqa: E731
        return Linear(self.num_classes, dtype=self.dtype, name="1", kernel_init=init,
                      bias_init=nn.initializers.zeros)(x)


class EfficientNet(nn.Module):
    # backbone (flaxnets.features): the last module of `features` at each resolution (the last is the
    # 1x1 head conv)
    feature_modules: ClassVar = ("features.*",)
    classifier: ClassVar = "classifier.1"

    config: EfficientNetConfig
    num_classes: int = 1000
    dropout: float = 0.2
    stochastic_depth_prob: float = 0.2
    dtype: Any = None
    spatial_dims: int = 2
    in_channels: int = 3

    @nn.compact
    def __call__(self, x, train: bool = False):
        check_input(x, self.spatial_dims, self.in_channels, "EfficientNet")
        cfg = self.config
        stages = cfg.blocks(self.stochastic_depth_prob)
        head = cfg.last_channel or 4 * stages[-1][-1].out_channels
        x = _Features(stages, head, cfg.bn_eps, cfg.bn_momentum, self.dtype,
                      name="features")(x, train)
        x = spatial_mean(x)
        return _Classifier(self.num_classes, self.dropout, self.dtype, name="classifier")(x, train)


def _builder(cfg: EfficientNetConfig):
    def build(*, num_classes: int = 1000, dropout: float = cfg.dropout,
              stochastic_depth_prob: float = 0.2, spatial_dims: int = 2, in_channels: int = 3,
              dtype: Any = None) -> EfficientNet:
        return EfficientNet(cfg, num_classes=num_classes, dropout=dropout,
                            stochastic_depth_prob=stochastic_depth_prob, dtype=dtype,
                            spatial_dims=spatial_dims, in_channels=in_channels)
    return build


for _name, _cfg in VARIANTS.items():
    register(_name, _builder(_cfg))
