"""VoVNet V1 / V2 reference in PyTorch, timm's module tree and state_dict (timm/models/vovnet.py).

Lee et al. 2019 (VoVNet) and Lee & Park 2020 (CenterMask's VoVNetV2); tables in
`netspecs.vovnet`, layout in `flaxnets/vovnet.py`. Builder knobs are timm's: num_classes,
drop_rate (before head.fc), drop_path_rate (linear over all OSA modules).
"""
from __future__ import annotations

from typing import List

import torch
from torch import nn

from netspecs.registry import register_variants
from netspecs.vovnet import VARIANTS, VoVNetConfig
from torchref import MODELS
from torchref.layers import ClassifierHead, ConvNormAct, DropPath, SeparableConvNormAct


class EffectiveSEModule(nn.Module):
    """timm.layers.EffectiveSEModule (add_maxpool=False, gate 'hard_sigmoid' = nn.Hardsigmoid)."""

    def __init__(self, channels: int):
        super().__init__()
        self.add_maxpool = False
        self.fc = nn.Conv2d(channels, channels, kernel_size=1, padding=0)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc(x.mean((2, 3), keepdim=True)))


class SequentialAppendList(nn.Sequential):
    def forward(self, x: torch.Tensor, concat_list: List[torch.Tensor]) -> torch.Tensor:
        for i, module in enumerate(self):
            concat_list.append(module(x if i == 0 else concat_list[-1]))
        return torch.cat(concat_list, dim=1)


class OsaBlock(nn.Module):
    def __init__(self, in_chs: int, mid_chs: int, out_chs: int, layer_per_block: int,
                 residual: bool, depthwise: bool, ese: bool, drop_path: nn.Module | None):
        super().__init__()
        self.residual = residual
        self.depthwise = depthwise
        if depthwise and in_chs != mid_chs:
            assert not residual
            self.conv_reduction = ConvNormAct(in_chs, mid_chs, 1)
        else:
            self.conv_reduction = None
        convs, next_in = [], in_chs
        for _ in range(layer_per_block):
            convs.append(SeparableConvNormAct(mid_chs, mid_chs) if depthwise
                         else ConvNormAct(next_in, mid_chs, 3))
            next_in = mid_chs
        self.conv_mid = SequentialAppendList(*convs)
        self.conv_concat = ConvNormAct(in_chs + layer_per_block * mid_chs, out_chs)
        self.attn = EffectiveSEModule(out_chs) if ese else None
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output = [x]
        if self.conv_reduction is not None:
            x = self.conv_reduction(x)
        x = self.conv_concat(self.conv_mid(x, output))
        if self.attn is not None:
            x = self.attn(x)
        if self.drop_path is not None:
            x = self.drop_path(x)
        if self.residual:
            x = x + output[0]
        return x


class OsaStage(nn.Module):
    def __init__(self, in_chs: int, mid_chs: int, out_chs: int, block_per_stage: int,
                 layer_per_block: int, downsample: bool, residual: bool, depthwise: bool,
                 ese: bool, drop_path_rates: List[float]):
        super().__init__()
        self.grad_checkpointing = False
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True) if downsample else None
        blocks = []
        for i in range(block_per_stage):
            drop_path = DropPath(drop_path_rates[i]) if drop_path_rates[i] > 0.0 else None
            blocks.append(OsaBlock(in_chs, mid_chs, out_chs, layer_per_block,
                                   residual=residual and i > 0, depthwise=depthwise,
                                   ese=ese and i == block_per_stage - 1, drop_path=drop_path))
            in_chs = out_chs
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = self.pool(x)
        return self.blocks(x)


class VovNet(nn.Module):
    def __init__(self, cfg: VoVNetConfig, num_classes: int = 1000, drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0):
        super().__init__()
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        conv = SeparableConvNormAct if cfg.depthwise else ConvNormAct
        s0, s1, s2 = cfg.stem_chs
        self.stem = nn.Sequential(ConvNormAct(3, s0, 3, stride=2), conv(s0, s1, 3, stride=1),
                                  conv(s1, s2, 3, stride=2))
        # timm's calculate_drop_path_rates(..., stagewise=True): float32 linspace, split by stage.
        dpr = [x.tolist() for x in torch.linspace(0, drop_path_rate, sum(cfg.block_per_stage),
                                                  device="cpu").split(list(cfg.block_per_stage))]
        self.stages = nn.Sequential(*[
            OsaStage(cin, cfg.stage_conv_chs[i], cfg.stage_out_chs[i], cfg.block_per_stage[i],
                     cfg.layer_per_block, downsample=i > 0, residual=cfg.residual,
                     depthwise=cfg.depthwise, ese=cfg.ese, drop_path_rates=dpr[i])
            for i, cin in enumerate(cfg.stage_in_chs())])
        self.num_features = cfg.stage_out_chs[-1]
        self.head = ClassifierHead(self.num_features, num_classes, drop_rate=drop_rate)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


def build(config: VoVNetConfig, *, num_classes: int = 1000, drop_rate: float = 0.0,
          drop_path_rate: float = 0.0) -> VovNet:
    return VovNet(config, num_classes, drop_rate, drop_path_rate)


register_variants(MODELS, VARIANTS, build)
