"""MnasNet-A1 (timm's `semnasnet_*`): block table and timm's channel rules.

Paper: Tan et al., "MnasNet: Platform-Aware Neural Architecture Search for Mobile", CVPR 2019
(arXiv:1807.11626), Figure 7(a), MnasNet-A1 with squeeze-and-excitation (SE ratio 0.25 of
the block input). Channels, SE widths, skips and the drop-path schedule follow timm
(timm/models/efficientnet.py `_gen_mnasnet_a1`, timm/models/_efficientnet_builder.py
`EfficientNetBuilder`, `round_channels`): timm's string arch_def
("ds_r1_k3_s1_e1_c16_noskip", "ir_r2_k3_s2_e6_c24", ...) is written out below as `Stage` rows.
Pure Python: imports neither jax/flax nor torch.
"""
from __future__ import annotations

import dataclasses
from typing import Optional


def make_divisible(v: float, divisor: int = 8, min_value: Optional[int] = None,
                   round_limit: float = 0.9) -> int:
    """timm.layers.make_divisible (round to a multiple of divisor, never below round_limit * v)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


def round_channels(channels: int, multiplier: float = 1.0, divisor: int = 8) -> int:
    """timm's `round_channels`: channels scaled by the depth multiplier, made divisible by 8."""
    if not multiplier:
        return channels
    return make_divisible(channels * multiplier, divisor)


@dataclasses.dataclass(frozen=True)
class Stage:
    """One row of Fig. 7(a) (timm's arch_def string for the stage in the comment)."""

    block: str            # "ds": DepthwiseSeparableConv (SepConv), "ir": InvertedResidual (MBConv)
    repeats: int
    kernel: int
    stride: int           # of the stage's first block
    expansion: float      # MBConv expansion ratio e
    out_channels: int     # before the depth multiplier
    se_ratio: float = 0.0  # SE width as a fraction of the block's input channels (0: no SE)
    noskip: bool = False


# Fig. 7(a): Conv3x3 (32) -> SepConv3x3 (16) -> MBConv6 3x3 (24) x2 -> MBConv3 5x5 SE (40) x3
# -> MBConv6 3x3 (80) x4 -> MBConv6 3x3 SE (112) x2 -> MBConv6 5x5 SE (160) x3
# -> MBConv6 3x3 (320) -> Conv1x1 (1280) -> pooling -> FC.
A1_STAGES = (
    Stage("ds", 1, 3, 1, 1, 16, noskip=True),      # ds_r1_k3_s1_e1_c16_noskip
    Stage("ir", 2, 3, 2, 6, 24),                   # ir_r2_k3_s2_e6_c24
    Stage("ir", 3, 5, 2, 3, 40, se_ratio=0.25),    # ir_r3_k5_s2_e3_c40_se0.25
    Stage("ir", 4, 3, 2, 6, 80),                   # ir_r4_k3_s2_e6_c80
    Stage("ir", 2, 3, 1, 6, 112, se_ratio=0.25),   # ir_r2_k3_s1_e6_c112_se0.25
    Stage("ir", 3, 5, 2, 6, 160, se_ratio=0.25),   # ir_r3_k5_s2_e6_c160_se0.25
    Stage("ir", 1, 3, 1, 6, 320),                  # ir_r1_k3_s1_e6_c320
)


@dataclasses.dataclass(frozen=True)
class Block:
    """One built block: timm's DepthwiseSeparableConv ("ds") or InvertedResidual ("ir")."""

    kind: str
    in_channels: int
    mid_channels: int     # the depthwise conv's width (ds: in_channels)
    out_channels: int
    kernel: int
    stride: int
    se_channels: int      # SE's conv_reduce width, 0 without SE
    has_skip: bool
    drop_path: float      # drop-path (stochastic depth) probability of the residual


@dataclasses.dataclass(frozen=True)
class MnasNetConfig:
    multiplier: float                 # timm's channel_multiplier (the paper's depth multiplier)
    stages: tuple[Stage, ...] = A1_STAGES
    stem_channels: int = 32           # scaled by the multiplier (timm's fix_stem=False)
    num_features: int = 1280          # the head conv, not scaled
    bn_eps: float = 1e-5              # timm's BatchNorm2d defaults for semnasnet_*
    bn_momentum: float = 0.1

    @property
    def stem(self) -> int:
        return round_channels(self.stem_channels, self.multiplier)

    def blocks(self, drop_path_rate: float = 0.0) -> tuple[tuple[Block, ...], ...]:
        """Per-stage blocks as timm's EfficientNetBuilder builds them."""
        total = sum(st.repeats for st in self.stages)
        cin, idx, out = self.stem, 0, []
        for st in self.stages:
            cout = round_channels(st.out_channels, self.multiplier)
            stage = []
            for i in range(st.repeats):
                stride = st.stride if i == 0 else 1
                mid = cin if st.block == "ds" else make_divisible(cin * float(st.expansion))
                se = 0
                if st.se_ratio:
                    # timm: rd_ratio = se_ratio / exp_ratio of the expanded width, rounded
                    # with Python's round (se_from_exp=False).
                    rd_ratio = st.se_ratio / (float(st.expansion) if st.block == "ir" else 1.0)
                    se = round(mid * rd_ratio)
                stage.append(Block(st.block, cin, mid, cout, st.kernel, stride, se,
                                   stride == 1 and cin == cout and not st.noskip,
                                   drop_path_rate * idx / total))
                cin, idx = cout, idx + 1
            out.append(tuple(stage))
        return tuple(out)


VARIANTS: dict[str, MnasNetConfig] = {
    "semnasnet_050": MnasNetConfig(0.5),
    "semnasnet_075": MnasNetConfig(0.75),
    "semnasnet_100": MnasNetConfig(1.0),
    "semnasnet_140": MnasNetConfig(1.4),
}
