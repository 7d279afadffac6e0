"""ConvNeXt architecture table (T/S/B/L).

Paper: Liu, Mao, Wu, Feichtenhofer, Darrell & Xie, "A ConvNet for the 2020s", CVPR 2022
(arXiv:2201.03545), Sec. 3 (the ConvNeXt-T/S/B/L channels C and blocks B per stage).
Follows torchvision/models/convnext.py (`CNBlockConfig` rows, the per-variant
`stochastic_depth_prob` defaults, LayerNorm eps 1e-6).
"""
from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class Stage:
    """torchvision's CNBlockConfig: `num_layers` blocks at `input_channels`, then (if
    `out_channels` is not None) a LayerNorm2d + 2x2/2 convolution to `out_channels`."""

    input_channels: int
    out_channels: Optional[int]
    num_layers: int


@dataclasses.dataclass(frozen=True)
class ConvNeXtConfig:
    stages: tuple[Stage, ...]
    stochastic_depth_prob: float   # torchvision's per-variant default
    norm_eps: float = 1e-6         # every LayerNorm / LayerNorm2d

    @property
    def head_channels(self) -> int:
        last = self.stages[-1]
        return last.out_channels if last.out_channels is not None else last.input_channels

    def block_probs(self, stochastic_depth_prob: float) -> tuple[tuple[float, ...], ...]:
        """Per-stage, per-block stochastic depth probabilities: torchvision's linear rule
        p * block_id / (total_blocks - 1) over all blocks of the network."""
        total = sum(s.num_layers for s in self.stages)
        out, block_id = [], 0
        for s in self.stages:
            probs = []
            for _ in range(s.num_layers):
                probs.append(stochastic_depth_prob * block_id / (total - 1.0))
                block_id += 1
            out.append(tuple(probs))
        return tuple(out)


def _stages(widths: tuple[int, int, int, int], depths: tuple[int, int, int, int]) -> tuple[Stage, ...]:
    outs = (*widths[1:], None)
    return tuple(Stage(c, o, n) for c, o, n in zip(widths, outs, depths))


# Paper Sec. 3: T (96, 192, 384, 768) x (3, 3, 9, 3); S (same widths) x (3, 3, 27, 3);
# B (128, 256, 512, 1024) x (3, 3, 27, 3); L (192, 384, 768, 1536) x (3, 3, 27, 3).
# stochastic_depth_prob: torchvision's defaults (0.1 / 0.4 / 0.5 / 0.5).
VARIANTS: dict[str, ConvNeXtConfig] = {
    "convnext_tiny": ConvNeXtConfig(_stages((96, 192, 384, 768), (3, 3, 9, 3)), 0.1),
    "convnext_small": ConvNeXtConfig(_stages((96, 192, 384, 768), (3, 3, 27, 3)), 0.4),
    "convnext_base": ConvNeXtConfig(_stages((128, 256, 512, 1024), (3, 3, 27, 3)), 0.5),
    "convnext_large": ConvNeXtConfig(_stages((192, 384, 768, 1536), (3, 3, 27, 3)), 0.5),
}
