"""ShuffleNetV2 stage widths: Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN
Architecture Design", ECCV 2018, Table 5.
"""
from __future__ import annotations


STAGES_REPEATS = (4, 8, 4)
VARIANTS: dict[str, tuple[int, ...]] = {
    "shufflenet_v2_x0_5": (24, 48, 96, 192, 1024),
    "shufflenet_v2_x1_0": (24, 116, 232, 464, 1024),
    "shufflenet_v2_x1_5": (24, 176, 352, 704, 1024),
    "shufflenet_v2_x2_0": (24, 244, 488, 976, 2048),
}
