"""Swin Transformer V1 / V2 in Flax.

Papers: Liu et al., "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows",
ICCV 2021 (arXiv:2103.14030); Liu et al., "Swin Transformer V2: Scaling Up Capacity and
Resolution", CVPR 2022 (arXiv:2111.09883). Follows torchvision/models/swin_transformer.py:
module paths `features.0.{0,2}` (patch embedding conv, LayerNorm), `features.{1,3,5,7}.i.{norm1,
attn.{qkv,proj,cpb_mlp.{0,2}},norm2,mlp.{0,3}}`, `features.{2,4,6}.{reduction,norm}`, `norm`,
`head`. Activations are NHWC throughout, as torchvision's after its permute in `features.0`.

`relative_position_bias_table` (V1) and `logit_scale` (V2) are parameters in torch's layout;
the buffers `relative_position_index` and `relative_coords_table` are derived in numpy
(netspecs.swin) and listed by `SwinTransformer.torch_buffers()` for the converter.
"""
from __future__ import annotations

import math
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flaxnets import MODELS
from flaxnets.layers import (Conv2d, LayerNorm, Linear, attention, gelu, relu, stochastic_depth,
                             torch_default_bias, torch_default_init)
from netspecs.registry import register_variants
from netspecs.swin import (VARIANTS, SwinConfig, attention_mask, effective_shift,
                           relative_coords_table, relative_position_index)

LN_EPS = 1e-5  # torchvision's Swin: partial(nn.LayerNorm, eps=1e-5)
# torch.nn.init.trunc_normal_(std=0.02) cuts at +-2 (absolute), i.e. +-100 std.
_trunc02 = nn.initializers.truncated_normal(0.02, lower=-100.0, upper=100.0)
_zeros = nn.initializers.zeros


def _linear(features: int, name: str, dtype, use_bias: bool = True, **kw) -> Linear:
    """nn.Linear after SwinTransformer's init loop: trunc_normal(0.02) weight, zero bias."""
    return Linear(features, use_bias=use_bias, dtype=dtype, kernel_init=_trunc02,
                  bias_init=_zeros, name=name, **kw)


def _zero_key_bias(b):
    n = b.shape[0] // 3
    return jnp.concatenate([b[:n], jnp.zeros_like(b[n:2 * n]), b[2 * n:]])


def _normalize(x):
    """torch.nn.functional.normalize(x, dim=-1): x / max(||x||_2, 1e-12). The max is a `where`:
    torch's clamp_min passes the gradient where norm >= eps, and jnp.maximum's derivative is an
    equality test that XLA's recomputation can break (see layers.relu)."""
    n = jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True))
    return x / jnp.where(n >= 1e-12, n, jnp.asarray(1e-12, n.dtype))


class _CpbMlp(nn.Module):
    """V2's continuous position bias MLP: Linear(2, 512), ReLU, Linear(512, heads, no bias)."""

    num_heads: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        x = relu(_linear(512, "0", self.dtype)(x))
        return _linear(self.num_heads, "2", self.dtype, use_bias=False)(x)


class ShiftedWindowAttention(nn.Module):
    """torchvision's ShiftedWindowAttention (V1) / ShiftedWindowAttentionV2 on (B, H, W, C)."""

    num_heads: int
    window_size: tuple[int, int]
    shift_size: tuple[int, int]
    version: int = 1
    attention_dropout: float = 0.0
    dropout: float = 0.0
    dtype: Any = None

    def _position_bias(self):
        """(heads, N, N) relative position bias."""
        wh, ww = self.window_size
        n, heads = wh * ww, self.num_heads
        index = relative_position_index(self.window_size)
        if self.version == 1:
            table = self.param("relative_position_bias_table", _trunc02,
                               ((2 * wh - 1) * (2 * ww - 1), heads), jnp.float32)
        else:
            coords = jnp.asarray(relative_coords_table(self.window_size))
            table = _CpbMlp(heads, self.dtype, name="cpb_mlp")(coords).reshape(-1, heads)
        bias = table[index].reshape(n, n, heads).transpose(2, 0, 1)
        return 16 * jax.nn.sigmoid(bias) if self.version == 2 else bias

    @nn.compact
    def __call__(self, x, train: bool = False):
        B, H, W, C = x.shape
        wh, ww = self.window_size
        heads = self.num_heads
        ph, pw = H + (wh - H % wh) % wh, W + (ww - W % ww) % ww
        x = jnp.pad(x, ((0, 0), (0, ph - H), (0, pw - W), (0, 0)))
        shift = effective_shift((ph, pw), self.window_size, self.shift_size)
        shifted = sum(shift) > 0
        if shifted:
            x = jnp.roll(x, (-shift[0], -shift[1]), axis=(1, 2))
        nwh, nww = ph // wh, pw // ww
        x = x.reshape(B, nwh, wh, nww, ww, C).transpose(0, 1, 3, 2, 4, 5).reshape(B * nwh * nww, wh * ww, C)
        n = wh * ww

        bias = self._position_bias()
        logit_scale = None
        if self.version == 2:
            logit_scale = self.param("logit_scale", lambda k, s, d: jnp.full(s, math.log(10.0), d),
                                     (heads, 1, 1), jnp.float32)
        qkv = _linear(3 * C, "qkv", self.dtype,
                      bias_fn=_zero_key_bias if self.version == 2 else None)(x)
        qkv = qkv.reshape(x.shape[0], n, 3, heads, C // heads)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        dt = q.dtype
        if self.version == 2:
            cap = math.log(100.0)
            ls = jnp.exp(jnp.where(logit_scale > cap, cap, logit_scale)).reshape(heads, 1)
            q, k, scale = _normalize(q) * ls.astype(dt), _normalize(k), 1.0
        else:
            scale = (C // heads) ** -0.5
        bias = bias.astype(dt)[None]  # (1, heads, N, N)
        if shifted:
            mask = jnp.asarray(attention_mask((ph, pw), self.window_size, shift), dt)  # (nW, N, N)
            bias = jnp.broadcast_to(bias[:, None] + mask[None, :, None], (B, nwh * nww, heads, n, n))
            bias = bias.reshape(B * nwh * nww, heads, n, n)
        rng = self.make_rng("dropout") if train and self.attention_dropout > 0.0 else None
        x = attention(q, k, v, bias=bias, scale=scale, dropout_rate=self.attention_dropout,
                      dropout_rng=rng).reshape(-1, n, C)
        x = _linear(C, "proj", self.dtype)(x)
        x = nn.Dropout(self.dropout)(x, deterministic=not train)
        x = x.reshape(B, nwh, nww, wh, ww, C).transpose(0, 1, 3, 2, 4, 5).reshape(B, ph, pw, C)
        if shifted:
            x = jnp.roll(x, shift, axis=(1, 2))
        return x[:, :H, :W, :]


class _Mlp(nn.Module):
    """torchvision.ops.MLP(dim, [hidden, dim], GELU, dropout): Linear "0", Linear "3"."""

    hidden: int
    dropout: float = 0.0
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        c = x.shape[-1]
        x = gelu(_linear(self.hidden, "0", self.dtype)(x))
        x = nn.Dropout(self.dropout)(x, deterministic=not train)
        x = _linear(c, "3", self.dtype)(x)
        return nn.Dropout(self.dropout)(x, deterministic=not train)


class SwinTransformerBlock(nn.Module):
    """V1: x + sd(attn(norm1(x))), x + sd(mlp(norm2(x))); V2 (post-norm): x + sd(norm1(attn(x)))."""

    num_heads: int
    window_size: tuple[int, int]
    shift_size: tuple[int, int]
    version: int = 1
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    attention_dropout: float = 0.0
    stochastic_depth_prob: float = 0.0
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        dim = x.shape[-1]
        norm1 = LayerNorm(LN_EPS, dtype=self.dtype, name="norm1")
        attn = ShiftedWindowAttention(self.num_heads, self.window_size, self.shift_size, self.version,
                                      self.attention_dropout, self.dropout, self.dtype, name="attn")
        norm2 = LayerNorm(LN_EPS, dtype=self.dtype, name="norm2")
        mlp = _Mlp(int(dim * self.mlp_ratio), self.dropout, self.dtype, name="mlp")
        p = self.stochastic_depth_prob
        if self.version == 1:
            x = x + stochastic_depth(attn(norm1(x), train), p, train, self)
            return x + stochastic_depth(mlp(norm2(x), train), p, train, self)
        x = x + stochastic_depth(norm1(attn(x, train)), p, train, self)
        return x + stochastic_depth(norm2(mlp(x, train)), p, train, self)


class PatchMerging(nn.Module):
    """2x2 neighbourhood concat (torchvision's _patch_merging_pad), then V1: norm(4C) ->
    reduction; V2 (PatchMergingV2): reduction -> norm(2C)."""

    version: int = 1
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        H, W, C = x.shape[-3:]
        x = jnp.pad(x, ((0, 0), (0, H % 2), (0, W % 2), (0, 0)))
        x = jnp.concatenate([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        norm = LayerNorm(LN_EPS, dtype=self.dtype, name="norm")
        reduction = _linear(2 * C, "reduction", self.dtype, use_bias=False)
        return reduction(norm(x)) if self.version == 1 else norm(reduction(x))


class _PatchEmbed(nn.Module):
    """features.0: Conv2d(3, C, patch, stride=patch) "0", permute to NHWC, LayerNorm "2"."""

    config: SwinConfig
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        c = self.config
        fan_in = 3 * c.patch_size[0] * c.patch_size[1]
        x = Conv2d(c.embed_dim, c.patch_size, c.patch_size, padding=0, use_bias=True, dtype=self.dtype,
                   kernel_init=torch_default_init, bias_init=torch_default_bias(fan_in), name="0")(x)
        return LayerNorm(LN_EPS, dtype=self.dtype, name="2")(x)


class _Stage(nn.Module):
    config: SwinConfig
    stage: int
    drop_probs: tuple[float, ...]
    dropout: float = 0.0
    attention_dropout: float = 0.0
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        c = self.config
        for i, p in enumerate(self.drop_probs):
            x = SwinTransformerBlock(c.num_heads[self.stage], c.window_size, c.shift_size(i), c.version,
                                     c.mlp_ratio, self.dropout, self.attention_dropout, p, self.dtype,
                                     name=str(i))(x, train)
        return x


class _Features(nn.Module):
    config: SwinConfig
    dropout: float = 0.0
    attention_dropout: float = 0.0
    stochastic_depth_prob: float = 0.0
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        c = self.config
        x = _PatchEmbed(c, self.dtype, name="0")(x)
        probs = c.block_drop_probs(self.stochastic_depth_prob)
        for s in range(len(c.depths)):
            x = _Stage(c, s, tuple(probs[s]), self.dropout, self.attention_dropout, self.dtype,
                       name=str(2 * s + 1))(x, train)
            if s < len(c.depths) - 1:
                x = PatchMerging(c.version, self.dtype, name=str(2 * s + 2))(x)
        return x


class SwinTransformer(nn.Module):
    # backbone (flaxnets.features): the last module of `features` at each resolution (the stages
    # features.1, .3, .5, .7, NHWC in torchvision too; before the final `norm`)
    feature_modules: ClassVar = ("features.*",)
    classifier: ClassVar = "head"

    config: SwinConfig
    num_classes: int = 1000
    dropout: float = 0.0
    attention_dropout: float = 0.0
    stochastic_depth_prob: float = 0.1
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = _Features(self.config, self.dropout, self.attention_dropout, self.stochastic_depth_prob,
                      self.dtype, name="features")(x, train)
        x = LayerNorm(LN_EPS, dtype=self.dtype, name="norm")(x)
        x = jnp.mean(x, axis=(1, 2))
        return _linear(self.num_classes, "head", self.dtype)(x)

    def torch_buffers(self) -> dict[str, np.ndarray]:
        """torchvision's per-block buffers, fixed by the window size."""
        c, out = self.config, {}
        for s, depth in enumerate(c.depths):
            for i in range(depth):
                prefix = f"features.{2 * s + 1}.{i}.attn."
                if c.version == 2:
                    out[prefix + "relative_coords_table"] = relative_coords_table(c.window_size)
                out[prefix + "relative_position_index"] = relative_position_index(c.window_size)
        return out


def build(config: SwinConfig, *, num_classes: int = 1000, dropout: float = 0.0,
          attention_dropout: float = 0.0, stochastic_depth_prob: float | None = None,
          dtype: Any = None) -> SwinTransformer:
    """torchvision's `swin_*` builder; `stochastic_depth_prob=None` is the variant's rate."""
    p = config.stochastic_depth_prob if stochastic_depth_prob is None else stochastic_depth_prob
    return SwinTransformer(config, num_classes, dropout, attention_dropout, p, dtype)


register_variants(MODELS, VARIANTS, build)
