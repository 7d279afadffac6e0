"""Specs of the inverted-residual blocks shared by MobileNetV3 and EfficientNet V1/V2: torchvision's
`block` Sequential as a list of Conv / SE entries (flaxnets/blocks.py and torchref/blocks.py
build the same modules from `BlockSpec.layers()`).
"""
from __future__ import annotations

import dataclasses
from typing import Optional, NamedTuple

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
