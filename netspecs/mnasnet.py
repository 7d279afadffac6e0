"""MnasNet-B1 (torchvision's mnasnet*): Tan et al., "MnasNet: Platform-Aware Neural Architecture
Search for Mobile", CVPR 2019, Fig. 7(b) stacks; depth multipliers as torchvision's.
"""
from __future__ import annotations


BN_MOMENTUM = 1 - 0.9997
ALPHAS = {"mnasnet0_5": 0.5, "mnasnet0_75": 0.75, "mnasnet1_0": 1.0, "mnasnet1_3": 1.3}
# Inverted-residual stacks (kernel, stride, expansion, repeats); widths are depths[2:8].
STACKS = ((3, 2, 3, 3), (5, 2, 3, 3), (5, 2, 6, 3), (3, 1, 6, 2), (5, 2, 6, 4), (3, 1, 6, 1))


def round_to_multiple_of(val: float, divisor: int, round_up_bias: float = 0.9) -> int:
    """torchvision's _round_to_multiple_of: round to a multiple, preferring to round up."""
    if not 0.0 < round_up_bias < 1.0:
        raise ValueError(f"round_up_bias should be in (0, 1), got {round_up_bias}")
    new_val = max(divisor, int(val + divisor / 2) // divisor * divisor)
    return new_val if new_val >= round_up_bias * val else new_val + divisor


def get_depths(alpha: float) -> list[int]:
    return [round_to_multiple_of(d * alpha, 8) for d in (32, 16, 24, 40, 80, 96, 192, 320)]
