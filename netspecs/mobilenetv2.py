"""MobileNetV2 inverted-residual table: Sandler et al., "MobileNetV2: Inverted Residuals and
Linear Bottlenecks", CVPR 2018, Table 2; width multiplier as torchvision's.
"""
from __future__ import annotations

import dataclasses

from netspecs.common import make_divisible

@dataclasses.dataclass(frozen=True)
class BlockSpec:
    inp: int
    oup: int
    stride: int
    expand_ratio: int


# Paper Table 2: (expansion t, channels c, repeats n, stride s).
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def architecture(width_mult: float = 1.0, round_nearest: int = 8):
    """(stem channels, inverted residual blocks, last channels) as torchvision computes them."""
    stem = make_divisible(32 * width_mult, round_nearest)
    last = make_divisible(1280 * max(1.0, width_mult), round_nearest)
    blocks, inp = [], stem
    for t, c, n, s in INVERTED_RESIDUAL_SETTING:
        oup = make_divisible(c * width_mult, round_nearest)
        for i in range(n):
            blocks.append(BlockSpec(inp, oup, s if i == 0 else 1, t))
            inp = oup
    return stem, tuple(blocks), last
