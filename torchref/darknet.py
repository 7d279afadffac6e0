"""DarkNet / CSPDarkNet reference in PyTorch, state_dict-identical to timm/models/cspnet.py.

Papers: Redmon & Farhadi 2018 (YOLOv3, Darknet-53); Wang et al. 2020 (CSPNet, CSPDarknet-53).
timm's module tree (CspNet -> stem / stages (DarkStage | CrossStage of DarkBlock) / head) with
its keys in its order, its init (`_init_weights`, zero_init_last) and its builder knobs
num_classes, drop_rate, drop_path_rate, in_chans, zero_init_last; without importing timm.
Architecture tables: netspecs/darknet.py.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from netspecs.darknet import VARIANTS, CrossStageSpec, DarkNetConfig, DarkStageSpec, se_channels
from netspecs.registry import register_variants
from torchref import MODELS
from torchref.layers import ClassifierHead, ConvNormAct, DropPath, SEModule


def drop_path_rates(drop_path_rate: float, depths) -> list[list[float]]:
    """timm.layers.calculate_drop_path_rates(stagewise=True), with torch.linspace as timm
    (netspecs.darknet.drop_path_rates is the same up to one float32 ulp)."""
    return [x.tolist() for x in torch.linspace(0, drop_path_rate, sum(depths), device="cpu").split(depths)]


class DarkBlock(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, mid_chs: int, se: bool, drop_path: float,
                 act_layer, conv_kw: dict):
        super().__init__()
        self.conv1 = ConvNormAct(in_chs, mid_chs, 1, act_layer=act_layer, **conv_kw)
        self.attn = SEModule(mid_chs, se_channels(mid_chs), act_layer) if se else nn.Identity()
        self.conv2 = ConvNormAct(mid_chs, out_chs, 3, act_layer=act_layer, **conv_kw)
        self.drop_path = DropPath(drop_path) if drop_path else nn.Identity()

    def zero_init_last(self):
        nn.init.zeros_(self.conv2.bn.weight)

    def forward(self, x):
        shortcut = x
        x = self.conv2(self.attn(self.conv1(x)))
        return self.drop_path(x) + shortcut


def _blocks(spec, in_chs: int, dprs, act_layer, conv_kw) -> nn.Sequential:
    blocks = nn.Sequential()
    for i, p in enumerate(dprs):
        blocks.add_module(str(i), DarkBlock(in_chs, spec.block_chs, spec.mid_chs, spec.se, p,
                                            act_layer, conv_kw))
        in_chs = spec.block_chs
    return blocks


class DarkStage(nn.Module):
    def __init__(self, in_chs: int, spec: DarkStageSpec, dprs, act_layer, conv_kw: dict):
        super().__init__()
        self.conv_down = ConvNormAct(in_chs, spec.out_chs, 3, spec.stride, act_layer=act_layer,
                                     **conv_kw)
        self.blocks = _blocks(spec, spec.out_chs, dprs, act_layer, conv_kw)

    def forward(self, x):
        return self.blocks(self.conv_down(x))


class CrossStage(nn.Module):
    def __init__(self, in_chs: int, spec: CrossStageSpec, dprs, act_layer, conv_kw: dict):
        super().__init__()
        down_chs = spec.down_chs(in_chs)
        self.expand_chs = exp_chs = spec.exp_chs
        self.conv_down = ConvNormAct(in_chs, down_chs, 3, spec.stride, act_layer=act_layer,
                                     **conv_kw)
        self.conv_exp = ConvNormAct(down_chs, exp_chs, 1, apply_act=not spec.cross_linear,
                                    act_layer=act_layer, **conv_kw)
        self.blocks = _blocks(spec, exp_chs // 2, dprs, act_layer, conv_kw)
        self.conv_transition_b = ConvNormAct(spec.block_chs, exp_chs // 2, 1, act_layer=act_layer,
                                             **conv_kw)
        self.conv_transition = ConvNormAct(exp_chs, spec.out_chs, 1, act_layer=act_layer, **conv_kw)

    def forward(self, x):
        x = self.conv_exp(self.conv_down(x))
        xs, xb = x.split(self.expand_chs // 2, dim=1)
        xb = self.conv_transition_b(self.blocks(xb)).contiguous()
        return self.conv_transition(torch.cat([xs, xb], dim=1))


class DarkNet(nn.Module):
    """timm CspNet built from a DarkNetConfig (keys stem.*, stages.*, head.fc.*)."""

    def __init__(self, config: DarkNetConfig, num_classes: int = 1000, drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, in_chans: int = 3, zero_init_last: bool = True):
        super().__init__()
        self.num_classes, self.in_chans, self.drop_rate = num_classes, in_chans, drop_rate
        act_layer = functools.partial(nn.LeakyReLU, config.negative_slope, inplace=True)
        conv_kw = dict(eps=config.bn_eps, momentum=config.bn_momentum)
        self.stem = nn.Sequential()
        self.stem.add_module("conv1", ConvNormAct(in_chans, config.stem.out_chs,
                                                  config.stem.kernel_size, config.stem.stride,
                                                  act_layer=act_layer, **conv_kw))
        prev = config.stem.out_chs
        stages = []
        dprs_all = (drop_path_rates(drop_path_rate, config.depths) if drop_path_rate
                    else [[0.0] * d for d in config.depths])
        for spec, dprs in zip(config.stages, dprs_all):
            cls = CrossStage if isinstance(spec, CrossStageSpec) else DarkStage
            stages.append(cls(prev, spec, dprs, act_layer, conv_kw))
            prev = spec.out_chs
        self.stages = nn.Sequential(*stages)
        self.num_features = prev
        self.head = ClassifierHead(prev, num_classes, drop_rate)
        for m in self.modules():  # timm _init_weights(zero_init_last) via named_apply
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, mean=0.0, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif zero_init_last and isinstance(m, DarkBlock):
                m.zero_init_last()

    def forward_features(self, x):
        return self.stages(self.stem(x))

    def forward(self, x):
        return self.head(self.forward_features(x))


def build(config: DarkNetConfig, *, num_classes: int = 1000, drop_rate: float = 0.0,
          drop_path_rate: float = 0.0, in_chans: int = 3, zero_init_last: bool = True) -> DarkNet:
    return DarkNet(config, num_classes, drop_rate, drop_path_rate, in_chans, zero_init_last)


register_variants(MODELS, VARIANTS, build)
