"""SqueezeNet configurations: Iandola et al., "SqueezeNet: AlexNet-level accuracy with 50x fewer
parameters and <0.5MB model size" (arXiv:1602.07360), Table 1 (v1.0); v1.1 is the authors'
revised release.
"""
from __future__ import annotations

import dataclasses
from typing import Union

M = "M"  # MaxPool2d(3, stride=2, ceil_mode=True)


@dataclasses.dataclass(frozen=True)
class SqueezeNetConfig:
    stem: tuple[int, int]  # (channels, kernel) of the stride-2 stem convolution
    layers: tuple[Union[str, tuple[int, int, int]], ...]  # "M" or Fire (squeeze, e1x1, e3x3)


VARIANTS: dict[str, SqueezeNetConfig] = {
    # Iandola et al. 2016, Table 1.
    "squeezenet1_0": SqueezeNetConfig((96, 7), (
        M, (16, 64, 64), (16, 64, 64), (32, 128, 128), M, (32, 128, 128), (48, 192, 192),
        (48, 192, 192), (64, 256, 256), M, (64, 256, 256))),
    # SqueezeNet v1.1 release (2.4x less computation, same accuracy).
    "squeezenet1_1": SqueezeNetConfig((64, 3), (
        M, (16, 64, 64), (16, 64, 64), M, (32, 128, 128), (32, 128, 128), M, (48, 192, 192),
        (48, 192, 192), (64, 256, 256), (64, 256, 256))),
}
