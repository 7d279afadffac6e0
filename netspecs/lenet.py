"""LeNet-5: LeCun et al., "Gradient-Based Learning Applied to Document Recognition",
Proc. IEEE 1998, Fig. 2 (modern form, see flaxnets/lenet.py).
"""
from __future__ import annotations

import dataclasses

@dataclasses.dataclass(frozen=True)
class LeNetConfig:
    conv_channels: tuple[int, int] = (6, 16)  # C1, C3
    kernel_size: int = 5
    fc_features: tuple[int, int] = (120, 84)  # C5, F6
    input_size: int = 32


# LeCun et al. 1998, Fig. 2.
VARIANTS: dict[str, LeNetConfig] = {"lenet5": LeNetConfig()}
