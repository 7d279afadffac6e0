"""MobileNetV1 body: Howard et al., "MobileNets: Efficient Convolutional Neural Networks for
Mobile Vision Applications" (arXiv:1704.04861), Table 1; width multipliers of Sec. 3.3.
"""
from __future__ import annotations


from netspecs.common import make_divisible

STEM = 32
# Table 1: (output channels, stride) of the 13 depthwise-separable blocks.
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
          (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))
WIDTHS = {"mobilenet_v1": 1.0, "mobilenet_v1_0_75": 0.75, "mobilenet_v1_0_5": 0.5,
          "mobilenet_v1_0_25": 0.25}


def architecture(width_mult: float) -> tuple[int, tuple[tuple[int, int, int], ...]]:
    """Stem channels and (in, out, stride) of every block."""
    stem = make_divisible(STEM * width_mult, 8)
    blocks, inp = [], stem
    for c, s in BLOCKS:
        oup = make_divisible(c * width_mult, 8)
        blocks.append((inp, oup, s))
        inp = oup
    return stem, tuple(blocks)
