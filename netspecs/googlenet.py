"""GoogLeNet's Inception modules: Szegedy et al., "Going Deeper with Convolutions", CVPR 2015,
Table 1 (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj).
"""
from __future__ import annotations

import dataclasses

@dataclasses.dataclass(frozen=True)
class InceptionSpec:
    """One row of the paper's Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj."""

    ch1x1: int
    ch3x3red: int
    ch3x3: int
    ch5x5red: int
    ch5x5: int
    pool_proj: int


# Table 1 of the paper (inception3a .. inception5b).
INCEPTIONS: dict[str, InceptionSpec] = {
    "inception3a": InceptionSpec(64, 96, 128, 16, 32, 32),
    "inception3b": InceptionSpec(128, 128, 192, 32, 96, 64),
    "inception4a": InceptionSpec(192, 96, 208, 16, 48, 64),
    "inception4b": InceptionSpec(160, 112, 224, 24, 64, 64),
    "inception4c": InceptionSpec(128, 128, 256, 24, 64, 64),
    "inception4d": InceptionSpec(112, 144, 288, 32, 64, 64),
    "inception4e": InceptionSpec(256, 160, 320, 32, 128, 128),
    "inception5a": InceptionSpec(256, 160, 320, 32, 128, 128),
    "inception5b": InceptionSpec(384, 192, 384, 48, 128, 128),
}
