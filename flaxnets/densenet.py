"""DenseNet-BC in Flax.

Paper: Huang et al., "Densely Connected Convolutional Networks", CVPR 2017 (arXiv:1608.06993);
variants from its Table 1 (DenseNet-121/169/201, k=32); DenseNet-161 (k=48) is the authors'
ImageNet release. Follows torchvision/models/densenet.py (module paths
`features.{conv0,norm0,denseblockB.denselayerL.{norm1,conv1,norm2,conv2},transitionB.{norm,conv},
norm5}`, `classifier`). `memory_efficient=True` rematerialises each dense layer in the
backward pass (`nn.remat`, torch's checkpointing): same numbers, less activation memory.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from flaxnets import MODELS
from netspecs.registry import register_variants
from flaxnets.layers import Op, BatchNorm2d, Conv2d, Linear, avg_pool2d, max_pool2d, relu
from netspecs.densenet import DenseNetConfig, VARIANTS

# torch's kaiming_normal_ defaults: fan_in, gain sqrt(2), untruncated.
kaiming_fan_in = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


class DenseLayer(nn.Module):
    """BN-ReLU-Conv1x1-BN-ReLU-Conv3x3 on the concatenation of all previous features."""

    growth_rate: int
    bn_size: int
    drop_rate: float = 0.0
    dtype: Any = None

    @nn.compact
    def __call__(self, features: tuple, train: bool = False):
        x = jnp.concatenate(features, axis=-1)  # torch.cat([prev..., ], 1): oldest first
        x = relu(BatchNorm2d(dtype=self.dtype, name="norm1")(x, train))
        x = Conv2d(self.bn_size * self.growth_rate, 1, padding=0, kernel_init=kaiming_fan_in,
                   dtype=self.dtype, name="conv1")(x)
        x = relu(BatchNorm2d(dtype=self.dtype, name="norm2")(x, train))
        x = Conv2d(self.growth_rate, 3, padding=1, kernel_init=kaiming_fan_in, dtype=self.dtype,
                   name="conv2")(x)
        return nn.Dropout(self.drop_rate)(x, deterministic=not train)


class DenseBlock(nn.Module):
    num_layers: int
    growth_rate: int
    bn_size: int
    drop_rate: float = 0.0
    memory_efficient: bool = False
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        layer = nn.remat(DenseLayer, static_argnums=(2,)) if self.memory_efficient else DenseLayer
        features = [x]
        for i in range(self.num_layers):
            features.append(layer(self.growth_rate, self.bn_size, self.drop_rate, self.dtype,
                                  name=f"denselayer{i + 1}")(tuple(features), train))
        return jnp.concatenate(features, axis=-1)


class Transition(nn.Module):
    features: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = relu(BatchNorm2d(dtype=self.dtype, name="norm")(x, train))
        x = Conv2d(self.features, 1, padding=0, kernel_init=kaiming_fan_in, dtype=self.dtype,
                   name="conv")(x)
        return avg_pool2d(x, 2, 2)


def _pool0(x):
    return max_pool2d(x, 3, 2, 1)


class Features(nn.Module):
    config: DenseNetConfig
    drop_rate: float = 0.0
    memory_efficient: bool = False
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        cfg = self.config
        x = Conv2d(cfg.num_init_features, 7, 2, 3, kernel_init=kaiming_fan_in, dtype=self.dtype,
                   name="conv0")(x)
        x = BatchNorm2d(dtype=self.dtype, name="norm0")(x, train)
        x = Op(_pool0, name="pool0")(Op(relu, name="relu0")(x))
        width = cfg.num_init_features
        for b, num_layers in enumerate(cfg.block_config, start=1):
            x = DenseBlock(num_layers, cfg.growth_rate, cfg.bn_size, self.drop_rate,
                           self.memory_efficient, self.dtype, name=f"denseblock{b}")(x, train)
            width += num_layers * cfg.growth_rate
            if b != len(cfg.block_config):
                width //= 2
                x = Transition(width, self.dtype, name=f"transition{b}")(x, train)
        return BatchNorm2d(dtype=self.dtype, name="norm5")(x, train)


class DenseNet(nn.Module):
    # backbone (flaxnets.features): the last module of `features` at each resolution (relu0,
    # denseblock1..3, norm5: torchvision applies norm5's ReLU in forward, so the last map is
    # norm5's output, before it)
    feature_modules: ClassVar = ("features.*",)
    classifier: ClassVar = "classifier"

    config: DenseNetConfig
    drop_rate: float = 0.0
    num_classes: int = 1000
    memory_efficient: bool = False
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = Features(self.config, self.drop_rate, self.memory_efficient, self.dtype,
                     name="features")(x, train)
        x = jnp.mean(relu(x), axis=(1, 2))
        return Linear(self.num_classes, bias_init=nn.initializers.zeros, dtype=self.dtype,
                      name="classifier")(x)


def build(cfg: DenseNetConfig, *, num_classes: int = 1000, drop_rate: float = 0.0, bn_size: int = 4,
          memory_efficient: bool = False, dtype: Any = None) -> DenseNet:
    return DenseNet(dataclasses.replace(cfg, bn_size=bn_size), drop_rate, num_classes,
                    memory_efficient, dtype)


register_variants(MODELS, VARIANTS, build)
