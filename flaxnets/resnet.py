"""ResNet, ResNeXt and Wide ResNet in Flax.

Papers: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (arXiv:1512.03385),
Table 1; Xie et al., "Aggregated Residual Transformations for Deep Neural Networks", CVPR 2017
(arXiv:1611.05431), Table 1; Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016
(arXiv:1605.07146). Follows torchvision/models/resnet.py: ResNet v1.5 (the bottleneck's stride
sits on its 3x3 convolution); module paths `conv1`, `bn1`,
`layerS.i.{conv1,bn1,...,downsample.{0,1}}`, `fc`. `spatial_dims=1` builds the same network
for (N, L, C) signals; `in_channels` the stem's input channels.
"""
from __future__ import annotations

from typing import Any, ClassVar, Optional, Sequence

import flax.linen as nn

from flaxnets import register
from flaxnets.layers import (BatchNorm2d, Conv2d, ConvBNAct, Linear, check_input, max_pool2d, relu,
                             spatial_mean)
from netspecs.resnet import ResNetConfig, VARIANTS


class BasicBlock(nn.Module):
    planes: int
    stride: int = 1
    downsample: bool = False
    groups: int = 1
    base_width: int = 64
    dilation: int = 1
    zero_init_residual: bool = False
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        if self.groups != 1 or self.base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64")
        if self.dilation > 1:
            raise NotImplementedError("Dilation > 1 not supported in BasicBlock")
        last_init = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones
        out = Conv2d(self.planes, 3, self.stride, dtype=self.dtype, name="conv1")(x)
        out = relu(BatchNorm2d(dtype=self.dtype, name="bn1")(out, train))
        out = Conv2d(self.planes, 3, dtype=self.dtype, name="conv2")(out)
        out = BatchNorm2d(dtype=self.dtype, scale_init=last_init, name="bn2")(out, train)
        if self.downsample:
            x = ConvBNAct(self.planes, 1, self.stride, act=None, dtype=self.dtype,
                          name="downsample")(x, train)
        return relu(out + x)


class Bottleneck(nn.Module):
    planes: int
    stride: int = 1
    downsample: bool = False
    groups: int = 1
    base_width: int = 64
    dilation: int = 1
    zero_init_residual: bool = False
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        width = int(self.planes * (self.base_width / 64.0)) * self.groups
        last_init = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones
        out = Conv2d(width, 1, dtype=self.dtype, name="conv1")(x)
        out = relu(BatchNorm2d(dtype=self.dtype, name="bn1")(out, train))
        out = Conv2d(width, 3, self.stride, dilation=self.dilation, groups=self.groups,
                     dtype=self.dtype, name="conv2")(out)
        out = relu(BatchNorm2d(dtype=self.dtype, name="bn2")(out, train))
        out = Conv2d(self.planes * 4, 1, dtype=self.dtype, name="conv3")(out)
        out = BatchNorm2d(dtype=self.dtype, scale_init=last_init, name="bn3")(out, train)
        if self.downsample:
            x = ConvBNAct(self.planes * 4, 1, self.stride, act=None, dtype=self.dtype,
                          name="downsample")(x, train)
        return relu(out + x)


class Stage(nn.Module):
    """`layerS`: blocks "0".."n-1"; the first one strides and projects the shortcut."""

    block: str
    planes: int
    depth: int
    stride: int
    downsample: bool
    groups: int
    base_width: int
    first_dilation: int
    dilation: int
    zero_init_residual: bool
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        cls = BasicBlock if self.block == "basic" else Bottleneck
        for i in range(self.depth):
            first = i == 0
            x = cls(self.planes, self.stride if first else 1, self.downsample and first,
                    self.groups, self.base_width, self.first_dilation if first else self.dilation,
                    self.zero_init_residual, self.dtype, name=str(i))(x, train)
        return x


class ResNet(nn.Module):
    # backbone (flaxnets.features): torchvision's detection backbones take layer1..layer4
    feature_modules: ClassVar = ("layer1", "layer2", "layer3", "layer4")
    feature_rule: ClassVar = "all"  # (a dilated stage keeps its map: replace_stride_with_dilation)
    classifier: ClassVar = "fc"

    config: ResNetConfig
    num_classes: int = 1000
    zero_init_residual: bool = False
    groups: int = 1
    width_per_group: int = 64
    replace_stride_with_dilation: Sequence[bool] = (False, False, False)
    dtype: Any = None
    spatial_dims: int = 2
    in_channels: int = 3

    @nn.compact
    def __call__(self, x, train: bool = False):
        check_input(x, self.spatial_dims, self.in_channels, "ResNet")
        if len(self.replace_stride_with_dilation) != 3:
            raise ValueError("replace_stride_with_dilation should be None or a 3-element tuple, "
                             f"got {self.replace_stride_with_dilation}")
        cfg = self.config
        x = Conv2d(64, 7, 2, 3, dtype=self.dtype, name="conv1")(x)
        x = relu(BatchNorm2d(dtype=self.dtype, name="bn1")(x, train))
        x = max_pool2d(x, 3, 2, 1)
        inplanes, dilation = 64, 1
        for s, (planes, depth) in enumerate(zip((64, 128, 256, 512), cfg.layers)):
            stride, first_dilation = (1 if s == 0 else 2), dilation
            if s > 0 and self.replace_stride_with_dilation[s - 1]:
                dilation, stride = dilation * stride, 1
            downsample = stride != 1 or inplanes != planes * cfg.expansion
            x = Stage(cfg.block, planes, depth, stride, downsample, self.groups,
                      self.width_per_group, first_dilation, dilation, self.zero_init_residual,
                      self.dtype, name=f"layer{s + 1}")(x, train)
            inplanes = planes * cfg.expansion
        x = spatial_mean(x)
        return Linear(self.num_classes, dtype=self.dtype, name="fc")(x)


def _builder(cfg: ResNetConfig):
    def build(*, num_classes: int = 1000, zero_init_residual: bool = False,
              groups: Optional[int] = None, width_per_group: Optional[int] = None,
              replace_stride_with_dilation: Optional[Sequence[bool]] = None,
              spatial_dims: int = 2, in_channels: int = 3, dtype: Any = None) -> ResNet:
        g, w = cfg.resolve(groups, width_per_group)
        rswd = tuple(replace_stride_with_dilation or (False, False, False))
        return ResNet(cfg, num_classes, zero_init_residual, g, w, rswd, dtype, spatial_dims,
                      in_channels)
    return build


for _name, _cfg in VARIANTS.items():
    register(_name, _builder(_cfg))
