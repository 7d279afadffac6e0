"""EfficientNet B0-B7 and EfficientNetV2 S/M/L in Flax.

Papers: Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
ICML 2019 (arXiv:1905.11946), baseline in its Table 1 scaled by (width, depth) coefficients;
Tan & Le, "EfficientNetV2: Smaller Models and Faster Training", ICML 2021 (arXiv:2104.00298),
its Table 4 (S) and the M/L configurations of its reference code. Follows
torchvision/models/efficientnet.py (module paths `features.S.B.block.M`, `classifier.1`),
including its per-block linear stochastic-depth schedule. `spatial_dims=1` builds the same
network for (N, L, C) signals; `in_channels` the stem's input channels.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

import flax.linen as nn
import jax

from flaxnets import register
from flaxnets.blocks import SE, BlockSpec, InvertedResidual
from flaxnets.layers import ConvBNAct, Linear, check_input, make_divisible, silu, spatial_mean


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage row: torchvision's MBConvConfig ("mb") / FusedMBConvConfig ("fused")."""

    block: str
    expand_ratio: float
    kernel: int
    stride: int
    in_channels: int
    out_channels: int
    num_layers: int


@dataclasses.dataclass(frozen=True)
class EfficientNetConfig:
    stages: tuple[Stage, ...]
    dropout: float
    width_mult: float = 1.0
    depth_mult: float = 1.0
    last_channel: Optional[int] = None   # None: 4 x the last stage's width
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1

    def blocks(self, stochastic_depth_prob: float) -> tuple[tuple[BlockSpec, ...], ...]:
        """Per-stage block specs, as torchvision's EfficientNet.__init__ builds them."""
        def adjust(c, mult):
            return make_divisible(c * mult, 8)

        stages = []
        for st in self.stages:  # width/depth scaling applies to MBConvConfig rows only
            mb = st.block == "mb"
            stages.append((adjust(st.in_channels, self.width_mult) if mb else st.in_channels,
                           adjust(st.out_channels, self.width_mult) if mb else st.out_channels,
                           int(math.ceil(st.num_layers * self.depth_mult)) if mb else st.num_layers))
        total = sum(n for _, _, n in stages)
        out, block_id = [], 0
        for st, (cin, cout, n) in zip(self.stages, stages):
            specs = []
            for i in range(n):
                c = cin if i == 0 else cout
                exp = adjust(c, st.expand_ratio)
                se = SE(max(1, c // 4), "silu", "sigmoid") if st.block == "mb" else None
                specs.append(BlockSpec(c, exp, cout, st.kernel, st.stride if i == 0 else 1,
                                       "silu", se, fused=st.block == "fused",
                                       sd_prob=stochastic_depth_prob * float(block_id) / total))
                block_id += 1
            out.append(tuple(specs))
        return tuple(out)


# EfficientNet paper Table 1 (the B0 baseline).
_V1 = (
    Stage("mb", 1, 3, 1, 32, 16, 1),
    Stage("mb", 6, 3, 2, 16, 24, 2),
    Stage("mb", 6, 5, 2, 24, 40, 2),
    Stage("mb", 6, 3, 2, 40, 80, 3),
    Stage("mb", 6, 5, 1, 80, 112, 3),
    Stage("mb", 6, 5, 2, 112, 192, 4),
    Stage("mb", 6, 3, 1, 192, 320, 1),
)
# EfficientNetV2 paper Table 4 (S); M and L as in torchvision (the paper's reference code).
_V2_S = (
    Stage("fused", 1, 3, 1, 24, 24, 2),
    Stage("fused", 4, 3, 2, 24, 48, 4),
    Stage("fused", 4, 3, 2, 48, 64, 4),
    Stage("mb", 4, 3, 2, 64, 128, 6),
    Stage("mb", 6, 3, 1, 128, 160, 9),
    Stage("mb", 6, 3, 2, 160, 256, 15),
)
_V2_M = (
    Stage("fused", 1, 3, 1, 24, 24, 3),
    Stage("fused", 4, 3, 2, 24, 48, 5),
    Stage("fused", 4, 3, 2, 48, 80, 5),
    Stage("mb", 4, 3, 2, 80, 160, 7),
    Stage("mb", 6, 3, 1, 160, 176, 14),
    Stage("mb", 6, 3, 2, 176, 304, 18),
    Stage("mb", 6, 3, 1, 304, 512, 5),
)
_V2_L = (
    Stage("fused", 1, 3, 1, 32, 32, 4),
    Stage("fused", 4, 3, 2, 32, 64, 7),
    Stage("fused", 4, 3, 2, 64, 96, 7),
    Stage("mb", 4, 3, 2, 96, 192, 10),
    Stage("mb", 6, 3, 1, 192, 224, 19),
    Stage("mb", 6, 3, 2, 224, 384, 25),
    Stage("mb", 6, 3, 1, 384, 640, 7),
)
# B5-B7 use BN eps 1e-3, momentum 0.01 and V2 eps 1e-3 (torchvision, for the ported weights).
_BN_TF = dict(bn_eps=1e-3, bn_momentum=0.01)
_V2 = dict(last_channel=1280, bn_eps=1e-3)
VARIANTS: dict[str, EfficientNetConfig] = {
    "efficientnet_b0": EfficientNetConfig(_V1, 0.2, 1.0, 1.0),
    "efficientnet_b1": EfficientNetConfig(_V1, 0.2, 1.0, 1.1),
    "efficientnet_b2": EfficientNetConfig(_V1, 0.3, 1.1, 1.2),
    "efficientnet_b3": EfficientNetConfig(_V1, 0.3, 1.2, 1.4),
    "efficientnet_b4": EfficientNetConfig(_V1, 0.4, 1.4, 1.8),
    "efficientnet_b5": EfficientNetConfig(_V1, 0.4, 1.6, 2.2, **_BN_TF),
    "efficientnet_b6": EfficientNetConfig(_V1, 0.5, 1.8, 2.6, **_BN_TF),
    "efficientnet_b7": EfficientNetConfig(_V1, 0.5, 2.0, 3.1, **_BN_TF),
    "efficientnet_v2_s": EfficientNetConfig(_V2_S, 0.2, **_V2),
    "efficientnet_v2_m": EfficientNetConfig(_V2_M, 0.3, **_V2),
    "efficientnet_v2_l": EfficientNetConfig(_V2_L, 0.4, **_V2),
}


class _Stage(nn.Module):
    specs: tuple[BlockSpec, ...]
    bn_eps: float
    bn_momentum: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        for i, spec in enumerate(self.specs):
            x = InvertedResidual(spec, self.bn_eps, self.bn_momentum, self.dtype, name=str(i))(x, train)
        return x


class _Features(nn.Module):
    stages: tuple[tuple[BlockSpec, ...], ...]
    head_channels: int
    bn_eps: float
    bn_momentum: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        bn = dict(act=silu, bn_eps=self.bn_eps, bn_momentum=self.bn_momentum, dtype=self.dtype)
        x = ConvBNAct(self.stages[0][0].in_channels, 3, 2, name="0", **bn)(x, train)
        for i, specs in enumerate(self.stages, start=1):
            x = _Stage(specs, self.bn_eps, self.bn_momentum, self.dtype, name=str(i))(x, train)
        return ConvBNAct(self.head_channels, 1, name=str(len(self.stages) + 1), **bn)(x, train)


class _Classifier(nn.Module):
    num_classes: int
    dropout: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Dropout(self.dropout, name="0")(x, deterministic=not train)
        r = 1.0 / math.sqrt(self.num_classes)
        init = lambda key, shape, dtype: jax.random.uniform(key, shape, dtype, -r, r)  # noqa: E731
        return Linear(self.num_classes, dtype=self.dtype, name="1", kernel_init=init,
                      bias_init=nn.initializers.zeros)(x)


class EfficientNet(nn.Module):
    config: EfficientNetConfig
    num_classes: int = 1000
    dropout: float = 0.2
    stochastic_depth_prob: float = 0.2
    dtype: Any = None
    spatial_dims: int = 2
    in_channels: int = 3

    @nn.compact
    def __call__(self, x, train: bool = False):
        check_input(x, self.spatial_dims, self.in_channels, "EfficientNet")
        cfg = self.config
        stages = cfg.blocks(self.stochastic_depth_prob)
        head = cfg.last_channel or 4 * stages[-1][-1].out_channels
        x = _Features(stages, head, cfg.bn_eps, cfg.bn_momentum, self.dtype,
                      name="features")(x, train)
        x = spatial_mean(x)
        return _Classifier(self.num_classes, self.dropout, self.dtype, name="classifier")(x, train)


def _builder(cfg: EfficientNetConfig):
    def build(*, num_classes: int = 1000, dropout: float = cfg.dropout,
              stochastic_depth_prob: float = 0.2, spatial_dims: int = 2, in_channels: int = 3,
              dtype: Any = None) -> EfficientNet:
        return EfficientNet(cfg, num_classes=num_classes, dropout=dropout,
                            stochastic_depth_prob=stochastic_depth_prob, dtype=dtype,
                            spatial_dims=spatial_dims, in_channels=in_channels)
    return build


for _name, _cfg in VARIANTS.items():
    register(_name, _builder(_cfg))
