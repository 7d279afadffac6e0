"""ShuffleNetV2 reference in PyTorch, state_dict-identical to torchvision/models/shufflenetv2.py.

Paper: Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design",
ECCV 2018. Stage settings come from `flaxnets.shufflenetv2`.
"""
from __future__ import annotations

import torch
from torch import nn

from netspecs.shufflenetv2 import STAGES_REPEATS, VARIANTS
from torchref import MODELS
from netspecs.registry import register_variants


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.size()
    x = x.view(b, groups, c // groups, h, w)
    return torch.transpose(x, 1, 2).contiguous().view(b, c, h, w)


def _depthwise(c: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(c, c, 3, stride, 1, bias=False, groups=c)


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int):
        super().__init__()
        self.stride = stride
        branch = oup // 2
        if stride == 1 and inp != branch << 1:
            raise ValueError(f"stride 1 needs inp == 2 * (oup // 2), got inp {inp}, oup {oup}")
        if stride > 1:
            self.branch1 = nn.Sequential(
                _depthwise(inp, stride),
                nn.BatchNorm2d(inp),
                nn.Conv2d(inp, branch, 1, 1, 0, bias=False),
                nn.BatchNorm2d(branch),
                nn.ReLU(inplace=True),
            )
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(inp if stride > 1 else branch, branch, 1, 1, 0, bias=False),
            nn.BatchNorm2d(branch),
            nn.ReLU(inplace=True),
            _depthwise(branch, stride),
            nn.BatchNorm2d(branch),
            nn.Conv2d(branch, branch, 1, 1, 0, bias=False),
            nn.BatchNorm2d(branch),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(self, stages_out_channels: tuple[int, ...],
                 stages_repeats: tuple[int, ...] = STAGES_REPEATS, num_classes: int = 1000):
        super().__init__()
        ch = stages_out_channels
        self.conv1 = nn.Sequential(nn.Conv2d(3, ch[0], 3, 2, 1, bias=False),
                                   nn.BatchNorm2d(ch[0]), nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inp = ch[0]
        for s, (repeats, oup) in enumerate(zip(stages_repeats, ch[1:4]), start=2):
            blocks = [InvertedResidual(inp, oup, 2)]
            blocks += [InvertedResidual(oup, oup, 1) for _ in range(repeats - 1)]
            setattr(self, f"stage{s}", nn.Sequential(*blocks))
            inp = oup
        self.conv5 = nn.Sequential(nn.Conv2d(inp, ch[4], 1, 1, 0, bias=False),
                                   nn.BatchNorm2d(ch[4]), nn.ReLU(inplace=True))
        self.fc = nn.Linear(ch[4], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.stage4(self.stage3(self.stage2(x)))
        return self.fc(self.conv5(x).mean([2, 3]))


def build(channels: tuple[int, ...], *, num_classes: int = 1000) -> ShuffleNetV2:
    return ShuffleNetV2(channels, num_classes=num_classes)


register_variants(MODELS, VARIANTS, build)
