"""GoogLeNet (Inception v1) in Flax.

Paper: Szegedy et al., "Going Deeper with Convolutions", CVPR 2015 (arXiv:1409.4842);
inception widths from its Table 1. Follows torchvision/models/googlenet.py (module paths
`conv1..3`, `inception{3a..5b}.branch{1..4}`, `aux{1,2}.{conv,fc1,fc2}`, `fc`), including its
deviations from the paper: the "5x5" branch uses a 3x3 convolution, BN after every convolution.
`BasicConv2d` and `transform_inputs` are shared with Inception-v3 (`flaxnets/inception.py`).
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from flaxnets import register
from flaxnets.layers import (BatchNorm2d, Conv2d, Linear, adaptive_avg_pool2d, flatten_nchw,
                             max_pool2d, relu, torch_default_init)
from netspecs.googlenet import InceptionSpec, INCEPTIONS


def trunc_normal(std: float) -> Callable:
    """torch.nn.init.trunc_normal_(std=std, a=-2, b=2): the bounds are absolute, not in stds."""
    return nn.initializers.truncated_normal(std, lower=-2.0 / std, upper=2.0 / std)


def transform_inputs(x):
    """torchvision's `_transform_input`: ImageNet-normalised input -> the (x - 0.5) / 0.5
    normalisation of the original weights, per channel (NHWC: channels on the last axis)."""
    scale = jnp.asarray([0.229 / 0.5, 0.224 / 0.5, 0.225 / 0.5], x.dtype)
    shift = jnp.asarray([(0.485 - 0.5) / 0.5, (0.456 - 0.5) / 0.5, (0.406 - 0.5) / 0.5], x.dtype)
    return x * scale + shift


class BasicConv2d(nn.Module):
    """conv (no bias) -> bn (eps 1e-3) -> relu; torch's Conv2d padding default is 0."""

    features: int
    kernel_size: int | Sequence[int] = 1
    stride: int | Sequence[int] = 1
    padding: int | Sequence[int] = 0
    kernel_init: Callable = torch_default_init
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = Conv2d(self.features, self.kernel_size, self.stride, self.padding,
                   kernel_init=self.kernel_init, dtype=self.dtype, name="conv")(x)
        return relu(BatchNorm2d(eps=1e-3, dtype=self.dtype, name="bn")(x, train))


class _Seq(nn.Module):
    """A torch nn.Sequential of BasicConv2d's at the given indices (other entries: pooling)."""

    convs: tuple[tuple[int, int, int, int], ...]  # (index, features, kernel, padding)
    pool_first: bool = False
    kernel_init: Callable = torch_default_init
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        if self.pool_first:
            x = max_pool2d(x, 3, 1, 1, ceil_mode=True)
        for i, f, k, p in self.convs:
            x = BasicConv2d(f, k, padding=p, kernel_init=self.kernel_init, dtype=self.dtype,
                            name=str(i))(x, train)
        return x


class Inception(nn.Module):
    spec: InceptionSpec
    kernel_init: Callable = torch_default_init
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        s, kw = self.spec, dict(kernel_init=self.kernel_init, dtype=self.dtype)
        b1 = BasicConv2d(s.ch1x1, 1, name="branch1", **kw)(x, train)
        b2 = _Seq(((0, s.ch3x3red, 1, 0), (1, s.ch3x3, 3, 1)), name="branch2", **kw)(x, train)
        # torchvision's known deviation: the "5x5" branch is a 3x3 convolution.
        b3 = _Seq(((0, s.ch5x5red, 1, 0), (1, s.ch5x5, 3, 1)), name="branch3", **kw)(x, train)
        b4 = _Seq(((1, s.pool_proj, 1, 0),), pool_first=True, name="branch4", **kw)(x, train)
        return jnp.concatenate([b1, b2, b3, b4], axis=-1)


class InceptionAux(nn.Module):
    num_classes: int
    dropout: float = 0.7
    kernel_init: Callable = torch_default_init
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        kw = dict(kernel_init=self.kernel_init, dtype=self.dtype)
        x = adaptive_avg_pool2d(x, (4, 4))
        x = BasicConv2d(128, 1, name="conv", **kw)(x, train)
        x = relu(Linear(1024, name="fc1", **kw)(flatten_nchw(x)))
        x = nn.Dropout(self.dropout)(x, deterministic=not train)
        return Linear(self.num_classes, name="fc2", **kw)(x)


class GoogLeNet(nn.Module):
    """Eval: logits. Train with aux_logits: (logits, aux_logits2, aux_logits1), torchvision's
    GoogLeNetOutputs order."""

    # backbone (flaxnets.features): the last of conv1..3 / inception* at each resolution
    feature_modules: ClassVar = ("conv1", "conv2", "conv3", "inception*")
    classifier: ClassVar = "fc"

    num_classes: int = 1000
    aux_logits: bool = True
    transform_input: bool = False
    init_weights: Optional[bool] = None  # None: True, as torchvision
    dropout: float = 0.2
    dropout_aux: float = 0.7
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        init = trunc_normal(0.01) if self.init_weights in (None, True) else torch_default_init
        kw = dict(kernel_init=init, dtype=self.dtype)
        if self.transform_input:
            x = transform_inputs(x)
        x = BasicConv2d(64, 7, 2, 3, name="conv1", **kw)(x, train)
        x = max_pool2d(x, 3, 2, ceil_mode=True)
        x = BasicConv2d(64, 1, name="conv2", **kw)(x, train)
        x = BasicConv2d(192, 3, padding=1, name="conv3", **kw)(x, train)
        x = max_pool2d(x, 3, 2, ceil_mode=True)
        # The heads run in train mode only; eval-mode init still creates their variables.
        run_aux = self.aux_logits and (train or self.is_initializing())
        aux = []
        for name, spec in INCEPTIONS.items():
            x = Inception(spec, name=name, **kw)(x, train)
            if name in ("inception4a", "inception4d") and run_aux:
                aux.append(InceptionAux(self.num_classes, self.dropout_aux,
                                        name=f"aux{len(aux) + 1}", **kw)(x, train))
            if name in ("inception3b", "inception4e"):
                x = max_pool2d(x, 3 if name == "inception3b" else 2, 2, ceil_mode=True)
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dropout(self.dropout)(x, deterministic=not train)
        x = Linear(self.num_classes, name="fc", **kw)(x)
        if train and self.aux_logits:
            return x, aux[1], aux[0]
        return x


@register("googlenet")
def googlenet(*, num_classes: int = 1000, aux_logits: bool = True, transform_input: bool = False,
              init_weights: Optional[bool] = None, dropout: float = 0.2, dropout_aux: float = 0.7,
              dtype: Any = None) -> GoogLeNet:
    return GoogLeNet(num_classes, aux_logits, transform_input, init_weights, dropout, dropout_aux,
                     dtype)
