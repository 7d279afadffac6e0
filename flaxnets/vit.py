"""Vision Transformer (ViT-B/16, B/32, L/16, L/32, H/14) in Flax, following
torchvision/models/vision_transformer.py module for module.

Paper: Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image Recognition at
Scale", ICLR 2021. Configurations from `netspecs.vit`. Patch embedding is the shared `Conv2d`
(kernel = stride = patch); `class_token` (1, 1, D) and `encoder/pos_embedding` (1, S, D) are
parameters under torch's names and shapes; each block's attention is the shared
`MultiheadAttention` (torch's packed in_proj_weight / in_proj_bias). The model is defined for
one input size, `image_size` (torchvision asserts it); `interpolate_embeddings` resizes the
position embedding of a checkpoint to another `image_size`, as torchvision's function does.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, ClassVar, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.linen.dtypes import promote_dtype

from flaxnets import MODELS
from flaxnets.layers import MLP, Conv2d, LayerNorm, Linear, MultiheadAttention, gelu, interpolate
from netspecs.registry import register_variants
from netspecs.vit import VARIANTS, ViTConfig

Dtype = Any
LN_EPS = 1e-6
_xavier = nn.initializers.xavier_uniform()
_bias_1e6 = nn.initializers.normal(1e-6)


class EncoderBlock(nn.Module):
    num_heads: int
    mlp_dim: int
    dropout: float = 0.0
    attention_dropout: float = 0.0
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, inputs, train: bool = False):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = LayerNorm(LN_EPS, name="ln_1", **kw)(inputs)
        x = MultiheadAttention(self.num_heads, self.attention_dropout, name="self_attention", **kw)(x, train)
        x = nn.Dropout(self.dropout, name="dropout")(x, deterministic=not train)
        x = x + inputs
        y = LayerNorm(LN_EPS, name="ln_2", **kw)(x)
        y = MLP((self.mlp_dim, inputs.shape[-1]), act=gelu, dropout=self.dropout, kernel_init=_xavier,
                bias_init=_bias_1e6, name="mlp", **kw)(y, train)
        return x + y


class Layers(nn.Module):
    """torch's `encoder.layers` Sequential of `encoder_layer_{i}` blocks."""

    config: ViTConfig
    dropout: float = 0.0
    attention_dropout: float = 0.0
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        c = self.config
        for i in range(c.num_layers):
            x = EncoderBlock(c.num_heads, c.mlp_dim, self.dropout, self.attention_dropout,
                             self.dtype, self.param_dtype, name=f"encoder_layer_{i}")(x, train)
        return x


class Encoder(nn.Module):
    config: ViTConfig
    seq_length: int
    dropout: float = 0.0
    attention_dropout: float = 0.0
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        pos = self.param("pos_embedding", nn.initializers.normal(0.02),
                         (1, self.seq_length, self.config.hidden_dim), self.param_dtype)
        x, pos = promote_dtype(x, pos, dtype=self.dtype)
        x = nn.Dropout(self.dropout, name="dropout")(x + pos, deterministic=not train)
        x = Layers(self.config, self.dropout, self.attention_dropout, self.dtype, self.param_dtype,
                   name="layers")(x, train)
        return LayerNorm(LN_EPS, dtype=self.dtype, param_dtype=self.param_dtype, name="ln")(x)


class Heads(nn.Module):
    """torch's `heads` Sequential: `head`, or `pre_logits` -> tanh -> `head`."""

    num_classes: int
    representation_size: Optional[int] = None
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        if self.representation_size is not None:
            std = math.sqrt(1.0 / x.shape[-1])
            x = Linear(self.representation_size, kernel_init=nn.initializers.truncated_normal(std),
                       bias_init=nn.initializers.zeros, name="pre_logits", **kw)(x)
            x = jnp.tanh(x)
        return Linear(self.num_classes, kernel_init=nn.initializers.zeros,
                      bias_init=nn.initializers.zeros, name="head", **kw)(x)


class VisionTransformer(nn.Module):
    # backbone (flaxnets.features): every encoder block's output, as a map: the token sequence
    # without the class token, (N, image_size/p, image_size/p, hidden_dim) (`feature_map`)
    feature_modules: ClassVar = ("encoder.layers.encoder_layer_*",)
    classifier: ClassVar = "heads.head"
    feature_rule: ClassVar = "all"

    config: ViTConfig
    image_size: int = 224
    num_classes: int = 1000
    dropout: float = 0.0
    attention_dropout: float = 0.0
    representation_size: Optional[int] = None
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @property
    def default_input_size(self) -> int:
        return self.image_size

    def feature_map(self, path: str, out, x):
        """A block's token sequence (N, 1 + h*w, D) as a map (N, h, w, D), class token dropped."""
        p = self.config.patch_size
        return out[:, 1:].reshape(out.shape[0], x.shape[1] // p, x.shape[2] // p, out.shape[-1])

    @property
    def seq_length(self) -> int:
        return (self.image_size // self.config.patch_size) ** 2 + 1

    @nn.compact
    def __call__(self, x, train: bool = False):
        c = self.config
        if self.image_size % c.patch_size:
            raise ValueError(f"image_size {self.image_size} is not divisible by patch_size {c.patch_size}")
        n, h, w, _ = x.shape
        if h != self.image_size or w != self.image_size:
            raise ValueError(f"ViT built for {self.image_size}x{self.image_size} inputs (image_size="
                             f"{self.image_size}), got {h}x{w}; build it with image_size={h} and "
                             f"resize the position embedding with flaxnets.vit.interpolate_embeddings")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        fan_in = 3 * c.patch_size * c.patch_size
        x = Conv2d(c.hidden_dim, c.patch_size, c.patch_size, padding=0, use_bias=True,
                   kernel_init=nn.initializers.truncated_normal(math.sqrt(1.0 / fan_in)),
                   name="conv_proj", **kw)(x)
        x = x.reshape(n, -1, c.hidden_dim)  # (n, n_h * n_w, D), row-major over the patch grid
        cls = self.param("class_token", nn.initializers.zeros, (1, 1, c.hidden_dim), self.param_dtype)
        x, cls = promote_dtype(x, cls, dtype=self.dtype)
        x = jnp.concatenate([jnp.broadcast_to(cls, (n, 1, c.hidden_dim)), x], axis=1)
        x = Encoder(c, self.seq_length, self.dropout, self.attention_dropout, name="encoder", **kw)(x, train)
        return Heads(self.num_classes, self.representation_size, name="heads", **kw)(x[:, 0])


def build(config: ViTConfig, *, num_classes: int = 1000, image_size: int = 224, dropout: float = 0.0,
          attention_dropout: float = 0.0, representation_size: Optional[int] = None,
          dtype: Any = None) -> VisionTransformer:
    if image_size % config.patch_size:
        raise ValueError(f"image_size {image_size} is not divisible by patch_size {config.patch_size}")
    return VisionTransformer(config, image_size=image_size, num_classes=num_classes, dropout=dropout,
                             attention_dropout=attention_dropout,
                             representation_size=representation_size, dtype=dtype)


register_variants(MODELS, VARIANTS, build)


# ----------------------------------------------------------------------------- checkpoints
def interpolate_pos_embedding(pos_embedding, image_size: int, patch_size: int,
                              interpolation_mode: str = "bicubic"):
    """A (1, 1 + s*s, D) position embedding resized to the (image_size // patch_size)^2 grid:
    the class-token row kept, the grid through torch's F.interpolate(align_corners=True), as
    torchvision's interpolate_embeddings. numpy in, numpy out (dtype kept)."""
    pos = np.asarray(pos_embedding)
    n, seq_length, hidden_dim = pos.shape
    if n != 1:
        raise ValueError(f"Unexpected position embedding shape: {pos.shape}")
    new_seq_length = (image_size // patch_size) ** 2 + 1
    if new_seq_length == seq_length:
        return pos
    side = math.isqrt(seq_length - 1)
    if side * side != seq_length - 1:
        raise ValueError(f"seq_length is not a perfect square! Instead got seq_length_1d * seq_length_1d = "
                         f"{side * side} and seq_length = {seq_length - 1}")
    new_side = image_size // patch_size
    grid = pos[:, 1:, :].transpose(0, 2, 1).reshape(1, hidden_dim, side, side)
    grid = interpolate(grid, new_side, mode=interpolation_mode, align_corners=True)
    grid = grid.reshape(1, hidden_dim, new_side * new_side).transpose(0, 2, 1)
    return np.concatenate([pos[:, :1, :], grid.astype(pos.dtype)], axis=1)


def interpolate_embeddings(image_size: int, patch_size: int, variables, interpolation_mode: str = "bicubic",
                           reset_heads: bool = False):
    """torchvision.models.vision_transformer.interpolate_embeddings for flaxnets.

    `variables` is either Flax variables ({"params": {..., "encoder": {"pos_embedding": ...}}})
    or a torch-layout state dict of numpy arrays ({"encoder.pos_embedding": ..., ...}); the
    same kind comes back, a new tree (the input is not modified), with the position embedding
    resized for `image_size` (dtype kept; a jax array in Flax variables stays one) and, if `reset_heads`, without the heads
    (params "heads" / keys "heads.*"; the rest of the tree is shared, not copied).
    """
    if "encoder.pos_embedding" in variables:  # torch-layout state dict
        out = OrderedDict(variables)
        new = interpolate_pos_embedding(out["encoder.pos_embedding"], image_size, patch_size,
                                        interpolation_mode)
        if new.shape != np.shape(out["encoder.pos_embedding"]):
            out["encoder.pos_embedding"] = new
            if reset_heads:
                out = OrderedDict((k, v) for k, v in out.items() if not k.startswith("heads"))
        return out
    if "params" not in variables or "encoder" not in variables["params"] \
            or "pos_embedding" not in variables["params"]["encoder"]:
        raise KeyError("interpolate_embeddings: expected Flax ViT variables (params/encoder/pos_embedding) "
                       "or a state dict with 'encoder.pos_embedding'")
    params = dict(variables["params"])
    encoder = dict(params["encoder"])
    new = interpolate_pos_embedding(encoder["pos_embedding"], image_size, patch_size, interpolation_mode)
    out = dict(variables)
    if new.shape != np.shape(encoder["pos_embedding"]):
        encoder["pos_embedding"] = jnp.asarray(new) if isinstance(encoder["pos_embedding"], jax.Array) else new
        params["encoder"] = encoder
        if reset_heads:
            params.pop("heads", None)
        out["params"] = params
    return out
