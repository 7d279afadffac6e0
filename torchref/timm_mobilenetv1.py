"""MobileNetV1 reference in PyTorch with timm's module tree and state_dict (timm's
`EfficientNet` as `_gen_mobilenet_v1` builds it; `DepthwiseSeparableConv` of
timm/models/_efficientnet_blocks.py). Table in `netspecs.timm_mobilenetv1`, layout in
`flaxnets/timm_mobilenetv1.py`.
"""
from __future__ import annotations


import torch
from torch import nn
from torch.nn import functional as F

from netspecs.registry import register_variants
from netspecs.timm_mobilenetv1 import VARIANTS, Block, TimmMobileNetV1Config
from torchref import MODELS
from torchref.layers import BatchNormAct2d, DropPath, SelectAdaptivePool2d, init_goog_, timm_padding


def _conv(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride, timm_padding(k, stride), groups=groups, bias=False)


class DepthwiseSeparableConv(nn.Module):
    """timm's DepthwiseSeparableConv, pw_act=True, noskip=True ('dsa')."""

    def __init__(self, b: Block, drop_path_rate: float = 0.0):
        super().__init__()
        self.has_skip = False
        self.has_pw_act = True
        self.conv_s2d = None
        self.bn_s2d = None
        self.conv_dw = _conv(b.in_chs, b.in_chs, b.kernel, b.stride, groups=b.in_chs)
        self.bn1 = BatchNormAct2d(b.in_chs, act_layer=nn.ReLU6)
        self.aa = nn.Identity()
        self.se = nn.Identity()
        self.conv_pw = _conv(b.in_chs, b.out_chs, 1)
        self.bn2 = BatchNormAct2d(b.out_chs, act_layer=nn.ReLU6)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.se(self.aa(self.bn1(self.conv_dw(x))))
        return self.bn2(self.conv_pw(x))


class MobileNetV1(nn.Module):
    def __init__(self, cfg: TimmMobileNetV1Config, num_classes: int = 1000,
                 drop_rate: float = 0.0, drop_path_rate: float = 0.0):
        super().__init__()
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.conv_stem = _conv(3, cfg.stem_chs, 3, 2)
        self.bn1 = BatchNormAct2d(cfg.stem_chs, act_layer=nn.ReLU6)
        stages = cfg.blocks()
        total, idx, seq = sum(len(s) for s in stages), 0, []
        for stage in stages:
            blocks = []
            for b in stage:
                # timm's EfficientNetBuilder: drop_path_rate * block_idx / block_count
                blocks.append(DepthwiseSeparableConv(b, drop_path_rate * idx / total))
                idx += 1
            seq.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*seq)
        if cfg.head_chs:
            self.conv_head = _conv(stages[-1][-1].out_chs, cfg.head_chs, 1)
            self.bn2 = BatchNormAct2d(cfg.head_chs, act_layer=nn.ReLU6)
        else:
            self.conv_head = nn.Identity()
            self.bn2 = nn.Identity()
        self.num_features = cfg.num_features
        self.global_pool = SelectAdaptivePool2d()
        self.classifier = (nn.Linear(self.num_features, num_classes) if num_classes > 0
                           else nn.Identity())
        init_goog_(self)  # timm's _init_weight_goog

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn2(self.conv_head(self.blocks(self.bn1(self.conv_stem(x)))))
        x = self.global_pool(x)
        if self.drop_rate > 0.0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return self.classifier(x)


def build(config: TimmMobileNetV1Config, *, num_classes: int = 1000, drop_rate: float = 0.0,
          drop_path_rate: float = 0.0) -> MobileNetV1:
    return MobileNetV1(config, num_classes, drop_rate, drop_path_rate)


register_variants(MODELS, VARIANTS, build)
