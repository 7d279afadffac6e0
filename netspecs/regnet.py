"""RegNetX / RegNetY design rules and variants: Radosavovic et al., "Designing Network Design
Spaces", CVPR 2020 (arXiv:2003.13678), Sec. 3.3 and Appendix C (RegNetY: SE ratio 0.25).
Stage widths are computed in torch's float32 arithmetic, as torchvision does.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np

from netspecs.common import make_divisible

@dataclasses.dataclass(frozen=True)
class StageSpec:
    width: int
    stride: int
    depth: int
    group_width: int
    bottleneck_multiplier: float


@dataclasses.dataclass(frozen=True)
class RegNetParams:
    """The quantised-linear design parameters (paper Sec. 3.3): depth d, w_0, w_a, w_m, g."""

    depth: int
    w_0: int
    w_a: float
    w_m: float
    group_width: int
    bottleneck_multiplier: float = 1.0
    se_ratio: Optional[float] = None

    def stages(self) -> list[StageSpec]:
        """Per-stage widths/depths exactly as torchvision's BlockParams.from_init_params."""
        if self.w_a < 0 or self.w_0 <= 0 or self.w_m <= 1 or self.w_0 % 8:
            raise ValueError(f"invalid RegNet settings {self}")
        # torchvision computes this in float32 torch arithmetic; rounding must match it.
        f32 = np.float32
        widths_cont = np.arange(self.depth, dtype=f32) * f32(self.w_a) + f32(self.w_0)
        capacity = np.round(np.log(widths_cont / f32(self.w_0)) / f32(math.log(self.w_m)))
        block_widths = (np.round((f32(self.w_0) * np.power(f32(self.w_m), capacity)) / f32(8))
                        * f32(8)).astype(np.int32).tolist()
        splits = [w != wp for w, wp in zip(block_widths + [0], [0] + block_widths)]
        stage_widths = [w for w, t in zip(block_widths, splits[:-1]) if t]
        ends = [d for d, t in enumerate(splits) if t]
        stage_depths = [b - a for a, b in zip(ends[:-1], ends[1:])]
        b = self.bottleneck_multiplier
        stages = []
        for w, d in zip(stage_widths, stage_depths):
            w_bot = int(w * b)
            g = min(self.group_width, w_bot)
            w_bot = make_divisible(w_bot, g)
            stages.append(StageSpec(int(w_bot / b), 2, d, g, b))
        return stages


# Appendix C of the paper (torchvision's values; RegNetY adds SE with ratio 0.25).
VARIANTS: dict[str, RegNetParams] = {
    "regnet_y_400mf": RegNetParams(16, 48, 27.89, 2.09, 8, se_ratio=0.25),
    "regnet_y_800mf": RegNetParams(14, 56, 38.84, 2.4, 16, se_ratio=0.25),
    "regnet_y_1_6gf": RegNetParams(27, 48, 20.71, 2.65, 24, se_ratio=0.25),
    "regnet_y_3_2gf": RegNetParams(21, 80, 42.63, 2.66, 24, se_ratio=0.25),
    "regnet_y_8gf": RegNetParams(17, 192, 76.82, 2.19, 56, se_ratio=0.25),
    "regnet_y_16gf": RegNetParams(18, 200, 106.23, 2.48, 112, se_ratio=0.25),
    "regnet_y_32gf": RegNetParams(20, 232, 115.89, 2.53, 232, se_ratio=0.25),
    "regnet_y_128gf": RegNetParams(27, 456, 160.83, 2.52, 264, se_ratio=0.25),
    "regnet_x_400mf": RegNetParams(22, 24, 24.48, 2.54, 16),
    "regnet_x_800mf": RegNetParams(16, 56, 35.73, 2.28, 16),
    "regnet_x_1_6gf": RegNetParams(18, 80, 34.01, 2.25, 24),
    "regnet_x_3_2gf": RegNetParams(25, 88, 26.31, 2.25, 48),
    "regnet_x_8gf": RegNetParams(23, 80, 49.56, 2.88, 120),
    "regnet_x_16gf": RegNetParams(22, 216, 55.59, 2.1, 128),
    "regnet_x_32gf": RegNetParams(23, 320, 69.86, 2.0, 168),
}

BN_EPS, BN_MOMENTUM = 1e-5, 0.1
