"""MnasNet-A1 (timm's `semnasnet_*`) reference in PyTorch, module tree and state_dict identical
to timm's `EfficientNet` built by timm/models/efficientnet.py `_gen_mnasnet_a1`.

Paper: Tan et al., "MnasNet", CVPR 2019, Figure 7(a); blocks from `netspecs.semnasnet`.
Reproduces timm/models/_efficientnet_blocks.py `DepthwiseSeparableConv`, `InvertedResidual`,
`SqueezeExcite`, timm.layers `BatchNormAct2d`, `DropPath`, `SelectAdaptivePool2d` (avg) and
timm's `_init_weight_goog`. `spatial_dims=1`: Conv1d / BatchNormAct1d, same keys.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from netspecs.registry import register_variants
from netspecs.semnasnet import VARIANTS, Block, MnasNetConfig
from torchref import MODELS
from torchref.layers import DropPath, SelectAdaptivePool2d, batch_norm_act_nd, conv_nd, init_goog_


class SqueezeExcite(nn.Module):
    def __init__(self, in_chs: int, rd_channels: int, spatial_dims: int = 2):
        super().__init__()
        conv = conv_nd(spatial_dims)
        self.conv_reduce = conv(in_chs, rd_channels, 1, bias=True)
        self.act1 = nn.ReLU(inplace=True)
        self.conv_expand = conv(rd_channels, in_chs, 1, bias=True)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_se = x.mean(tuple(range(2, x.ndim)), keepdim=True)
        return x * self.gate(self.conv_expand(self.act1(self.conv_reduce(x_se))))


def _se(b: Block, spatial_dims: int) -> nn.Module:
    return SqueezeExcite(b.mid_channels, b.se_channels, spatial_dims) if b.se_channels else nn.Identity()


class DepthwiseSeparableConv(nn.Module):
    def __init__(self, b: Block, cfg: MnasNetConfig, spatial_dims: int = 2):
        super().__init__()
        conv, bn = conv_nd(spatial_dims), batch_norm_act_nd(spatial_dims)
        bn_args = dict(eps=cfg.bn_eps, momentum=cfg.bn_momentum)
        self.has_skip = b.has_skip
        self.conv_dw = conv(b.in_channels, b.in_channels, b.kernel, b.stride, b.kernel // 2,
                            groups=b.in_channels, bias=False)
        self.bn1 = bn(b.in_channels, **bn_args)
        self.aa = nn.Identity()
        self.se = _se(b, spatial_dims)
        self.conv_pw = conv(b.in_channels, b.out_channels, 1, bias=False)
        self.bn2 = bn(b.out_channels, apply_act=False, **bn_args)
        self.drop_path = DropPath(b.drop_path) if b.drop_path else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.se(self.aa(self.bn1(self.conv_dw(x))))
        x = self.bn2(self.conv_pw(x))
        return self.drop_path(x) + shortcut if self.has_skip else x


class InvertedResidual(nn.Module):
    def __init__(self, b: Block, cfg: MnasNetConfig, spatial_dims: int = 2):
        super().__init__()
        conv, bn = conv_nd(spatial_dims), batch_norm_act_nd(spatial_dims)
        bn_args = dict(eps=cfg.bn_eps, momentum=cfg.bn_momentum)
        mid = b.mid_channels
        self.has_skip = b.has_skip
        self.conv_pw = conv(b.in_channels, mid, 1, bias=False)
        self.bn1 = bn(mid, **bn_args)
        self.conv_dw = conv(mid, mid, b.kernel, b.stride, b.kernel // 2, groups=mid, bias=False)
        self.bn2 = bn(mid, **bn_args)
        self.aa = nn.Identity()
        self.se = _se(b, spatial_dims)
        self.conv_pwl = conv(mid, b.out_channels, 1, bias=False)
        self.bn3 = bn(b.out_channels, apply_act=False, **bn_args)
        self.drop_path = DropPath(b.drop_path) if b.drop_path else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.bn2(self.conv_dw(self.bn1(self.conv_pw(x))))
        x = self.bn3(self.conv_pwl(self.se(self.aa(x))))
        return self.drop_path(x) + shortcut if self.has_skip else x


class MnasNetA1(nn.Module):
    def __init__(self, config: MnasNetConfig, num_classes: int = 1000, drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, in_channels: int = 3, spatial_dims: int = 2):
        super().__init__()
        cfg = config
        conv, bn = conv_nd(spatial_dims), batch_norm_act_nd(spatial_dims)
        bn_args = dict(eps=cfg.bn_eps, momentum=cfg.bn_momentum)
        self.num_classes, self.drop_rate = num_classes, drop_rate
        self.conv_stem = conv(in_channels, cfg.stem, 3, 2, 1, bias=False)
        self.bn1 = bn(cfg.stem, **bn_args)
        blocks = {"ds": DepthwiseSeparableConv, "ir": InvertedResidual}
        stages = cfg.blocks(drop_path_rate)
        self.blocks = nn.Sequential(*[nn.Sequential(*[blocks[b.kind](b, cfg, spatial_dims)
                                                      for b in stage]) for stage in stages])
        self.conv_head = conv(stages[-1][-1].out_channels, cfg.num_features, 1, bias=False)
        self.bn2 = bn(cfg.num_features, **bn_args)
        self.global_pool = SelectAdaptivePool2d(spatial_dims)
        self.classifier = nn.Linear(cfg.num_features, num_classes)
        init_goog_(self)  # timm's _init_weight_goog

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn2(self.conv_head(self.blocks(self.bn1(self.conv_stem(x)))))
        x = self.global_pool(x)
        if self.drop_rate > 0.0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return self.classifier(x)


def build(config: MnasNetConfig, *, num_classes: int = 1000, drop_rate: float = 0.0,
          drop_path_rate: float = 0.0, in_channels: int = 3, spatial_dims: int = 2) -> MnasNetA1:
    return MnasNetA1(config, num_classes, drop_rate, drop_path_rate, in_channels, spatial_dims)


register_variants(MODELS, VARIANTS, build)
