"""Shared Flax layers with PyTorch semantics, written once for every family.

- `Conv2d`: torch's symmetric explicit padding, groups, dilation; routed through
  `flaxnets.conv_ops.conv2d` so fast paths apply to every model.
- `BatchNorm2d`: torch's momentum/eps meaning and torch's running-variance rule (the
  *unbiased* batch variance goes into `var`); state lives in the `batch_stats` collection,
  including torch's `num_batches_tracked`.
- `ConvBNAct` (torchvision's `Conv2dNormActivation`), `SqueezeExcitation`
  (torchvision.ops.SqueezeExcitation), `Linear` (torch's default init).
- Pooling with torch's rules: `adaptive_avg_pool2d`, `max_pool2d` (ceil_mode),
  `avg_pool2d` (count_include_pad, ceil_mode); `stochastic_depth`; torch's activations
  (`gelu` is torch's exact erf form).
- Transformer pieces: `LayerNorm` (torch's eps per family), `attention` (softmax attention
  through `jax.nn.dot_product_attention`).

Every layer computes in the dtype of its inputs and parameters unless `dtype` is given
(e.g. `jnp.bfloat16` for mixed precision; BatchNorm statistics then stay in float32).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.linen.dtypes import promote_dtype
from jax import lax

from flaxnets import conv_ops
from flaxnets.conv_ops import conv2d

Dtype = Any
Act = Optional[Callable[[jax.Array], jax.Array]]

# torchvision's usual init: kaiming_normal_(mode="fan_out", nonlinearity="relu").
kaiming_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# torch.nn.Linear / Conv2d default: kaiming_uniform_(a=sqrt(5)) == U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
torch_default_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_default_bias(fan_in: int):
    """torch.nn.Conv2d/Linear's default bias init U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return lambda key, shape, dtype: jax.random.uniform(key, shape, dtype, -bound, bound)


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


# ----------------------------------------------------------------------------- activations
def relu(x):
    return jnp.maximum(x, 0)


def relu6(x):
    return jnp.clip(x, 0, 6)


def hardsigmoid(x):
    return jnp.clip(x + 3, 0, 6) / 6


def hardswish(x):
    return x * jnp.clip(x + 3, 0, 6) / 6


def silu(x):
    return x * jax.nn.sigmoid(x)


def sigmoid(x):
    return jax.nn.sigmoid(x)


def gelu(x):
    """torch.nn.GELU() (the exact erf form; jax.nn.gelu defaults to the tanh approximation)."""
    return jax.nn.gelu(x, approximate=False)


# ----------------------------------------------------------------------------- layers
class Conv2d(nn.Module):
    """torch.nn.Conv2d on NHWC input. Parameters: `kernel` (kh, kw, in/groups, out), `bias`."""

    features: int
    kernel_size: int | Sequence[int] = 3
    stride: int | Sequence[int] = 1
    padding: int | Sequence[int] | None = None  # None: torch-style "same" for odd kernels
    dilation: int | Sequence[int] = 1
    groups: int = 1
    use_bias: bool = False
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    kernel_init: Callable = kaiming_fan_out
    bias_init: Callable = nn.initializers.zeros

    @nn.compact
    def __call__(self, x):
        kh, kw = _pair(self.kernel_size)
        dh, dw = _pair(self.dilation)
        if self.padding is None:
            pad = ((kh - 1) // 2 * dh, (kw - 1) // 2 * dw)
        else:
            pad = _pair(self.padding)
        cin = x.shape[-1]
        if cin % self.groups:
            raise ValueError(f"{self.name}: {cin} input channels not divisible by groups={self.groups}")
        kernel = self.param("kernel", self.kernel_init,
                            (kh, kw, cin // self.groups, self.features), self.param_dtype)
        bias = (self.param("bias", self.bias_init, (self.features,), self.param_dtype)
                if self.use_bias else None)
        x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
        y = conv2d(x, kernel, self.stride, pad, (dh, dw), self.groups)
        if bias is not None:
            y = y + bias
        return y


class Linear(nn.Module):
    """torch.nn.Linear. Parameters: `kernel` (in, out), `bias`."""

    features: int
    use_bias: bool = True
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    kernel_init: Callable = torch_default_init
    bias_init: Callable | None = None  # None: torch's U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    # Applied to the bias before it is added (Swin V2 zeroes the key third of qkv's bias,
    # as torchvision does on a clone: the parameter itself is left as it is).
    bias_fn: Callable | None = None

    @nn.compact
    def __call__(self, x):
        fan_in = x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (fan_in, self.features), self.param_dtype)
        bias = None
        if self.use_bias:
            bound = 1.0 / math.sqrt(fan_in)
            init = self.bias_init or (lambda k, s, d: jax.random.uniform(k, s, d, -bound, bound))
            bias = self.param("bias", init, (self.features,), self.param_dtype)
        x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
        if bias is not None and self.bias_fn is not None:
            bias = self.bias_fn(bias)
        y = jnp.dot(x, kernel)
        return y if bias is None else y + bias


def _bn_stats(x, stat_dtype):
    xs = x.astype(stat_dtype)
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(xs, axes)
    return xs, mean, jnp.mean(jnp.square(xs - mean), axes)


def _bn_normalize(xs, mean, var, scale, bias, eps):
    mul = lax.rsqrt(var + eps) * scale.astype(xs.dtype)
    return (xs - mean) * mul + bias.astype(xs.dtype)


def _bn_batch(x, scale, bias, eps, stat_dtype):
    """Train-mode batch norm: (normalised x in stat_dtype, batch mean, biased batch variance)."""
    xs, mean, var = _bn_stats(x, stat_dtype)
    return _bn_normalize(xs, mean, var, scale, bias, eps), mean, var


def _bn_train_fwd(x, scale, bias, eps, stat_dtype):
    out = _bn_batch(x, scale, bias, eps, stat_dtype)
    return out, (x, scale, bias, *out[1:])


def _bn_train_bwd(eps, stat_dtype, res, cts):
    # torch's native_batch_norm_backward formula, two reductions and one elementwise pass
    # (autodiff through mean and variance makes XLA:CPU take ~1.4x longer).
    x, scale, bias, mean, var = res
    gy, gmean, gvar = cts
    axes = tuple(range(x.ndim - 1))
    n = x.size // x.shape[-1]
    inv = lax.rsqrt(var + eps)
    xc = x.astype(stat_dtype) - mean
    gy = gy.astype(stat_dtype)
    gsum, gxhat = gy.sum(axes), (gy * xc).sum(axes) * inv
    k = scale.astype(stat_dtype) * inv / n
    dx = k * (n * gy - gsum - xc * (inv * gxhat)) + gmean / n + gvar * (2 / n) * xc
    return dx.astype(x.dtype), gxhat.astype(scale.dtype), gsum.astype(bias.dtype)


# `_bn_batch` with the closed-form VJP (autodiff of `_bn_batch` is the plain path).
_bn_train = jax.custom_vjp(_bn_batch, nondiff_argnums=(3, 4))
_bn_train.defvjp(_bn_train_fwd, _bn_train_bwd)


class BatchNorm2d(nn.Module):
    """torch.nn.BatchNorm2d over the last axis.

    `momentum` has torch's meaning (weight of the new batch statistic; Flax's momentum is
    1 - this). In train mode the batch is normalised with the biased variance and
    `batch_stats/var` is updated with the unbiased one, as torch does.
    """

    momentum: float = 0.1
    eps: float = 1e-5
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    scale_init: Callable = nn.initializers.ones
    bias_init: Callable = nn.initializers.zeros

    @nn.compact
    def __call__(self, x, train: bool = False):
        c = x.shape[-1]
        scale = self.param("scale", self.scale_init, (c,), self.param_dtype)
        bias = self.param("bias", self.bias_init, (c,), self.param_dtype)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), self.param_dtype))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), self.param_dtype))
        count = self.variable("batch_stats", "num_batches_tracked", lambda: jnp.zeros((), jnp.int32))
        out_dtype = self.dtype or jnp.result_type(x.dtype, scale.dtype)
        # Statistics in at least float32 (float64 stays float64).
        stat_dtype = jnp.promote_types(jnp.result_type(x.dtype, scale.dtype), jnp.float32)
        if train:
            # The closed-form VJP where the fast paths apply (CPU by default; measured there).
            bn = _bn_train if conv_ops.fast_paths() else _bn_batch
            y, mean, var = bn(x, scale, bias, self.eps, stat_dtype)
            if not self.is_initializing():
                n = x.size // c
                m = self.momentum
                unbiased = var * (n / max(n - 1, 1))
                ra_mean.value = ((1 - m) * ra_mean.value + m * mean).astype(ra_mean.value.dtype)
                ra_var.value = ((1 - m) * ra_var.value + m * unbiased).astype(ra_var.value.dtype)
                count.value = count.value + 1
        else:
            y = _bn_normalize(x.astype(stat_dtype), ra_mean.value.astype(stat_dtype),
                              ra_var.value.astype(stat_dtype), scale, bias, self.eps)
        return y.astype(out_dtype)


class LayerNorm(nn.Module):
    """torch.nn.LayerNorm over the last axis (`scale` <-> weight, `bias`). `eps` is per family:
    torch's default 1e-5 (torchvision's Swin too: partial(nn.LayerNorm, eps=1e-5)), 1e-6 for
    ViT/ConvNeXt/MaxViT. Statistics in at least float32."""

    eps: float = 1e-5
    use_bias: bool = True
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,), self.param_dtype)
        bias = (self.param("bias", nn.initializers.zeros, (c,), self.param_dtype)
                if self.use_bias else None)
        out_dtype = self.dtype or jnp.result_type(x.dtype, scale.dtype)
        stat_dtype = jnp.promote_types(jnp.result_type(x.dtype, scale.dtype), jnp.float32)
        xs = x.astype(stat_dtype)
        mean = jnp.mean(xs, -1, keepdims=True)
        xc = xs - mean
        var = jnp.mean(jnp.square(xc), -1, keepdims=True)  # biased, as torch
        y = xc * lax.rsqrt(var + self.eps) * scale.astype(stat_dtype)
        if bias is not None:
            y = y + bias.astype(stat_dtype)
        return y.astype(out_dtype)


def attention(q, k, v, bias=None, scale: float | None = None, dropout: Callable | None = None):
    """Softmax attention, q/k/v (batch, length, heads, head_dim) -> same layout as q.

    `scale` multiplies q·k (default 1/sqrt(head_dim), torch's MultiheadAttention); `bias` is
    added to the logits before the softmax (relative position bias, attention masks), shape
    broadcastable to (batch, heads, q_len, k_len). `dropout`, if given, is applied to the
    softmax probabilities (torch's attention dropout, e.g. `F.dropout(attn, p)`). Half-precision
    inputs without `dropout` go through `jax.nn.dot_product_attention` (a fused kernel on GPU);
    float32 and float64 are computed in their own dtype, since that function always takes the
    softmax in float32 (1e-7 off torch in float64).
    """
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    if q.dtype in (jnp.bfloat16, jnp.float16) and dropout is None:
        return jax.nn.dot_product_attention(q, k, v, bias=None if bias is None else bias.astype(q.dtype),
                                            scale=scale)
    logits = jnp.einsum("bqhd,bkhd->bhqk", q * jnp.asarray(scale, q.dtype), k)
    if bias is not None:
        logits = logits + bias.astype(logits.dtype)
    probs = jax.nn.softmax(logits, axis=-1)
    if dropout is not None:
        probs = dropout(probs)
    return jnp.einsum("bhqk,bkhd->bqhd", probs, v)


class ConvBNAct(nn.Module):
    """torchvision.ops.Conv2dNormActivation: Sequential(conv "0", bn "1", activation)."""

    features: int
    kernel_size: int | Sequence[int] = 3
    stride: int | Sequence[int] = 1
    padding: int | Sequence[int] | None = None
    dilation: int | Sequence[int] = 1
    groups: int = 1
    act: Act = relu
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    kernel_init: Callable | None = None  # None: Conv2d's default

    @nn.compact
    def __call__(self, x, train: bool = False):
        init = {} if self.kernel_init is None else {"kernel_init": self.kernel_init}
        x = Conv2d(self.features, self.kernel_size, self.stride, self.padding, self.dilation,
                   self.groups, dtype=self.dtype, param_dtype=self.param_dtype, name="0", **init)(x)
        x = BatchNorm2d(self.bn_momentum, self.bn_eps, dtype=self.dtype,
                        param_dtype=self.param_dtype, name="1")(x, train)
        return x if self.act is None else self.act(x)


class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation: avgpool -> fc1 -> act -> fc2 -> scale_act -> x * s."""

    squeeze_channels: int
    act: Callable = relu
    scale_act: Callable = sigmoid
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        s = jnp.mean(x, axis=(1, 2), keepdims=True)
        s = Conv2d(self.squeeze_channels, 1, use_bias=True, dtype=self.dtype,
                   param_dtype=self.param_dtype, kernel_init=torch_default_init, name="fc1")(s)
        s = self.act(s)
        s = Conv2d(c, 1, use_bias=True, dtype=self.dtype, param_dtype=self.param_dtype,
                   kernel_init=torch_default_init, name="fc2")(s)
        return x * self.scale_act(s)


# ----------------------------------------------------------------------------- functions
def stochastic_depth(x, p: float, train: bool, module: nn.Module):
    """torchvision.ops.stochastic_depth(mode="row") using `module`'s "dropout" RNG stream."""
    if not train or p == 0.0:
        return x
    survival = 1.0 - p
    key = module.make_rng("dropout")
    noise = jax.random.bernoulli(key, survival, (x.shape[0],) + (1,) * (x.ndim - 1))
    noise = noise.astype(x.dtype)
    if survival > 0.0:
        noise = noise / survival
    return x * noise


def _pool_windows(size: int, out: int) -> list[tuple[int, int]]:
    # torch: start = floor(i * in / out), end = ceil((i + 1) * in / out)
    return [((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out)]


def _adaptive_matrix(size: int, out: int, dtype) -> np.ndarray:
    m = np.zeros((out, size), dtype=np.float64)
    for i, (s, e) in enumerate(_pool_windows(size, out)):
        m[i, s:e] = 1.0 / (e - s)
    return m


def adaptive_avg_pool2d(x, output_size: int | Sequence[int]):
    """torch.nn.AdaptiveAvgPool2d on NHWC input, with torch's window rule at every size."""
    oh, ow = _pair(output_size)
    n, h, w, c = x.shape
    if (oh, ow) == (1, 1):
        return jnp.mean(x, axis=(1, 2), keepdims=True)
    if h % oh == 0 and w % ow == 0:
        return x.reshape(n, oh, h // oh, ow, w // ow, c).mean(axis=(2, 4))
    rows = []
    for hs, he in _pool_windows(h, oh):
        cols = [jnp.mean(x[:, hs:he, ws:we, :], axis=(1, 2)) for ws, we in _pool_windows(w, ow)]
        rows.append(jnp.stack(cols, axis=1))
    return jnp.stack(rows, axis=1)


def _pool_geometry(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> tuple[int, int]:
    """torch's pooling output size and the extra right padding that realises it."""
    eff = d * (k - 1) + 1
    num = size + 2 * p - eff
    out = (-(-num // s) if ceil_mode else num // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    extra = max((out - 1) * s + eff - (size + 2 * p), 0)
    return out, extra


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False):
    """torch.nn.MaxPool2d on NHWC input, ceil_mode emulated exactly."""
    (kh, kw), (sh, sw) = _pair(kernel_size), _pair(stride if stride is not None else kernel_size)
    (ph, pw), (dh, dw) = _pair(padding), _pair(dilation)
    _, eh = _pool_geometry(x.shape[1], kh, sh, ph, dh, ceil_mode)
    _, ew = _pool_geometry(x.shape[2], kw, sw, pw, dw, ceil_mode)
    init = np.array(-np.inf, x.dtype)  # concrete (numpy) init: differentiable under jit
    return lax.reduce_window(x, init, lax.max, (1, kh, kw, 1), (1, sh, sw, 1),
                             ((0, 0), (ph, ph + eh), (pw, pw + ew), (0, 0)),
                             window_dilation=(1, dh, dw, 1))


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True):
    """torch.nn.AvgPool2d on NHWC input (divisor rules of count_include_pad and ceil_mode)."""
    (kh, kw), (sh, sw) = _pair(kernel_size), _pair(stride if stride is not None else kernel_size)
    ph, pw = _pair(padding)
    h, w = x.shape[1], x.shape[2]
    _, eh = _pool_geometry(h, kh, sh, ph, 1, ceil_mode)
    _, ew = _pool_geometry(w, kw, sw, pw, 1, ceil_mode)
    pads = ((0, 0), (ph, ph + eh), (pw, pw + ew), (0, 0))
    zero = np.array(0, x.dtype)  # concrete (numpy) init: differentiable under jit
    total = lax.reduce_window(x, zero, lax.add, (1, kh, kw, 1), (1, sh, sw, 1), pads)
    # Divisor: window cells inside the input (count_include_pad=False) or inside the
    # symmetrically padded input (True); cells added by ceil_mode never count.
    def counts(size, k, s, p, e):
        lo = -p if count_include_pad else 0
        hi = size + p if count_include_pad else size
        starts = np.arange(0, size + 2 * p + e - k + 1, s) - p
        return np.clip(np.minimum(starts + k, hi) - np.maximum(starts, lo), 1, None)
    div = np.outer(counts(h, kh, sh, ph, eh), counts(w, kw, sw, pw, ew))
    return total / jnp.asarray(div[None, :, :, None], dtype=x.dtype)


def flatten_nchw(x):
    """torch.flatten(x, 1) of the NCHW tensor this NHWC array stands for."""
    return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)


def make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """torchvision's _make_divisible (round to a multiple of divisor, never below 90% of v)."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v
