"""ResNet / ResNeXt / Wide ResNet configurations: He et al., "Deep Residual Learning for Image
Recognition", CVPR 2016, Table 1; Xie et al., "Aggregated Residual Transformations", CVPR 2017
(groups x width per group); Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

@dataclasses.dataclass(frozen=True)
class ResNetConfig:
    block: str                         # "basic" (2 x 3x3) or "bottleneck" (1x1-3x3-1x1, x4)
    layers: tuple[int, int, int, int]  # blocks per stage, conv2_x .. conv5_x
    # Set: fixed by the variant (torchvision overwrites the knob); None: the knob is free.
    groups: Optional[int] = None
    width_per_group: Optional[int] = None

    @property
    def expansion(self) -> int:
        return 1 if self.block == "basic" else 4

    def resolve(self, groups: Optional[int], width_per_group: Optional[int]) -> tuple[int, int]:
        """The (groups, width_per_group) a builder call gets, with torchvision's checks."""
        out = []
        for knob, fixed, given, default in (("groups", self.groups, groups, 1),
                                            ("width_per_group", self.width_per_group,
                                             width_per_group, 64)):
            if fixed is not None and given is not None and given != fixed:
                raise ValueError(f"The parameter '{knob}' expected value {fixed} "
                                 f"but got {given} instead.")
            out.append(fixed if fixed is not None else (default if given is None else given))
        return out[0], out[1]


VARIANTS: dict[str, ResNetConfig] = {
    # He et al. 2016, Table 1 (18/34: basic blocks; 50/101/152: bottlenecks).
    "resnet18": ResNetConfig("basic", (2, 2, 2, 2)),
    "resnet34": ResNetConfig("basic", (3, 4, 6, 3)),
    "resnet50": ResNetConfig("bottleneck", (3, 4, 6, 3)),
    "resnet101": ResNetConfig("bottleneck", (3, 4, 23, 3)),
    "resnet152": ResNetConfig("bottleneck", (3, 8, 36, 3)),
    # Xie et al. 2017, Table 1: cardinality x bottleneck width per group.
    "resnext50_32x4d": ResNetConfig("bottleneck", (3, 4, 6, 3), 32, 4),
    "resnext101_32x8d": ResNetConfig("bottleneck", (3, 4, 23, 3), 32, 8),
    "resnext101_64x4d": ResNetConfig("bottleneck", (3, 4, 23, 3), 64, 4),
    # Zagoruyko & Komodakis 2016: ResNet-50/101 with twice the bottleneck width.
    "wide_resnet50_2": ResNetConfig("bottleneck", (3, 4, 6, 3), width_per_group=128),
    "wide_resnet101_2": ResNetConfig("bottleneck", (3, 4, 23, 3), width_per_group=128),
}
