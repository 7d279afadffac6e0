"""ResNet / ResNeXt / Wide ResNet reference in PyTorch, state_dict-identical to
torchvision/models/resnet.py (ResNet v1.5).

Papers: He et al., CVPR 2016; Xie et al., CVPR 2017; Zagoruyko & Komodakis, BMVC 2016.
Variants come from `flaxnets.resnet.VARIANTS`, the one place the table is written.
`spatial_dims=1`: Conv1d / BatchNorm1d / MaxPool1d / AdaptiveAvgPool1d (same keys),
`in_channels`: the stem's input channels.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from netspecs.resnet import VARIANTS, ResNetConfig
from torchref import register
from torchref.layers import BN_TYPES, CONV_TYPES, adaptive_avg_pool_nd, batch_norm_nd, conv_nd, max_pool_nd


def conv3x3(cin: int, cout: int, stride: int = 1, groups: int = 1, dilation: int = 1,
            spatial_dims: int = 2) -> nn.Module:
    return conv_nd(spatial_dims)(cin, cout, 3, stride, padding=dilation, groups=groups,
                                 bias=False, dilation=dilation)


def conv1x1(cin: int, cout: int, stride: int = 1, spatial_dims: int = 2) -> nn.Module:
    return conv_nd(spatial_dims)(cin, cout, 1, stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None, groups: int = 1, base_width: int = 64,
                 dilation: int = 1, spatial_dims: int = 2):
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64")
        if dilation > 1:
            raise NotImplementedError("Dilation > 1 not supported in BasicBlock")
        bn = batch_norm_nd(spatial_dims)
        self.conv1 = conv3x3(inplanes, planes, stride, spatial_dims=spatial_dims)
        self.bn1 = bn(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes, spatial_dims=spatial_dims)
        self.bn2 = bn(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        identity = self.downsample(x) if self.downsample is not None else x
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None, groups: int = 1, base_width: int = 64,
                 dilation: int = 1, spatial_dims: int = 2):
        super().__init__()
        bn = batch_norm_nd(spatial_dims)
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width, spatial_dims=spatial_dims)
        self.bn1 = bn(width)
        self.conv2 = conv3x3(width, width, stride, groups, dilation, spatial_dims)
        self.bn2 = bn(width)
        self.conv3 = conv1x1(width, planes * self.expansion, spatial_dims=spatial_dims)
        self.bn3 = bn(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = self.downsample(x) if self.downsample is not None else x
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, config: ResNetConfig, num_classes: int = 1000,
                 zero_init_residual: bool = False, groups: int = 1, width_per_group: int = 64,
                 replace_stride_with_dilation: Sequence[bool] = (False, False, False),
                 spatial_dims: int = 2, in_channels: int = 3):
        super().__init__()
        if len(replace_stride_with_dilation) != 3:
            raise ValueError("replace_stride_with_dilation should be None or a 3-element tuple, "
                             f"got {replace_stride_with_dilation}")
        block = BasicBlock if config.block == "basic" else Bottleneck
        self.inplanes, self.dilation = 64, 1
        self.groups, self.base_width = groups, width_per_group
        self.spatial_dims = spatial_dims
        self.conv1 = conv_nd(spatial_dims)(in_channels, 64, kernel_size=7, stride=2, padding=3,
                                           bias=False)
        self.bn1 = batch_norm_nd(spatial_dims)(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = max_pool_nd(spatial_dims)(kernel_size=3, stride=2, padding=1)
        for s, (planes, depth) in enumerate(zip((64, 128, 256, 512), config.layers)):
            dilate = s > 0 and replace_stride_with_dilation[s - 1]
            self.add_module(f"layer{s + 1}",
                            self._make_layer(block, planes, depth, 1 if s == 0 else 2, dilate))
        self.avgpool = adaptive_avg_pool_nd(spatial_dims)(1)
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, CONV_TYPES):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, BN_TYPES):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(self, block, planes: int, blocks: int, stride: int,
                    dilate: bool) -> nn.Sequential:
        downsample, previous_dilation = None, self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride, self.spatial_dims),
                batch_norm_nd(self.spatial_dims)(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width,
                        previous_dilation, self.spatial_dims)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, groups=self.groups, base_width=self.base_width,
                         dilation=self.dilation, spatial_dims=self.spatial_dims)
                   for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _builder(cfg: ResNetConfig):
    def build(*, num_classes: int = 1000, zero_init_residual: bool = False,
              groups: Optional[int] = None, width_per_group: Optional[int] = None,
              replace_stride_with_dilation: Optional[Sequence[bool]] = None,
              spatial_dims: int = 2, in_channels: int = 3) -> ResNet:
        g, w = cfg.resolve(groups, width_per_group)
        return ResNet(cfg, num_classes, zero_init_residual, g, w,
                      tuple(replace_stride_with_dilation or (False, False, False)),
                      spatial_dims, in_channels)
    return build


for _name, _cfg in VARIANTS.items():
    register(_name, _builder(_cfg))
