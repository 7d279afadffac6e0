"""Inverted-residual blocks shared by MobileNetV3 and EfficientNet V1/V2, in Flax.

MobileNetV3's bneck (Howard et al. 2019, "Searching for MobileNetV3"), EfficientNet's MBConv
(Tan & Le 2019, "EfficientNet") and EfficientNetV2's FusedMBConv (Tan & Le 2021,
"EfficientNetV2"). Follows torchvision/models/mobilenetv3.py `InvertedResidual` and
torchvision/models/efficientnet.py `MBConv` / `FusedMBConv`: each is a `block` Sequential
("0", "1", ...) plus an optional residual, so one spec and one module cover all three.
`torchref/blocks.py` builds the same `block` from the same `BlockSpec.layers()`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flaxnets import layers
from flaxnets.layers import ConvBNAct, SqueezeExcitation, hardswish, relu, sigmoid, silu, stochastic_depth


@jax.custom_vjp
def hardsigmoid(x):
    """torch's hardsigmoid, including its backward: the slope is float32(1/6) in every dtype
    (ATen's `one_sixth(1.0f / 6.0f)`), 3e-8 off 1/6 in float64."""
    return layers.hardsigmoid(x)


def _hardsigmoid_fwd(x):
    return hardsigmoid(x), x


def _hardsigmoid_bwd(x, g):
    return (jnp.where((x > -3) & (x < 3), g * float(np.float32(1 / 6)), jnp.zeros_like(g)),)


hardsigmoid.defvjp(_hardsigmoid_fwd, _hardsigmoid_bwd)

ACTS = {"relu": relu, "hardswish": hardswish, "silu": silu, "sigmoid": sigmoid,
        "hardsigmoid": hardsigmoid}


class Conv(NamedTuple):
    """A Conv2dNormActivation in `block`."""
    out: int
    kernel: int
    stride: int = 1
    dilation: int = 1
    groups: int = 1
    act: Optional[str] = None


class SE(NamedTuple):
    """A SqueezeExcitation in `block`."""
    squeeze: int
    act: str
    scale_act: str


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    in_channels: int
    expanded: int
    out_channels: int
    kernel: int
    stride: int
    act: str                      # key of ACTS
    se: Optional[SE] = None
    fused: bool = False           # FusedMBConv: k x k expand conv instead of 1x1 + depthwise
    dilation: int = 1
    sd_prob: Optional[float] = None  # stochastic depth on the residual (None: MobileNetV3, none)

    @property
    def use_res_connect(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels

    def layers(self) -> list:
        """torchvision's `block` Sequential, in order."""
        if self.fused:
            if self.expanded == self.in_channels:  # no project conv: one activated k x k conv
                return [Conv(self.out_channels, self.kernel, self.stride, act=self.act)]
            return [Conv(self.expanded, self.kernel, self.stride, act=self.act),
                    Conv(self.out_channels, 1)]
        layers = []
        if self.expanded != self.in_channels:
            layers.append(Conv(self.expanded, 1, act=self.act))
        # MobileNetV3's dilated tail keeps stride 1 (but still no residual: stride says 2).
        stride = 1 if self.dilation > 1 else self.stride
        layers.append(Conv(self.expanded, self.kernel, stride, self.dilation, self.expanded,
                           self.act))
        if self.se is not None:
            layers.append(self.se)
        layers.append(Conv(self.out_channels, 1))
        return layers


class _Block(nn.Module):
    spec: BlockSpec
    bn_eps: float
    bn_momentum: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        for i, layer in enumerate(self.spec.layers()):
            if isinstance(layer, SE):
                x = SqueezeExcitation(layer.squeeze, ACTS[layer.act], ACTS[layer.scale_act],
                                      dtype=self.dtype, name=str(i))(x)
            else:
                x = ConvBNAct(layer.out, layer.kernel, layer.stride, dilation=layer.dilation,
                              groups=layer.groups, act=ACTS.get(layer.act),
                              bn_eps=self.bn_eps, bn_momentum=self.bn_momentum,
                              dtype=self.dtype, name=str(i))(x, train)
        return x


class InvertedResidual(nn.Module):
    """`block` (+ stochastic depth and the identity when stride 1 and in == out)."""

    spec: BlockSpec
    bn_eps: float
    bn_momentum: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        y = _Block(self.spec, self.bn_eps, self.bn_momentum, self.dtype, name="block")(x, train)
        if self.spec.use_res_connect:
            y = stochastic_depth(y, self.spec.sd_prob or 0.0, train, self) + x
        return y
