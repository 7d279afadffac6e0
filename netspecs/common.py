"""Small rules shared by several families' tables (pure Python)."""
from __future__ import annotations


def make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """torchvision's _make_divisible (round to a multiple of divisor, never below 90% of v)."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v
