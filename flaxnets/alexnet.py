"""AlexNet in Flax.

Paper: Krizhevsky et al., "ImageNet Classification with Deep Convolutional Neural Networks",
NeurIPS 2012, in the single-tower form of Krizhevsky, "One weird trick for parallelizing
convolutional neural networks" (arXiv:1404.5997), which torchvision implements.
Follows torchvision/models/alexnet.py (module paths `features.{0,3,6,8,10}`, `classifier.{1,4,6}`).
"""
from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn

from flaxnets import register
from flaxnets.layers import (Op, Conv2d, Linear, adaptive_avg_pool2d, flatten_nchw, max_pool2d, relu,
                             torch_default_bias, torch_default_init)
from netspecs.alexnet import CONVS


def _pool3(x):
    return max_pool2d(x, 3, 2)


class Features(nn.Module):
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        i = 0
        for c in CONVS:
            fan_in = x.shape[-1] * c.kernel_size ** 2
            x = Conv2d(c.features, c.kernel_size, c.stride, c.padding, use_bias=True,
                       dtype=self.dtype, kernel_init=torch_default_init,
                       bias_init=torch_default_bias(fan_in), name=str(i))(x)
            x = Op(relu, name=str(i + 1))(x)
            i += 2
            if c.pool:
                x = Op(_pool3, name=str(i))(x)
                i += 1
        return x


class Classifier(nn.Module):
    """Sequential(Dropout, Linear "1", ReLU, Dropout, Linear "4", ReLU, Linear "6")."""

    num_classes: int
    dropout: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Dropout(self.dropout)(x, deterministic=not train)
        x = relu(Linear(4096, dtype=self.dtype, name="1")(x))
        x = nn.Dropout(self.dropout)(x, deterministic=not train)
        x = relu(Linear(4096, dtype=self.dtype, name="4")(x))
        return Linear(self.num_classes, dtype=self.dtype, name="6")(x)


class AlexNet(nn.Module):
    # backbone (flaxnets.features): the last module of `features` at each resolution
    feature_modules: ClassVar = ("features.*",)
    classifier: ClassVar = "classifier.6"

    num_classes: int = 1000
    dropout: float = 0.5
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = Features(self.dtype, name="features")(x)
        x = flatten_nchw(adaptive_avg_pool2d(x, 6))
        return Classifier(self.num_classes, self.dropout, self.dtype, name="classifier")(x, train)


@register("alexnet")
def alexnet(*, num_classes: int = 1000, dropout: float = 0.5, dtype: Any = None) -> AlexNet:
    return AlexNet(num_classes, dropout, dtype)
