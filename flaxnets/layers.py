"""Shared Flax layers with PyTorch semantics, written once for every family.

- `Conv2d`: torch's symmetric explicit padding, groups, dilation; routed through
  `flaxnets.conv_ops.conv2d` so fast paths apply to every model.
- `BatchNorm2d`: torch's momentum/eps meaning and torch's running-variance rule (the
  *unbiased* batch variance goes into `var`); state lives in the `batch_stats` collection,
  including torch's `num_batches_tracked`.
- `ConvBNAct` (torchvision's `Conv2dNormActivation`), `SqueezeExcitation`
  (torchvision.ops.SqueezeExcitation), `BatchNormAct2d` (timm's BN + activation module),
  `Linear` (torch's default init).
- Pooling with torch's rules: `adaptive_avg_pool2d`, `max_pool2d` (ceil_mode),
  `avg_pool2d` (count_include_pad, ceil_mode), `spatial_mean` (global average);
  `stochastic_depth`; torch's activations (`gelu` is torch's exact erf form);
  `check_input` (the `spatial_dims` / `in_channels` knobs' input check).
- Transformer pieces: `LayerNorm` (torch's eps per family), `attention` (softmax attention
  through `jax.nn.dot_product_attention`).

Every layer computes in the dtype of its inputs and parameters unless `dtype` is given
(e.g. `jnp.bfloat16` for mixed precision; BatchNorm statistics then stay in float32).

Spatial rank: convolutions, BatchNorm, `SqueezeExcitation`, `BatchNormAct2d`, the pools and
`spatial_mean` take it from their input: NHWC (2-D, the default everywhere) or NLC (1-D
signals, torch's Conv1d / BatchNorm1d / *Pool1d; a 1-D `Conv2d` kernel is (k, in/groups, out)).
The "2d" in the names is torch's 2-D class each mirrors by default.
"""
from __future__ import annotations

import functools
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


def _ntuple(v, n: int, what: str = "size") -> tuple[int, ...]:
    """An int or an n-sequence as an n-tuple (n = the input's spatial rank)."""
    if isinstance(v, int):
        return (v,) * n
    v = tuple(int(a) for a in v)
    if len(v) != n:
        raise ValueError(f"{what} {v} given for {n}-D input")
    return v


def spatial_axes(x) -> tuple[int, ...]:
    """The spatial axes of a channels-last batch: (1, 2) for NHWC, (1,) for NLC."""
    return tuple(range(1, x.ndim - 1))


def spatial_mean(x, keepdims: bool = False):
    """Global average pooling over the spatial axes (torch's `x.mean([2, 3])`, or
    `AdaptiveAvgPool{1,2}d(1)` + flatten when keepdims is False), any spatial rank."""
    return jnp.mean(x, axis=spatial_axes(x), keepdims=keepdims)


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
    """torch.nn.Conv2d on NHWC input. Parameters: `kernel` (kh, kw, in/groups, out), `bias`.

    On NLC input, torch.nn.Conv1d: `kernel` (k, in/groups, out); int knobs mean the same.
    """

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
        nd = x.ndim - 2
        if nd not in (1, 2):
            raise ValueError(f"{self.name}: expected NHWC or NLC input, got shape {x.shape}")
        ks = _ntuple(self.kernel_size, nd, "kernel_size")
        dil = _ntuple(self.dilation, nd, "dilation")
        if self.padding is None:
            pad = tuple((k - 1) // 2 * d for k, d in zip(ks, dil))
        else:
            pad = _ntuple(self.padding, nd, "padding")
        cin = x.shape[-1]
        if cin % self.groups:
            raise ValueError(f"{self.name}: {cin} input channels not divisible by groups={self.groups}")
        kernel = self.param("kernel", self.kernel_init,
                            (*ks, cin // self.groups, self.features), self.param_dtype)
        bias = (self.param("bias", self.bias_init, (self.features,), self.param_dtype)
                if self.use_bias else None)
        x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
        stride = _ntuple(self.stride, nd, "stride")
        y = conv2d(x, kernel, stride if nd == 2 else stride[0],
                   pad if nd == 2 else (pad[0],), dil if nd == 2 else dil[0], self.groups)
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
    """torch.nn.BatchNorm2d over the last axis (torch.nn.BatchNorm1d on (N, L, C) input).

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
        return _batch_norm(self, x, train)


def _batch_norm(self: BatchNorm2d, x, train: bool):
    """BatchNorm2d's computation, its variables created on `self` (BatchNorm2d and
    BatchNormAct2d call it from their compact __call__)."""
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
    torch's default 1e-5, 1e-6 for ViT/ConvNeXt/Swin/MaxViT. Statistics in at least float32."""

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


def attention(q, k, v, bias=None, scale: float | None = None):
    """Softmax attention, q/k/v (batch, length, heads, head_dim) -> same layout as q.

    `scale` multiplies q·k (default 1/sqrt(head_dim), torch's MultiheadAttention); `bias` is
    added to the logits before the softmax (relative position bias, attention masks), shape
    broadcastable to (batch, heads, q_len, k_len). Half-precision inputs go through
    `jax.nn.dot_product_attention` (a fused kernel on GPU); float32 and float64 are computed
    in their own dtype, since that function always takes the softmax in float32 (1e-7 off
    torch in float64).
    """
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    if q.dtype in (jnp.bfloat16, jnp.float16):
        return jax.nn.dot_product_attention(q, k, v, bias=None if bias is None else bias.astype(q.dtype),
                                            scale=scale)
    logits = jnp.einsum("bqhd,bkhd->bhqk", q * jnp.asarray(scale, q.dtype), k)
    if bias is not None:
        logits = logits + bias.astype(logits.dtype)
    return jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), v)


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
    """torchvision.ops.SqueezeExcitation: avgpool -> fc1 -> act -> fc2 -> scale_act -> x * s.

    Any spatial rank (the 1-D twin uses AdaptiveAvgPool1d and Conv1d)."""

    squeeze_channels: int
    act: Callable = relu
    scale_act: Callable = sigmoid
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        s = spatial_mean(x, keepdims=True)
        s = Conv2d(self.squeeze_channels, 1, use_bias=True, dtype=self.dtype,
                   param_dtype=self.param_dtype, kernel_init=torch_default_init, name="fc1")(s)
        s = self.act(s)
        s = Conv2d(c, 1, use_bias=True, dtype=self.dtype, param_dtype=self.param_dtype,
                   kernel_init=torch_default_init, name="fc2")(s)
        return x * self.scale_act(s)


class BatchNormAct2d(BatchNorm2d):
    """timm.layers.BatchNormAct2d: a BatchNorm2d (same variables, torch keys `weight`, `bias`,
    `running_*`) whose output goes through `act` (timm's `drop` is an Identity here), so a
    torch hook on the module sees the activated output. Any spatial rank, like BatchNorm2d."""

    act: Act = relu

    @nn.compact
    def __call__(self, x, train: bool = False):
        # Not super().__call__: a second wrapped __call__ would sow a second intermediate.
        y = _batch_norm(self, x, train)
        return y if self.act is None else self.act(y)


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
    """torch.nn.AdaptiveAvgPool2d on NHWC input, with torch's window rule at every size
    (AdaptiveAvgPool1d on NLC input)."""
    if x.ndim == 3:
        (o,), (n, length, c) = _ntuple(output_size, 1, "output_size"), x.shape
        if o == 1:
            return jnp.mean(x, axis=1, keepdims=True)
        if length % o == 0:
            return x.reshape(n, o, length // o, c).mean(axis=2)
        return jnp.stack([jnp.mean(x[:, s:e], axis=1) for s, e in _pool_windows(length, o)], axis=1)
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
    """torch.nn.MaxPool2d on NHWC input (MaxPool1d on NLC input), ceil_mode emulated exactly."""
    nd = x.ndim - 2
    ks = _ntuple(kernel_size, nd, "kernel_size")
    ss = _ntuple(stride if stride is not None else kernel_size, nd, "stride")
    ps, ds = _ntuple(padding, nd, "padding"), _ntuple(dilation, nd, "dilation")
    extra = [_pool_geometry(x.shape[1 + i], ks[i], ss[i], ps[i], ds[i], ceil_mode)[1]
             for i in range(nd)]
    init = np.array(-np.inf, x.dtype)  # concrete (numpy) init: differentiable under jit
    return lax.reduce_window(x, init, lax.max, (1, *ks, 1), (1, *ss, 1),
                             ((0, 0), *((p, p + e) for p, e in zip(ps, extra)), (0, 0)),
                             window_dilation=(1, *ds, 1))


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True):
    """torch.nn.AvgPool2d on NHWC input (divisor rules of count_include_pad and ceil_mode);
    AvgPool1d on NLC input."""
    nd = x.ndim - 2
    ks = _ntuple(kernel_size, nd, "kernel_size")
    ss = _ntuple(stride if stride is not None else kernel_size, nd, "stride")
    ps = _ntuple(padding, nd, "padding")
    sizes = x.shape[1:-1]
    extra = [_pool_geometry(sizes[i], ks[i], ss[i], ps[i], 1, ceil_mode)[1] for i in range(nd)]
    pads = ((0, 0), *((p, p + e) for p, e in zip(ps, extra)), (0, 0))
    zero = np.array(0, x.dtype)  # concrete (numpy) init: differentiable under jit
    total = lax.reduce_window(x, zero, lax.add, (1, *ks, 1), (1, *ss, 1), pads)
    # Divisor: window cells inside the input (count_include_pad=False) or inside the
    # symmetrically padded input (True); cells added by ceil_mode never count.
    def counts(size, k, s, p, e):
        lo = -p if count_include_pad else 0
        hi = size + p if count_include_pad else size
        starts = np.arange(0, size + 2 * p + e - k + 1, s) - p
        return np.clip(np.minimum(starts + k, hi) - np.maximum(starts, lo), 1, None)
    div = functools.reduce(np.multiply.outer, [counts(sizes[i], ks[i], ss[i], ps[i], extra[i])
                                              for i in range(nd)])
    return total / jnp.asarray(div[None, ..., None], dtype=x.dtype)


def check_input(x, spatial_dims: int, in_channels: int, model: str) -> None:
    """Raise unless x is (N, *spatial, C) with `spatial_dims` spatial axes and C = in_channels
    (the `spatial_dims` / `in_channels` knobs of the families that take 1-D input)."""
    if spatial_dims not in (1, 2):
        raise ValueError(f"{model}: spatial_dims must be 1 or 2, got {spatial_dims!r}")
    layout = "(N, L, C)" if spatial_dims == 1 else "NHWC (N, H, W, C)"
    if x.ndim != spatial_dims + 2 or x.shape[-1] != in_channels:
        raise ValueError(f"{model} (spatial_dims={spatial_dims}, in_channels={in_channels}) "
                         f"expects {layout} input with C={in_channels}, got shape {tuple(x.shape)}")


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
