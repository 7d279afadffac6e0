"""DarkNet / CSPDarkNet architecture tables (timm's `cspnet.py` darknet family).

Papers:
- Redmon & Farhadi, "YOLOv3: An Incremental Improvement", 2018 (arXiv:1804.02767), Table 1:
  Darknet-53.
- Wang et al., "CSPNet: A New Backbone that can Enhance Learning Capability of CNN", CVPRW 2020
  (arXiv:1911.11929): CSPDarknet-53 (Darknet-53 with every stage made a cross stage partial one).

Follows timm/models/cspnet.py (`model_cfgs` darknet17/21, sedarknet21, darknet53, cspdarknet53):
its `CspModelCfg(CspStemCfg, CspStagesCfg)` with per-field tuples padded to the stage count is
written out here as one explicit dataclass per stage. Pure Python: imports neither jax nor torch.

Layout of every variant (timm): `stem.conv1` (one 3x3 ConvNormAct, stride 1), five stages
`stages.0..4`, each opening with a 3x3 stride-2 `conv_down`, then `head` (global average pool,
dropout, `fc`). Activation: timm's 'leaky_relu', i.e. torch.nn.LeakyReLU's default slope 0.01
(the darknet papers use 0.1; timm's published weights were trained with 0.01).
"""
from __future__ import annotations

import dataclasses
from typing import Union

import numpy as np

from netspecs.common import make_divisible


def se_channels(channels: int) -> int:
    """timm SEModule's reduced width: make_divisible(channels / 16, 8, round_limit=0)."""
    return make_divisible(channels * (1.0 / 16), 8, round_limit=0.0)


def _torch_linspace_f32(end: float, steps: int) -> list[float]:
    # torch.linspace(0, end, steps) on CPU in float32: the first half counts up from 0, the
    # second half down from `end` (ATen's RangeFactoriesKernel).
    if steps == 1:
        return [0.0]
    start, end = np.float32(0.0), np.float32(end)
    step = (end - start) / np.float32(steps - 1)
    half = steps // 2
    vals = [start + step * np.float32(i) if i < half else end - step * np.float32(steps - i - 1)
            for i in range(steps)]
    return [float(np.float32(v)) for v in vals]


def drop_path_rates(drop_path_rate: float, depths: tuple[int, ...]) -> list[list[float]]:
    """timm.layers.calculate_drop_path_rates(rate, depths, stagewise=True): a float32 linspace
    from 0 to `rate` over all blocks, split per stage. torch's CPU linspace is vectorised, and
    the rounding of some entries depends on the CPU's vector width: these values (the scalar
    kernel's) can differ from torch's by one float32 ulp (torchref calls torch.linspace)."""
    flat = _torch_linspace_f32(drop_path_rate, sum(depths))
    out, i = [], 0
    for d in depths:
        out.append(flat[i:i + d])
        i += d
    return out


@dataclasses.dataclass(frozen=True)
class StemSpec:
    """`stem.conv1`: one ConvNormAct (timm CspStemCfg(out_chs=32, kernel_size=3, stride=1))."""

    out_chs: int = 32
    kernel_size: int = 3
    stride: int = 1


@dataclasses.dataclass(frozen=True)
class DarkStageSpec:
    """timm DarkStage: `conv_down` (3x3, stride) to out_chs, then `depth` DarkBlocks
    (1x1 to mid_chs, optional SE, 3x3 back, residual add)."""

    out_chs: int
    depth: int
    stride: int = 2
    bottle_ratio: float = 0.5
    block_ratio: float = 1.0
    se: bool = False

    @property
    def block_chs(self) -> int:
        return int(round(self.out_chs * self.block_ratio))

    @property
    def mid_chs(self) -> int:
        return int(round(self.block_chs * self.bottle_ratio))


@dataclasses.dataclass(frozen=True)
class CrossStageSpec:
    """timm CrossStage: `conv_down` (3x3, stride) to down_chs, `conv_exp` (1x1) to exp_chs,
    split in two halves along channels: the first passes by, the second goes through `blocks`
    and `conv_transition_b`; `conv_transition` (1x1) of their concatenation [first, second]."""

    out_chs: int
    depth: int
    stride: int = 2
    expand_ratio: float = 1.0
    bottle_ratio: float = 1.0
    block_ratio: float = 0.5
    down_growth: bool = True
    cross_linear: bool = False  # conv_exp without activation
    se: bool = False

    def down_chs(self, in_chs: int) -> int:
        return self.out_chs if self.down_growth else in_chs

    @property
    def exp_chs(self) -> int:
        return int(round(self.out_chs * self.expand_ratio))

    @property
    def block_chs(self) -> int:
        return int(round(self.out_chs * self.block_ratio))

    @property
    def mid_chs(self) -> int:
        return int(round(self.block_chs * self.bottle_ratio))


StageSpec = Union[DarkStageSpec, CrossStageSpec]


@dataclasses.dataclass(frozen=True)
class DarkNetConfig:
    stages: tuple[StageSpec, ...]
    stem: StemSpec = StemSpec()
    negative_slope: float = 0.01  # timm 'leaky_relu' = nn.LeakyReLU() (torch's default slope)
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(s.depth for s in self.stages)


_WIDTHS = (64, 128, 256, 512, 1024)


def _dark(depths, se=False) -> tuple[DarkStageSpec, ...]:
    return tuple(DarkStageSpec(w, d, se=se) for w, d in zip(_WIDTHS, depths))


VARIANTS: dict[str, DarkNetConfig] = {
    # timm's small variants of the Darknet-53 scheme (no paper table): 1 stem conv + 5 conv_down
    # + 2 convs per block + fc = 17 / 21 layers.
    "darknet17": DarkNetConfig(_dark((1, 1, 1, 1, 1))),
    "darknet21": DarkNetConfig(_dark((1, 1, 1, 2, 2))),
    # darknet21 with timm's SEModule (reduction 1/16, divisor 8) after each block's 1x1 conv.
    "sedarknet21": DarkNetConfig(_dark((1, 1, 1, 2, 2), se=True)),
    # YOLOv3 Table 1: conv 32 3x3; then per stage conv 3x3/2 to 64, 128, 256, 512, 1024 and
    # 1, 2, 8, 8, 4 residual blocks [1x1 to half the width, 3x3 back]; avgpool; connected 1000.
    "darknet53": DarkNetConfig(_dark((1, 2, 8, 8, 4))),
    # CSPNet's CSPDarknet-53 as timm builds it: the same widths and depths, each stage a cross
    # stage (down_growth: conv_down to the stage width). Stage 0 expands to 2x its width and its
    # blocks keep the full split width (64) with a 32-wide bottleneck; later stages split their
    # width in halves and their blocks run at half width without bottleneck.
    "cspdarknet53": DarkNetConfig((
        CrossStageSpec(64, 1, expand_ratio=2.0, bottle_ratio=0.5, block_ratio=1.0),
        CrossStageSpec(128, 2),
        CrossStageSpec(256, 8),
        CrossStageSpec(512, 8),
        CrossStageSpec(1024, 4),
    )),
}
