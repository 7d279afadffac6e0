"""VoVNet V1 / V2 in Flax, in timm's module layout (timm/models/vovnet.py).

Lee et al. 2019 (VoVNet, One-Shot Aggregation modules) and Lee & Park 2020 (CenterMask's
VoVNetV2: residual OSA modules, effective squeeze-excitation); tables in `netspecs.vovnet`.
Module paths are timm's, so timm's checkpoints convert key for key:

    stem.{0,1,2}                        ConvNormAct (conv, bn) / SeparableConvNormAct
                                        (conv_dw, conv_pw, bn) in the dw variant
    stages.i.blocks.j                   OsaBlock
        .conv_reduction                 ConvNormAct 1x1 (depthwise variant, when in != mid)
        .conv_mid.k                     ConvNormAct 3x3 / SeparableConvNormAct
        .conv_concat                    ConvNormAct 1x1 over [input, conv_mid outputs]
        .attn.fc                        EffectiveSEModule's 1x1 conv (with bias)
    head.fc                             ClassifierHead's Linear

BatchNormAct2d ("bn") is timm's BatchNorm2d + ReLU in one module (eps 1e-5, momentum 0.1).
The eSE gate is timm's `hard_sigmoid`, which on any torch with F.hardsigmoid is
torch.nn.Hardsigmoid: `flaxnets.blocks.hardsigmoid`, torch's gradient included.
"""
from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from flaxnets import MODELS
from flaxnets.blocks import hardsigmoid
from flaxnets.layers import (ClassifierHead, Conv2d, ConvNormAct, SeparableConvNormAct,
                             max_pool2d, stochastic_depth, torch_default_bias)
from netspecs.registry import register_variants
from netspecs.vovnet import VARIANTS, VoVNetConfig, drop_path_rates


class EffectiveSEModule(nn.Module):
    """timm.layers.EffectiveSEModule: x * hard_sigmoid(fc(mean(x))), fc a 1x1 conv with bias."""

    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        s = jnp.mean(x, axis=tuple(range(1, x.ndim - 1)), keepdims=True)
        s = Conv2d(c, 1, padding=0, use_bias=True, bias_init=torch_default_bias(c),
                   dtype=self.dtype, name="fc")(s)
        return x * hardsigmoid(s)


class _ConvMid(nn.Module):
    """timm's SequentialAppendList: chained convs; returns cat([*concat, each output])."""

    mid_chs: int
    layers: int
    depthwise: bool
    dtype: Any = None

    @nn.compact
    def __call__(self, x, concat: tuple, train: bool = False):
        outs = list(concat)
        for i in range(self.layers):
            if self.depthwise:
                x = SeparableConvNormAct(self.mid_chs, 3, dtype=self.dtype, name=str(i))(x, train)
            else:
                x = ConvNormAct(self.mid_chs, 3, dtype=self.dtype, name=str(i))(x, train)
            outs.append(x)
        return jnp.concatenate(outs, axis=-1)


class OsaBlock(nn.Module):
    mid_chs: int
    out_chs: int
    layers: int
    residual: bool
    depthwise: bool
    ese: bool
    drop_path: float = 0.0
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        shortcut = x
        if self.depthwise and x.shape[-1] != self.mid_chs:
            x = ConvNormAct(self.mid_chs, 1, dtype=self.dtype, name="conv_reduction")(x, train)
        x = _ConvMid(self.mid_chs, self.layers, self.depthwise, self.dtype,
                     name="conv_mid")(x, (shortcut,), train)
        x = ConvNormAct(self.out_chs, 1, dtype=self.dtype, name="conv_concat")(x, train)
        if self.ese:
            x = EffectiveSEModule(self.dtype, name="attn")(x)
        # timm applies drop path to every module with a rate > 0, residual or not.
        x = stochastic_depth(x, self.drop_path, train, self)
        return x + shortcut if self.residual else x


class _Blocks(nn.Module):
    config: VoVNetConfig
    stage: int
    drop_paths: tuple[float, ...]
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        cfg, i = self.config, self.stage
        n = cfg.block_per_stage[i]
        for j in range(n):
            x = OsaBlock(cfg.stage_conv_chs[i], cfg.stage_out_chs[i], cfg.layer_per_block,
                         cfg.residual and j > 0, cfg.depthwise, cfg.ese and j == n - 1,
                         self.drop_paths[j], self.dtype, name=str(j))(x, train)
        return x


class OsaStage(nn.Module):
    config: VoVNetConfig
    stage: int
    drop_paths: tuple[float, ...]
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        if self.stage > 0:  # stem stride 4: the first stage does not downsample
            x = max_pool2d(x, 3, 2, ceil_mode=True)
        return _Blocks(self.config, self.stage, self.drop_paths, self.dtype, name="blocks")(x, train)


class _Stages(nn.Module):
    config: VoVNetConfig
    drop_path_rate: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        for i, rates in enumerate(drop_path_rates(self.config, self.drop_path_rate)):
            x = OsaStage(self.config, i, rates, self.dtype, name=str(i))(x, train)
        return x


class _Stem(nn.Module):
    config: VoVNetConfig
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        c0, c1, c2 = self.config.stem_chs
        x = ConvNormAct(c0, 3, 2, dtype=self.dtype, name="0")(x, train)
        conv = SeparableConvNormAct if self.config.depthwise else ConvNormAct
        x = conv(c1, 3, 1, dtype=self.dtype, name="1")(x, train)
        return conv(c2, 3, 2, dtype=self.dtype, name="2")(x, train)


class VovNet(nn.Module):
    # backbone (flaxnets.features): timm's feature_info: the last of stem.*, stages.* at each
    # resolution
    feature_modules: ClassVar = ("stem.*", "stages.*")
    classifier: ClassVar = "head.fc"

    config: VoVNetConfig
    num_classes: int = 1000
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = _Stem(self.config, self.dtype, name="stem")(x, train)
        x = _Stages(self.config, self.drop_path_rate, self.dtype, name="stages")(x, train)
        return ClassifierHead(self.num_classes, self.drop_rate, dtype=self.dtype,
                              fc_bias_init=nn.initializers.zeros, name="head")(x, train)


def build(config: VoVNetConfig, *, num_classes: int = 1000, drop_rate: float = 0.0,
          drop_path_rate: float = 0.0, dtype: Any = None) -> VovNet:
    return VovNet(config, num_classes, drop_rate, drop_path_rate, dtype)


register_variants(MODELS, VARIANTS, build)
