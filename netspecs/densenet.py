"""DenseNet configurations: Huang et al., "Densely Connected Convolutional Networks",
CVPR 2017, Table 1 (growth rate, block depths, stem width).
"""
from __future__ import annotations

import dataclasses

@dataclasses.dataclass(frozen=True)
class DenseNetConfig:
    growth_rate: int                     # k
    block_config: tuple[int, ...]        # dense layers per block
    num_init_features: int               # stem width (2k)
    bn_size: int = 4                     # bottleneck width = bn_size * k


# Table 1 of the paper (DenseNet-BC, compression 0.5).
VARIANTS: dict[str, DenseNetConfig] = {
    "densenet121": DenseNetConfig(32, (6, 12, 24, 16), 64),
    "densenet161": DenseNetConfig(48, (6, 12, 36, 24), 96),
    "densenet169": DenseNetConfig(32, (6, 12, 32, 32), 64),
    "densenet201": DenseNetConfig(32, (6, 12, 48, 32), 64),
}
