"""Small rules shared by several families' tables (pure Python)."""
from __future__ import annotations


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None,
                   round_limit: float = 0.9) -> int:
    """torchvision's _make_divisible and timm.layers.make_divisible (the same rule; timm adds
    `round_limit`): round to a multiple of divisor, never below round_limit * v."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


def timm_padding(kernel_size: int, stride: int = 1, dilation: int = 1) -> int:
    """timm.layers.get_padding: the symmetric padding of timm's `create_conv2d(padding='')`,
    ((stride - 1) + dilation * (kernel_size - 1)) // 2 (for stride 2 and even kernels it differs
    from torchvision's (kernel_size - 1) // 2 * dilation)."""
    return ((stride - 1) + dilation * (kernel_size - 1)) // 2
