"""MaxViT in Flax (Tu et al., "MaxViT: Multi-Axis Vision Transformer", ECCV 2022,
arXiv:2204.01697); follows torchvision/models/maxvit.py.

Module paths are torchvision's: `stem.{0,1}`, `blocks.B.layers.L.layers.{MBconv,
window_attention,grid_attention}`, `...attn_layer.{0,1,2}`, `...mlp_layer.{0,1,3,4}`,
`classifier.{2,3,5}`. Each layer is an MBConv with squeeze-excitation, then block (window)
and grid partition attention with a relative position bias over partition_size**2 tokens.
The model takes inputs of exactly `input_size` (the partition attention's grid is fixed
at construction, as torchvision's is); the `relative_position_index` buffers are derived
from the config (`MaxVit.torch_buffers`).
"""
from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from flaxnets import MODELS
from flaxnets.layers import (BatchNorm2d, Conv2d, ConvBNAct, LayerNorm, Linear, SqueezeExcitation,
                             attention, avg_pool2d, gelu, silu, stochastic_depth)
from netspecs.maxvit import (VARIANTS, MaxVitConfig, block_grid_sizes, check_input_size,
                             relative_position_index, stochastic_depth_probs, with_knobs)
from netspecs.registry import register_variants

_normal = nn.initializers.normal(0.02)  # torchvision's _init_weights for every conv and linear
_zeros = nn.initializers.zeros


class _Proj(nn.Module):
    """MBConv.proj: Sequential([AvgPool2d(3, 2, 1)], Conv2d 1x1 with bias)."""

    features: int
    stride: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        if self.stride == 2:
            x = avg_pool2d(x, 3, 2, 1)
        return Conv2d(self.features, 1, padding=0, use_bias=True, dtype=self.dtype,
                      kernel_init=_normal, name="1" if self.stride == 2 else "0")(x)


class _MBConvLayers(nn.Module):
    """MBConv.layers: pre_norm, conv_a (1x1), conv_b (3x3 depthwise), squeeze_excitation, conv_c."""

    config: MaxVitConfig
    out_channels: int
    stride: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        c = self.config
        mid = int(self.out_channels * c.expansion_ratio)
        bn = dict(bn_eps=c.bn_eps, bn_momentum=c.bn_momentum, dtype=self.dtype, kernel_init=_normal)
        x = BatchNorm2d(c.bn_momentum, c.bn_eps, dtype=self.dtype, name="pre_norm")(x, train)
        x = ConvBNAct(mid, 1, 1, 0, act=gelu, name="conv_a", **bn)(x, train)
        x = ConvBNAct(mid, 3, self.stride, 1, groups=mid, act=gelu, name="conv_b", **bn)(x, train)
        x = SqueezeExcitation(int(self.out_channels * c.squeeze_ratio), act=silu, dtype=self.dtype,
                              name="squeeze_excitation")(x)
        return Conv2d(self.out_channels, 1, padding=0, use_bias=True, dtype=self.dtype,
                      kernel_init=_normal, name="conv_c")(x)


class MBConv(nn.Module):
    config: MaxVitConfig
    out_channels: int
    stride: int
    sd_prob: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        res = x
        if self.stride != 1 or x.shape[-1] != self.out_channels:
            res = _Proj(self.out_channels, self.stride, self.dtype, name="proj")(x)
        y = _MBConvLayers(self.config, self.out_channels, self.stride, self.dtype, name="layers")(x, train)
        return res + stochastic_depth(y, self.sd_prob, train, self)


class RelativePositionalMultiHeadAttention(nn.Module):
    """Attention over (B, G, P, D) token groups with a learned bias per relative offset."""

    head_dim: int
    partition_size: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        b, g, p, d = x.shape
        if d % self.head_dim:
            raise ValueError(f"feat_dim: {d} must be divisible by head_dim: {self.head_dim}")
        heads, s = d // self.head_dim, self.partition_size
        if p != s * s:
            raise ValueError(f"{self.name}: {p} tokens per group, expected partition_size**2 = {s * s}")
        # torch's trunc_normal_(std=0.02) truncates at +-2 absolute, i.e. +-100 std: a normal.
        table = self.param("relative_position_bias_table", _normal, ((2 * s - 1) ** 2, heads), jnp.float32)
        qkv = Linear(3 * heads * self.head_dim, dtype=self.dtype, kernel_init=_normal,
                     bias_init=_zeros, name="to_qkv")(x)
        q, k, v = (t.reshape(b * g, p, heads, self.head_dim) for t in jnp.split(qkv, 3, axis=-1))
        index = relative_position_index(s, s).reshape(-1)
        bias = table[index].reshape(p, p, heads).transpose(2, 0, 1)[None]
        # torchvision scales by feat_dim ** -0.5 (not head_dim), on k; the product is the same.
        out = attention(q, k, v, bias=bias, scale=d ** -0.5).reshape(b, g, p, d)
        return Linear(d, dtype=self.dtype, kernel_init=_normal, bias_init=_zeros, name="merge")(out)


class _AttnLayer(nn.Module):
    """PartitionAttentionLayer.attn_layer: Sequential(LayerNorm, attention, Dropout)."""

    config: MaxVitConfig
    attention_dropout: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        c = self.config
        x = LayerNorm(c.ln_eps, dtype=self.dtype, name="0")(x)
        x = RelativePositionalMultiHeadAttention(c.head_dim, c.partition_size, self.dtype, name="1")(x)
        return nn.Dropout(self.attention_dropout, name="2")(x, deterministic=not train)


class _MlpLayer(nn.Module):
    """PartitionAttentionLayer.mlp_layer: Sequential(LayerNorm, Linear, GELU, Linear, Dropout)."""

    config: MaxVitConfig
    mlp_dropout: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        c, d = self.config, x.shape[-1]
        lin = dict(dtype=self.dtype, kernel_init=_normal, bias_init=_zeros)
        x = LayerNorm(c.ln_eps, dtype=self.dtype, name="0")(x)
        x = gelu(Linear(d * c.mlp_ratio, name="1", **lin)(x))
        x = Linear(d, name="3", **lin)(x)
        return nn.Dropout(self.mlp_dropout, name="4")(x, deterministic=not train)


def window_partition(x, p: int):
    """torchvision's WindowPartition on NHWC: (B, H, W, C) -> (B, H/p * W/p, p*p, C)."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // p) * (w // p), p * p, c)


def window_departition(x, p: int, hp: int, wp: int):
    """torchvision's WindowDepartition, NHWC out: (B, hp*wp, p*p, C) -> (B, hp*p, wp*p, C)."""
    b, _, _, c = x.shape
    x = x.reshape(b, hp, wp, p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, hp * p, wp * p, c)


class PartitionAttentionLayer(nn.Module):
    """Block ("window") or grid partition attention + MLP, each a pre-norm residual."""

    config: MaxVitConfig
    partition_type: str
    grid_size: tuple[int, int]
    sd_prob: float
    attention_dropout: float
    mlp_dropout: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        gh, gw = self.grid_size
        if x.shape[1:3] != (gh, gw):
            raise ValueError(f"{self.name}: built for a {gh}x{gw} map, got {x.shape[1]}x{x.shape[2]}")
        ps = self.config.partition_size
        p = ps if self.partition_type == "window" else gh // ps  # grid: p = n_partitions
        x = window_partition(x, p)
        if self.partition_type == "grid":
            x = jnp.swapaxes(x, -2, -3)
        a = _AttnLayer(self.config, self.attention_dropout, self.dtype, name="attn_layer")(x, train)
        x = x + stochastic_depth(a, self.sd_prob, train, self)
        m = _MlpLayer(self.config, self.mlp_dropout, self.dtype, name="mlp_layer")(x, train)
        x = x + stochastic_depth(m, self.sd_prob, train, self)
        if self.partition_type == "grid":
            x = jnp.swapaxes(x, -2, -3)
        return window_departition(x, p, gh // p, gw // p)


class _MaxVitLayerSeq(nn.Module):
    """MaxVitLayer.layers: Sequential(MBconv, window_attention, grid_attention)."""

    config: MaxVitConfig
    out_channels: int
    stride: int
    grid_size: tuple[int, int]
    sd_prob: float
    attention_dropout: float
    mlp_dropout: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = MBConv(self.config, self.out_channels, self.stride, self.sd_prob, self.dtype,
                   name="MBconv")(x, train)
        for kind in ("window", "grid"):
            x = PartitionAttentionLayer(self.config, kind, self.grid_size, self.sd_prob,
                                        self.attention_dropout, self.mlp_dropout, self.dtype,
                                        name=f"{kind}_attention")(x, train)
        return x


class MaxVitLayer(nn.Module):
    config: MaxVitConfig
    out_channels: int
    stride: int
    grid_size: tuple[int, int]
    sd_prob: float
    attention_dropout: float
    mlp_dropout: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        return _MaxVitLayerSeq(self.config, self.out_channels, self.stride, self.grid_size,
                               self.sd_prob, self.attention_dropout, self.mlp_dropout, self.dtype,
                               name="layers")(x, train)


class _LayerList(nn.Module):
    """MaxVitBlock.layers (an nn.ModuleList): MaxVitLayer "0", "1", ..."""

    config: MaxVitConfig
    out_channels: int
    grid_size: tuple[int, int]
    sd_probs: tuple[float, ...]
    attention_dropout: float
    mlp_dropout: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        for i, p in enumerate(self.sd_probs):
            x = MaxVitLayer(self.config, self.out_channels, 2 if i == 0 else 1, self.grid_size, p,
                            self.attention_dropout, self.mlp_dropout, self.dtype, name=str(i))(x, train)
        return x


class MaxVitBlock(nn.Module):
    config: MaxVitConfig
    out_channels: int
    grid_size: tuple[int, int]
    sd_probs: tuple[float, ...]
    attention_dropout: float
    mlp_dropout: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        return _LayerList(self.config, self.out_channels, self.grid_size, self.sd_probs,
                          self.attention_dropout, self.mlp_dropout, self.dtype, name="layers")(x, train)


class _Blocks(nn.Module):
    """MaxVit.blocks (an nn.ModuleList): MaxVitBlock "0", "1", ..."""

    config: MaxVitConfig
    input_size: tuple[int, int]
    attention_dropout: float
    mlp_dropout: float
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        c = self.config
        grids = block_grid_sizes(self.input_size, len(c.block_channels))
        probs = stochastic_depth_probs(c, c.stochastic_depth_prob)
        for i, (cout, grid, p) in enumerate(zip(c.block_channels, grids, probs)):
            x = MaxVitBlock(c, cout, grid, tuple(p), self.attention_dropout, self.mlp_dropout,
                            self.dtype, name=str(i))(x, train)
        return x


class _Stem(nn.Module):
    config: MaxVitConfig
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        c = self.config
        x = ConvBNAct(c.stem_channels, 3, 2, act=gelu, bn_eps=c.bn_eps, bn_momentum=c.bn_momentum,
                      dtype=self.dtype, kernel_init=_normal, name="0")(x, train)
        return _ConvOnly(c.stem_channels, self.dtype, name="1")(x)


class _ConvOnly(nn.Module):
    """Conv2dNormActivation(norm_layer=None, activation_layer=None, bias=True): Sequential(conv)."""

    features: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        return Conv2d(self.features, 3, 1, use_bias=True, dtype=self.dtype, kernel_init=_normal, name="0")(x)


class _Classifier(nn.Module):
    """Sequential(AdaptiveAvgPool2d(1), Flatten, LayerNorm "2", Linear "3", Tanh, Linear "5")."""

    config: MaxVitConfig
    num_classes: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        d = x.shape[-1]
        lin = dict(dtype=self.dtype, kernel_init=_normal, bias_init=_zeros)
        x = LayerNorm(self.config.ln_eps, dtype=self.dtype, name="2")(jnp.mean(x, axis=(1, 2)))
        x = jnp.tanh(Linear(d, name="3", **lin)(x))
        return Linear(self.num_classes, use_bias=False, name="5", **lin)(x)


class MaxVit(nn.Module):
    """torchvision.models.MaxVit; NHWC input of exactly `input_size`."""

    # backbone (flaxnets.features): stem and blocks.0..3
    feature_modules: ClassVar = ("stem", "blocks.*")
    classifier: ClassVar = "classifier.5"

    config: MaxVitConfig
    input_size: tuple[int, int] = (224, 224)
    num_classes: int = 1000
    attention_dropout: float = 0.0
    mlp_dropout: float = 0.0
    dtype: Any = None

    @property
    def default_input_size(self) -> tuple[int, int]:
        return tuple(self.input_size)

    def torch_buffers(self) -> dict[str, np.ndarray]:
        """Every attention's `relative_position_index` (int64, torchvision's values)."""
        c, s = self.config, self.config.partition_size
        index = relative_position_index(s, s)
        return {f"blocks.{b}.layers.{i}.layers.{kind}_attention.attn_layer.1.relative_position_index":
                index.copy()
                for b, n in enumerate(c.block_layers) for i in range(n) for kind in ("window", "grid")}

    @nn.compact
    def __call__(self, x, train: bool = False):
        h, w = self.input_size
        if x.ndim != 4 or x.shape[1:] != (h, w, 3):
            raise ValueError(f"MaxVit built for input_size {(h, w)} takes NHWC input (N, {h}, {w}, 3), "
                             f"got {x.shape}; build it with input_size=(H, W) for another size")
        x = _Stem(self.config, self.dtype, name="stem")(x, train)
        x = _Blocks(self.config, tuple(self.input_size), self.attention_dropout, self.mlp_dropout,
                    self.dtype, name="blocks")(x, train)
        return _Classifier(self.config, self.num_classes, self.dtype, name="classifier")(x)


def build(config: MaxVitConfig, *, num_classes: int = 1000, input_size: tuple[int, int] = (224, 224),
          stochastic_depth_prob: float | None = None, partition_size: int | None = None,
          squeeze_ratio: float | None = None, expansion_ratio: float | None = None,
          mlp_ratio: int | None = None, mlp_dropout: float = 0.0,
          attention_dropout: float = 0.0, dtype: Any = None) -> MaxVit:
    """None knobs take the variant's value (torchvision's maxvit_t: stochastic_depth_prob=0.2,
    partition_size=7, squeeze_ratio=0.25, expansion_ratio=4, mlp_ratio=4)."""
    knobs = dict(stochastic_depth_prob=stochastic_depth_prob, partition_size=partition_size,
                 squeeze_ratio=squeeze_ratio, expansion_ratio=expansion_ratio, mlp_ratio=mlp_ratio)
    config = with_knobs(config, **knobs)
    input_size = (int(input_size[0]), int(input_size[1]))
    check_input_size(input_size, config.partition_size, len(config.block_channels))
    return MaxVit(config, input_size, num_classes, attention_dropout, mlp_dropout, dtype)


register_variants(MODELS, VARIANTS, build)
