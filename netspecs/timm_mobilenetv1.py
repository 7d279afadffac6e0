"""MobileNetV1 as timm builds it (timm/models/efficientnet.py `_gen_mobilenet_v1`).

Paper: Howard et al. 2017, "MobileNets: Efficient Convolutional Neural Networks for Mobile
Vision Applications" (arXiv:1704.04861), Table 1: a 3x3/2 stem conv with 32 channels, then 13
depthwise-separable layers (3x3 depthwise -> BN -> act -> 1x1 pointwise -> BN -> act, no
shortcut) with 64, 128/s2, 128, 256/s2, 256, 512/s2, 5x512, 1024/s2, 1024 channels (Table 1's
stride 2 on the last depthwise conv is a typo: its input and output are both 7x7), global
average pool, linear. Section 3.3's width multiplier scales every layer.

timm's builder groups the 13 layers into five stages (its `dsa_r{n}_k3_s{s}_c{c}` strings:
stride on a stage's first block), rounds channels with `round_channels` (multiple of 8, never
below 90%), uses ReLU6 (the paper's TF implementation's activation; the paper says ReLU), and
keeps the stem at 32 * multiplier. The `h` variant adds a 1x1 conv + BN + act head of
max(1024, round(1024 * multiplier)) channels before the pool.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DSStage:
    """`repeats` depthwise-separable blocks (timm's 'dsa': pointwise act, no skip); the first
    has `stride`."""
    repeats: int
    out_chs: int
    stride: int
    kernel: int = 3


# Table 1, grouped into timm's stages.
TABLE1 = (DSStage(1, 64, 1), DSStage(2, 128, 2), DSStage(2, 256, 2), DSStage(6, 512, 2),
          DSStage(2, 1024, 2))


def round_channels(channels: float, multiplier: float = 1.0, divisor: int = 8,
                   round_limit: float = 0.9) -> int:
    """timm's round_channels / make_divisible (channel_min None)."""
    if not multiplier:
        return int(channels)
    v = channels * multiplier
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


@dataclasses.dataclass(frozen=True)
class Block:
    in_chs: int
    out_chs: int
    stride: int
    kernel: int


@dataclasses.dataclass(frozen=True)
class TimmMobileNetV1Config:
    channel_multiplier: float
    head_conv: bool = False
    stem_size: int = 32
    stages: tuple[DSStage, ...] = TABLE1

    @property
    def stem_chs(self) -> int:
        return round_channels(self.stem_size, self.channel_multiplier)

    def blocks(self) -> tuple[tuple[Block, ...], ...]:
        """Every block, per stage (timm's `blocks.i.j`)."""
        out, cin = [], self.stem_chs
        for st in self.stages:
            stage = []
            for j in range(st.repeats):
                cout = round_channels(st.out_chs, self.channel_multiplier)
                stage.append(Block(cin, cout, st.stride if j == 0 else 1, st.kernel))
                cin = cout
            out.append(tuple(stage))
        return tuple(out)

    @property
    def head_chs(self) -> int:
        """conv_head width (0: no head conv, the last block feeds the pool)."""
        return max(1024, round_channels(1024, self.channel_multiplier)) if self.head_conv else 0

    @property
    def num_features(self) -> int:
        return self.head_chs or self.blocks()[-1][-1].out_chs


VARIANTS: dict[str, TimmMobileNetV1Config] = {
    "mobilenetv1_100": TimmMobileNetV1Config(1.0),
    "mobilenetv1_100h": TimmMobileNetV1Config(1.0, head_conv=True),
    "mobilenetv1_125": TimmMobileNetV1Config(1.25),
}
