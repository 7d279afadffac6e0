"""MobileNetV3 bneck tables: Howard et al., "Searching for MobileNetV3", ICCV 2019, Tables 1
(Large) and 2 (Small), as torchvision's `_mobilenet_v3_conf` (reduced tail, dilation).
"""
from __future__ import annotations

import dataclasses

from netspecs.common import make_divisible
from netspecs.blocks import SE, BlockSpec

BN_EPS, BN_MOMENTUM = 1e-3, 0.01


@dataclasses.dataclass(frozen=True)
class Bneck:
    """One row of paper Table 1/2 (torchvision's InvertedResidualConfig, before width_mult)."""

    in_channels: int
    kernel: int
    expanded: int
    out_channels: int
    use_se: bool
    act: str          # "RE" (ReLU) or "HS" (hardswish)
    stride: int
    dilation: int = 1


def _large(rd: int, d: int):  # paper Table 1; the last 3 rows (C4) are the "tail"
    rows = [
        Bneck(16, 3, 16, 16, False, "RE", 1),
        Bneck(16, 3, 64, 24, False, "RE", 2),
        Bneck(24, 3, 72, 24, False, "RE", 1),
        Bneck(24, 5, 72, 40, True, "RE", 2),
        Bneck(40, 5, 120, 40, True, "RE", 1),
        Bneck(40, 5, 120, 40, True, "RE", 1),
        Bneck(40, 3, 240, 80, False, "HS", 2),
        Bneck(80, 3, 200, 80, False, "HS", 1),
        Bneck(80, 3, 184, 80, False, "HS", 1),
        Bneck(80, 3, 184, 80, False, "HS", 1),
        Bneck(80, 3, 480, 112, True, "HS", 1),
        Bneck(112, 3, 672, 112, True, "HS", 1),
        Bneck(112, 5, 672, 160 // rd, True, "HS", 2, d),
        Bneck(160 // rd, 5, 960 // rd, 160 // rd, True, "HS", 1, d),
        Bneck(160 // rd, 5, 960 // rd, 160 // rd, True, "HS", 1, d),
    ]
    return rows, 1280 // rd


def _small(rd: int, d: int):  # paper Table 2
    rows = [
        Bneck(16, 3, 16, 16, True, "RE", 2),
        Bneck(16, 3, 72, 24, False, "RE", 2),
        Bneck(24, 3, 88, 24, False, "RE", 1),
        Bneck(24, 5, 96, 40, True, "HS", 2),
        Bneck(40, 5, 240, 40, True, "HS", 1),
        Bneck(40, 5, 240, 40, True, "HS", 1),
        Bneck(40, 5, 120, 48, True, "HS", 1),
        Bneck(48, 5, 144, 48, True, "HS", 1),
        Bneck(48, 5, 288, 96 // rd, True, "HS", 2, d),
        Bneck(96 // rd, 5, 576 // rd, 96 // rd, True, "HS", 1, d),
        Bneck(96 // rd, 5, 576 // rd, 96 // rd, True, "HS", 1, d),
    ]
    return rows, 1024 // rd


VARIANTS = {"mobilenet_v3_large": _large, "mobilenet_v3_small": _small}


def mobilenet_v3_conf(name: str, width_mult: float = 1.0, reduced_tail: bool = False,
                      dilated: bool = False) -> tuple[tuple[BlockSpec, ...], int]:
    """Block specs and last_channel, as torchvision's `_mobilenet_v3_conf`."""
    rows, last = VARIANTS[name](2 if reduced_tail else 1, 2 if dilated else 1)
    adjust = lambda c: make_divisible(c * width_mult, 8)  # noqa: E731
    specs = []
    for r in rows:
        exp = adjust(r.expanded)
        se = SE(make_divisible(exp // 4, 8), "relu", "hardsigmoid") if r.use_se else None
        specs.append(BlockSpec(adjust(r.in_channels), exp, adjust(r.out_channels), r.kernel,
                               r.stride, "hardswish" if r.act == "HS" else "relu", se,
                               dilation=r.dilation))
    return tuple(specs), adjust(last)
