"""AlexNet's convolutions: the one-tower network of Krizhevsky, "One weird trick for
parallelizing convolutional neural networks" (arXiv:1404.5997), torchvision's widths.
"""
from __future__ import annotations

import dataclasses

@dataclasses.dataclass(frozen=True)
class ConvSpec:
    features: int
    kernel_size: int
    stride: int
    padding: int
    pool: bool  # followed by MaxPool2d(3, stride=2)


# The five convolutions of the one-tower network (arXiv:1404.5997), torchvision's widths.
CONVS: tuple[ConvSpec, ...] = (
    ConvSpec(64, 11, 4, 2, True),
    ConvSpec(192, 5, 1, 2, True),
    ConvSpec(384, 3, 1, 1, False),
    ConvSpec(256, 3, 1, 1, False),
    ConvSpec(256, 3, 1, 1, True),
)
