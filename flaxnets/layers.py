"""Shared Flax layers with PyTorch semantics, written once for every family.

- `Conv2d`: torch's symmetric explicit padding, groups, dilation; routed through
  `flaxnets.conv_ops.conv2d` so fast paths apply to every model.
- `BatchNorm2d`: torch's momentum/eps meaning and torch's running-variance rule (the
  *unbiased* batch variance goes into `var`); state lives in the `batch_stats` collection,
  including torch's `num_batches_tracked`.
- `ConvBNAct` (torchvision's `Conv2dNormActivation`), `SqueezeExcitation`
  (torchvision.ops.SqueezeExcitation; also timm's SEModule, same keys), `Linear` (torch's
  default init).
- timm's layout: `BatchNormAct2d` (BN + activation in one module), `ConvNormAct`,
  `SeparableConvNormAct`, `ClassifierHead` (timm.layers; submodules conv/bn, conv_dw/conv_pw/bn,
  fc) and its padding rule `timm_padding`.
- Pooling with torch's rules: `adaptive_avg_pool2d`, `max_pool2d` (ceil_mode),
  `avg_pool2d` (count_include_pad, ceil_mode), `spatial_mean` (global average);
  `stochastic_depth`; torch's activations (`gelu` is torch's exact erf form);
  `check_input` (the `spatial_dims` / `in_channels` knobs' input check).
- Transformer pieces: `LayerNorm` (torch's eps per family), `attention` (softmax attention;
  heads-major batched matmuls on the CPU fast paths, `jax.nn.dot_product_attention` for half
  precision elsewhere), `MultiheadAttention` (torch.nn.MultiheadAttention, packed in_proj),
  `MLP` (torchvision.ops.MLP); `lp_einsum`, the CPU's bfloat16/float16 products (float32
  accumulation, gradient products in the same form, as torch autocast).
- `interpolate`: torch's F.interpolate (bilinear / bicubic) in numpy, for weight resizing.

Every layer computes in the dtype of its inputs and parameters unless `dtype` is given
(e.g. `jnp.bfloat16` for mixed precision; BatchNorm statistics then stay in float32).

Spatial rank: convolutions, BatchNorm, `SqueezeExcitation`, `BatchNormAct2d`, the pools and
`spatial_mean` take it from their input: NHWC (2-D, the default everywhere) or NLC (1-D
signals, torch's Conv1d / BatchNorm1d / *Pool1d; a 1-D `Conv2d` kernel is (k, in/groups, out)).
The "2d" in the names is torch's 2-D class each mirrors by default.
"""
from __future__ import annotations

import functools
import itertools
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
from netspecs.common import make_divisible, timm_padding  # noqa: F401  (re-exported: one definition)

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
# Derivatives by comparison with the bounds, never by equality with the result. jnp.maximum and
# jnp.clip differentiate as `x == max(x, 0)`; XLA:CPU may compute x twice (in the forward fusion
# and again inside a backward fusion) with different rounding, the equality then fails, and a
# positive input gets derivative 0 (measured: googlenet conv1's gradients off by up to 2.6x
# once max pooling's gradient fused with its BN; docs/benchmarks.md). torch differentiates
# relu as threshold_backward (grad where x > 0) and clamps as hardtanh_backward (lo < x < hi).
@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def clamp(x, lo: float, hi: float):
    """torch.clamp(x, lo, hi) with hardtanh's gradient: 1 strictly inside (lo, hi), else 0."""
    return jnp.clip(x, lo, hi)


@clamp.defjvp
def _clamp_jvp(lo, hi, primals, tangents):
    (x,), (t,) = primals, tangents
    return clamp(x, lo, hi), jnp.where((x > lo) & (x < hi), t, jnp.zeros_like(t))


@jax.custom_jvp
def relu(x):
    """torch.relu; its gradient is 1 where x > 0, else 0 (0 at x == 0, as torch)."""
    return jnp.maximum(x, 0)


@relu.defjvp
def _relu_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return relu(x), jnp.where(x > 0, t, jnp.zeros_like(t))


def relu6(x):
    return clamp(x, 0, 6)


@jax.custom_vjp
def hardsigmoid(x):
    """torch's hardsigmoid, including its backward: the slope is float32(1/6) in every dtype
    (ATen's `one_sixth(1.0f / 6.0f)`), 3e-8 off 1/6 in float64."""
    return clamp(x + 3, 0, 6) / 6


def _hardsigmoid_fwd(x):
    return hardsigmoid(x), x


def _hardsigmoid_bwd(x, g):
    return (jnp.where((x > -3) & (x < 3), g * float(np.float32(1 / 6)), jnp.zeros_like(g)),)


hardsigmoid.defvjp(_hardsigmoid_fwd, _hardsigmoid_bwd)


def hardswish(x):
    return x * clamp(x + 3, 0, 6) / 6


def silu(x):
    return x * jax.nn.sigmoid(x)


def sigmoid(x):
    return jax.nn.sigmoid(x)


_SQRT1_2 = 0.70710678118654752440   # M_SQRT1_2
_GELU_BETA = 0.39894228040143267794  # M_2_SQRTPI * M_SQRT1_2 * 0.5 = 1 / sqrt(2 pi)


def lane_constants(x, *values, lanes: bool | None = None):
    """`values` in x's dtype for elementwise use with x: scalars, or with ``lanes`` (default: on the
    CPU fast paths) vectors along x's last axis that come out of an optimization barrier (the same
    arithmetic either way).

    XLA:CPU 0.10's YNNPACK fusions (a Linear's matmul fused with the elementwise ops around it) take
    a scalar constant's broadcast as a full-size operand, which XLA then materialises once per
    shape and step and shares between every block: convnext_tiny's inference wrote 12 such GELU
    tensors, up to 154 MB each (265 ms for one in the profile). A vector that XLA cannot constant-
    fold is broadcast inside the fusion, like a bias (docs/benchmarks.md, "Scalar constants in
    YNNPACK fusions")."""
    if lanes is None:
        lanes = conv_ops.fast_paths()
    if x.ndim == 0 or not lanes:
        return tuple(jnp.asarray(v, x.dtype) for v in values)
    c = x.shape[-1]
    return lax.optimization_barrier(tuple(jnp.full((c,), v, x.dtype) for v in values))


def _gelu_rule(lanes: bool):
    """gelu with its constants as `lane_constants(..., lanes=lanes)`; one function per form, so
    jax's per-function trace cache never hands one form's trace to the other."""

    @jax.custom_jvp
    def f(x):
        half, one, sqrt1_2 = lane_constants(x, 0.5, 1, _SQRT1_2, lanes=lanes)
        return x * half * (one + lax.erf(x * sqrt1_2))  # 1 + erf(x / sqrt 2): twice the normal CDF

    @f.defjvp
    def _jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        half, one, sqrt1_2, m_half, beta = lane_constants(x, 0.5, 1, _SQRT1_2, -0.5, _GELU_BETA, lanes=lanes)
        e = one + lax.erf(x * sqrt1_2)
        pdf = jnp.exp(m_half * x * x) * beta
        return x * half * e, t * (half * e + x * pdf)

    return f


_GELU = {lanes: _gelu_rule(lanes) for lanes in (False, True)}


def on_rows(fn, x):
    """`fn(x)` for a `fn` that treats each position along x's leading axes alike and maps the last
    axis (elementwise ops, a Linear's product, LayerNorm): on the CPU fast paths computed on x
    viewed as a (rows, C) matrix and reshaped back (a bitcast in row-major layout; same products
    and sums per row). XLA:CPU 0.10 runs the rank-2 form of these fusions faster than the rank-3
    and rank-4 ones the transformer families and ConvNeXt hand it: LayerNorm's forward and VJP at
    Swin's first stage, (32, 56, 56, 96), 115 -> 72 ms standalone; with Linear and GELU too, swin_t's
    train step -24% and convnext_tiny's -11% (docs/benchmarks.md, "Rank-2 rows on CPU")."""
    if x.ndim <= 2 or not conv_ops.fast_paths():
        return fn(x)
    y = fn(x.reshape(math.prod(x.shape[:-1]), x.shape[-1]))  # explicit rows: a zero-width C is valid
    return y.reshape(x.shape[:-1] + y.shape[-1:])


def gelu(x):
    """torch.nn.GELU() (the exact erf form; jax.nn.gelu defaults to the tanh approximation), written as
    torch's CPU kernel: 0.5 * x * (1 + erf(x / sqrt 2)); derivative (a custom JVP) as torch's
    gelu_backward, cdf + x * pdf. The rule matters for speed: differentiating jax.nn.gelu's erfc form
    left XLA:CPU several fusions that each recomputed erfc (convnext_tiny's GELUs took 20% of its
    train step). Constants as `lane_constants`, and `on_rows`, on the CPU fast paths."""
    return on_rows(_GELU[conv_ops.fast_paths()], x)


def leaky_relu(x, negative_slope: float = 0.01):
    """torch.nn.LeakyReLU(negative_slope) (default 0.01, timm's 'leaky_relu'), with torch's
    gradient at 0 (negative_slope; jax.nn.leaky_relu's is 1)."""
    return jnp.where(x > 0, x, x * negative_slope)


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
        _check_window(x.shape[1:-1], ks, pad, dil, f"{'/'.join(self.path) or 'Conv2d'}: convolution")
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


class Op(nn.Module):
    """A parameterless torch module (`nn.ReLU`, `nn.MaxPool2d`, ...) as a named Flax module:
    `Op(fn, name="3")(x) = fn(x)`, so its output sits at torch's module path (backbone
    features, layer-by-layer parity). No variables."""

    fn: Callable[[Any], Any]

    def __call__(self, x):
        return self.fn(x)


@functools.cache
def _lp_einsum_rule(spec: str):
    """`jnp.einsum(spec, a, b)` for bfloat16/float16 operands with float32 accumulation, and a VJP
    whose two products are low-precision ones too: the cotangent rounded once to the operands'
    dtype, each gradient product accumulated in float32 and rounded once. Autodiff of the
    float32-accumulating product instead pairs the float32 cotangent with a bfloat16 operand,
    which XLA:CPU runs as a float32 GEMM (the bfloat16 operand converted first): 2 of a train
    step's 3 products ran at float32 speed. torch autocast's backward is bf16 products with
    float32 accumulation (oneDNN), as here. Every index of each operand must appear in the other
    operand or in the output (matmuls and attention's batched products)."""
    ins, out = spec.replace(" ", "").split("->")
    sa, sb = ins.split(",")
    if set(sa) - set(sb + out) or set(sb) - set(sa + out):
        raise ValueError(f"lp_einsum {spec!r}: an index summed within one operand has no gradient product")

    def dot(s, x, y, dtype):
        return jnp.einsum(s, x, y, preferred_element_type=jnp.float32).astype(dtype)

    @functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
    def f(a, b, out_dtype):
        return dot(spec, a, b, out_dtype)

    def fwd(a, b, out_dtype):
        return f(a, b, out_dtype), (a, b)

    def bwd(out_dtype, res, g):
        a, b = res
        g = g.astype(a.dtype)
        return dot(f"{out},{sb}->{sa}", g, b, a.dtype), dot(f"{sa},{out}->{sb}", a, g, b.dtype)

    f.defvjp(fwd, bwd)
    return f


def lp_einsum(spec: str, a, b, out_dtype=None):
    """`jnp.einsum(spec, a, b)` of bfloat16/float16 operands, accumulated in float32 and rounded
    to `out_dtype` (default the operands' dtype; attention keeps its logits float32), with
    low-precision gradient products (`_lp_einsum_rule`; `_LP_VJP` off: autodiff's)."""
    out_dtype = a.dtype if out_dtype is None else out_dtype
    if not _LP_VJP:
        return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32).astype(out_dtype)
    return _lp_einsum_rule(spec)(a, b, jnp.dtype(out_dtype))  # one rule per spec (jax caches traces per function)


_LP_VJP = True  # A/B switch for benchmarks/ab.py (docs/benchmarks.md); True is the tested path


def matmul(x, w):
    """x @ w (last axis of x with the first of w) for Linear layers. On the CPU fast paths,
    bfloat16/float16 products accumulate to a float32 result that is then rounded once: XLA:CPU
    0.10 runs that form 2.3x faster than a bfloat16-output dot (ViT's MLP matmul, 6304x768 @
    768x3072 on an AMX machine: 59 vs 138 ms), and it is torch autocast's own rounding (oneDNN
    accumulates in float32 and rounds the output); its gradient products are of the same form
    (`lp_einsum`). float32/float64 are untouched. Callers pass it through `on_rows` together
    with their bias add."""
    if conv_ops.low_precision(x.dtype) and conv_ops.fast_paths():
        if x.ndim == 2 and w.ndim == 2:
            return lp_einsum("rc,cd->rd", x, w)
        return jnp.dot(x, w, preferred_element_type=jnp.float32).astype(x.dtype)
    return jnp.dot(x, w)


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
        # The product and the bias add on one rank-2 view.
        return on_rows(lambda r: matmul(r, kernel) if bias is None else matmul(r, kernel) + bias, x)


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
    act: Act = None  # applied to the output (BatchNormAct2d below)

    @nn.compact
    def __call__(self, x, train: bool = False):
        return _batch_norm(self, x, train)


def _batch_norm(m: BatchNorm2d, x, train: bool):
    """BatchNorm2d's computation with `m`'s fields, variables created in `m`'s scope."""
    c = x.shape[-1]
    scale = m.param("scale", m.scale_init, (c,), m.param_dtype)
    bias = m.param("bias", m.bias_init, (c,), m.param_dtype)
    ra_mean = m.variable("batch_stats", "mean", lambda: jnp.zeros((c,), m.param_dtype))
    ra_var = m.variable("batch_stats", "var", lambda: jnp.ones((c,), m.param_dtype))
    count = m.variable("batch_stats", "num_batches_tracked", lambda: jnp.zeros((), jnp.int32))
    out_dtype = m.dtype or jnp.result_type(x.dtype, scale.dtype)
    # Statistics in at least float32 (float64 stays float64).
    stat_dtype = jnp.promote_types(jnp.result_type(x.dtype, scale.dtype), jnp.float32)
    if train:
        # The closed-form VJP where the fast paths apply (CPU by default; measured there).
        bn = _bn_train if conv_ops.fast_paths() else _bn_batch
        y, mean, var = bn(x, scale, bias, m.eps, stat_dtype)
        if not m.is_initializing():
            n = x.size // c
            mom = m.momentum
            unbiased = var * (n / max(n - 1, 1))
            ra_mean.value = ((1 - mom) * ra_mean.value + mom * mean).astype(ra_mean.value.dtype)
            ra_var.value = ((1 - mom) * ra_var.value + mom * unbiased).astype(ra_var.value.dtype)
            count.value = count.value + 1
    else:
        y = _bn_normalize(x.astype(stat_dtype), ra_mean.value.astype(stat_dtype),
                          ra_var.value.astype(stat_dtype), scale, bias, m.eps)
    return y.astype(out_dtype)


class LayerNorm(nn.Module):
    """torch.nn.LayerNorm over the last axis (`scale` <-> weight, `bias`). `eps` is per family:
    torch's default 1e-5 (torchvision's Swin, `partial(nn.LayerNorm, eps=1e-5)`, and MaxViT
    too), 1e-6 for ViT and ConvNeXt. Statistics in at least float32; computed `on_rows`."""

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

        def norm(x):
            xs = x.astype(stat_dtype)
            mean = jnp.mean(xs, -1, keepdims=True)
            xc = xs - mean
            var = jnp.mean(jnp.square(xc), -1, keepdims=True)  # biased, as torch
            y = xc * lax.rsqrt(var + self.eps) * scale.astype(stat_dtype)
            if bias is not None:
                y = y + bias.astype(stat_dtype)
            return y.astype(out_dtype)

        return on_rows(norm, x)


def attention(q, k, v, bias=None, scale: float | None = None, dropout_rate: float = 0.0,
              dropout_rng=None):
    """Softmax attention, q/k/v (batch, length, heads, head_dim) -> same layout as q.

    `scale` multiplies q·k (default 1/sqrt(head_dim), torch's MultiheadAttention); `bias` is
    added to the logits before the softmax (relative position bias, attention masks), shape
    broadcastable to (batch, heads, q_len, k_len). Half-precision inputs go through
    `jax.nn.dot_product_attention` (a fused kernel on GPU); float32 and float64 are computed
    in their own dtype, since that function always takes the softmax in float32 (1e-7 off
    torch in float64). With `dropout_rate` > 0 and a `dropout_rng`, the attention weights go
    through dropout after the softmax (torch's scaled_dot_product_attention(dropout_p=...)).
    """
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    drop = dropout_rate > 0.0 and dropout_rng is not None
    low = conv_ops.low_precision(q.dtype)
    cpu = low and conv_ops.fast_paths()
    if low and not drop and not cpu:
        return jax.nn.dot_product_attention(q, k, v, bias=None if bias is None else bias.astype(q.dtype),
                                            scale=scale)
    # CPU, bfloat16/float16: both products accumulate in float32 (see `matmul`), the softmax
    # runs in float32 on the float32 logits, the weights are rounded once for the second product;
    # the gradient products are low-precision ones too (`lp_einsum`: the logits' float32
    # cotangent rounded once, as torch autocast's bf16 logits give a bf16 gradient).
    acc = jnp.float32 if cpu else None
    # On the CPU fast paths q, k, v are first copied heads-major, (batch, heads, length, dim), so
    # both products are plain batched matmuls over (batch, heads). Given (batch, length, heads,
    # dim) operands XLA:CPU 0.10 runs the products at ~20 GFLOP/s (the layout is the cause: an
    # optimization barrier between the softmax and the second product changes nothing): ViT-B/16's
    # attention (batch 32, 197 tokens, 12 heads of 64) 174.7 ms forward vs 66.7 ms heads-major
    # (docs/benchmarks.md, "Attention heads-major on CPU"). Same products and sums; only the
    # operands' layout differs.
    heads_major = conv_ops.fast_paths()
    if heads_major:
        q, k, v = (jnp.swapaxes(t, 1, 2) for t in (q, k, v))
    spec = "bhqd,bhkd->bhqk" if heads_major else "bqhd,bkhd->bhqk"
    if cpu:  # float32 logits; both products' gradients as low-precision products too
        logits = lp_einsum(spec, q * jnp.asarray(scale, q.dtype), k, jnp.float32)
    else:
        logits = jnp.einsum(spec, q * jnp.asarray(scale, q.dtype), k, preferred_element_type=acc)
    if bias is not None:
        logits = logits + bias.astype(logits.dtype)
    weights = jax.nn.softmax(logits, axis=-1).astype(q.dtype)
    if drop:
        keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, weights.shape)
        weights = jnp.where(keep, weights / jnp.asarray(1.0 - dropout_rate, weights.dtype), 0)
    if heads_major:
        out = (lp_einsum("bhqk,bhkd->bhqd", weights, v) if cpu
               else jnp.einsum("bhqk,bhkd->bhqd", weights, v, preferred_element_type=acc))
        return jnp.swapaxes(out, 1, 2).astype(q.dtype)
    if cpu:
        return lp_einsum("bhqk,bkhd->bqhd", weights, v)
    return jnp.einsum("bhqk,bkhd->bqhd", weights, v, preferred_element_type=acc).astype(q.dtype)


class MultiheadAttention(nn.Module):
    """torch.nn.MultiheadAttention(embed_dim, num_heads, dropout, batch_first=True) as
    self-attention (query = key = value), returning only the output (need_weights=False).

    Parameters in torch's own layout and names (carried as is by the converter):
    `in_proj_weight` (3 * embed_dim, embed_dim), packed q, k, v rows; `in_proj_bias`
    (3 * embed_dim,); the `out_proj` Linear submodule. Attention dropout (`dropout`, on the
    softmax weights) uses the "dropout" RNG stream in train mode.
    """

    num_heads: int
    dropout: float = 0.0
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        b, length, d = x.shape
        if d % self.num_heads:
            raise ValueError(f"{self.name}: embed_dim {d} not divisible by num_heads {self.num_heads}")
        w = self.param("in_proj_weight", nn.initializers.xavier_uniform(), (3 * d, d), self.param_dtype)
        bias = self.param("in_proj_bias", nn.initializers.zeros, (3 * d,), self.param_dtype)
        x, w, bias = promote_dtype(x, w, bias, dtype=self.dtype)
        qkv = on_rows(lambda r: matmul(r, w.T) + bias, x).reshape(b, length, 3, self.num_heads, d // self.num_heads)
        rng = self.make_rng("dropout") if train and self.dropout > 0.0 else None
        y = attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], dropout_rate=self.dropout,
                      dropout_rng=rng)
        return Linear(d, dtype=self.dtype, param_dtype=self.param_dtype,
                      bias_init=nn.initializers.zeros, name="out_proj")(y.reshape(b, length, d))


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
    kernel_init: Callable = torch_default_init  # timm's models: kaiming_fan_out

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        s = spatial_mean(x, keepdims=True)
        s = Conv2d(self.squeeze_channels, 1, use_bias=True, dtype=self.dtype,
                   param_dtype=self.param_dtype, kernel_init=self.kernel_init, name="fc1")(s)
        s = self.act(s)
        s = Conv2d(c, 1, use_bias=True, dtype=self.dtype, param_dtype=self.param_dtype,
                   kernel_init=self.kernel_init, name="fc2")(s)
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


class ConvNormAct(nn.Module):
    """timm.layers.ConvNormAct with BatchNormAct2d: submodules `conv` (no bias) and `bn`
    (BatchNorm + activation). `padding=None` is timm's `padding=''` rule (`timm_padding`)."""

    features: int
    kernel_size: int = 1
    stride: int = 1
    padding: int | None = None
    dilation: int = 1
    groups: int = 1
    apply_act: bool = True
    act: Act = relu
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1
    bn_scale_init: Callable = nn.initializers.ones
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        pad = (timm_padding(self.kernel_size, self.stride, self.dilation)
               if self.padding is None else self.padding)
        x = Conv2d(self.features, self.kernel_size, self.stride, pad, self.dilation, self.groups,
                   dtype=self.dtype, param_dtype=self.param_dtype, name="conv")(x)
        return BatchNormAct2d(self.bn_momentum, self.bn_eps, dtype=self.dtype,
                              param_dtype=self.param_dtype, scale_init=self.bn_scale_init,
                              act=self.act if self.apply_act else None, name="bn")(x, train)


class MLP(nn.Module):
    """torchvision.ops.MLP without norm layers: per hidden width Linear, activation, Dropout,
    then the last Linear and Dropout; submodules named by their Sequential index (Linears at
    "0", "3", ...: ViT's MLPBlock keys mlp.0 / mlp.3)."""

    hidden_channels: Sequence[int]
    act: Callable = relu
    dropout: float = 0.0
    use_bias: bool = True
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    kernel_init: Callable = torch_default_init
    bias_init: Callable | None = None  # None: torch's default

    @nn.compact
    def __call__(self, x, train: bool = False):
        i = 0
        for n, width in enumerate(self.hidden_channels):
            x = Linear(width, self.use_bias, dtype=self.dtype, param_dtype=self.param_dtype,
                       kernel_init=self.kernel_init, bias_init=self.bias_init, name=str(i))(x)
            i += 1
            if n < len(self.hidden_channels) - 1:
                x = self.act(x)
                i += 1
            x = nn.Dropout(self.dropout, name=str(i))(x, deterministic=not train)
            i += 1
        return x


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


def _check_window(sizes, ks, pads, dils, what: str) -> None:
    """Raise where a convolution's window is larger than its padded input, as torch does ("Kernel
    size can't be greater than actual input size"): lax.conv returns an empty axis there, which a
    mean later turns into NaN without a word."""
    for n, k, p, d in zip(sizes, ks, pads, dils):
        if n + 2 * p < d * (k - 1) + 1:
            raise ValueError(
                f"{what}: input size {tuple(sizes)} with padding {tuple(pads)} is smaller than the "
                f"kernel {tuple(ks)} (dilation {tuple(dils)}); torch raises here too: the model needs "
                "a larger input")


def _pool_geometry(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> tuple[int, int]:
    """torch's pooling output size and the extra right padding that realises it."""
    eff = d * (k - 1) + 1
    num = size + 2 * p - eff
    out = (-(-num // s) if ceil_mode else num // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    extra = max((out - 1) * s + eff - (size + 2 * p), 0)
    return out, extra


def _pool_extras(what: str, sizes, ks, ss, ps, ds, ceil_mode: bool) -> list[int]:
    """Per spatial axis the extra right padding of `_pool_geometry`; raises where torch's output
    size would be < 1 ("Output size is too small"; a ceil-mode window may overhang the input)."""
    geo = [_pool_geometry(n, k, s, p, d, ceil_mode) for n, k, s, p, d in zip(sizes, ks, ss, ps, ds)]
    if any(out < 1 for out, _ in geo):
        raise ValueError(f"{what}: input size {tuple(sizes)} gives output size "
                         f"{tuple(out for out, _ in geo)} (kernel {tuple(ks)}, stride {tuple(ss)}, "
                         f"padding {tuple(ps)}, ceil_mode={ceil_mode}); torch raises here too: "
                         "the model needs a larger input")
    return [e for _, e in geo]


# The taps form unrolls one compare/select per tap: cheap for the 2x2/3x3 pools every model
# uses; a 12x12 window (144 taps) took 34 s to compile, so larger windows keep reduce_window.
MAX_POOL_TAPS = 25


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False):
    """torch.nn.MaxPool2d on NHWC input (MaxPool1d on NLC input), ceil_mode emulated exactly.

    On the CPU fast paths (`conv_ops.fast_paths()`), for windows of up to MAX_POOL_TAPS taps,
    the gradient follows torch's first-maximum rule through strided slices (`_max_pool_taps`),
    one axis at a time for windows that span two axes (`_max_pool_separable`); elsewhere jax
    differentiates `reduce_window`.
    """
    nd = x.ndim - 2
    ks = _ntuple(kernel_size, nd, "kernel_size")
    ss = _ntuple(stride if stride is not None else kernel_size, nd, "stride")
    ps, ds = _ntuple(padding, nd, "padding"), _ntuple(dilation, nd, "dilation")
    extra = _pool_extras("max_pool2d", x.shape[1:-1], ks, ss, ps, ds, ceil_mode)
    pads = tuple((p, p + e) for p, e in zip(ps, extra))
    if conv_ops.fast_paths() and math.prod(ks) <= MAX_POOL_TAPS:
        if _SEPARABLE and sum(k > 1 for k in ks) > 1:
            return _max_pool_separable(x, ks, ss, pads, ds)
        return _max_pool_taps(x, ks, ss, pads, ds)
    return _max_pool_plain(x, ks, ss, pads, ds)


_SEPARABLE = True  # A/B switch for benchmarks (docs/benchmarks.md); True is the tested path


def _axis_pools(x, ks, ss, pads, ds):
    """`_max_pool_taps` one spatial axis at a time, the last axis first: each row's window
    maximum (its first maximal column), then the maximum of those rows (the first maximal row).
    The pair (first row holding the window's maximum, first column holding it in that row) is
    the row-major first maximum torch routes the gradient to, NaN included (torch takes the last
    NaN: the last row with a NaN, its last NaN)."""
    nd = len(ks)
    for ax in reversed(range(nd)):
        if ks[ax] == 1 and ss[ax] == 1 and pads[ax] == (0, 0):
            continue
        only = lambda v, fill: tuple(v if j == ax else fill for j in range(nd))  # noqa: E731
        x = _max_pool_taps(x, only(ks[ax], 1), only(ss[ax], 1), only(pads[ax], (0, 0)), only(ds[ax], 1))
    return x


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3, 4))
def _max_pool_separable(x, ks, ss, pads, ds):
    """Max pooling (one `reduce_window`) whose derivative is `_axis_pools`': a k x k window's
    gradient as two k-tap routings (squeezenet1_1's fp32 train step 1203 -> 913 ms against
    `_max_pool_taps` on the whole window; docs/benchmarks.md)."""
    return _max_pool_plain(x, ks, ss, pads, ds)


@_max_pool_separable.defjvp
def _max_pool_separable_jvp(ks, ss, pads, ds, primals, tangents):
    return jax.jvp(lambda v: _axis_pools(v, ks, ss, pads, ds), primals, tangents)


def _max_pool_plain(x, ks, ss, pads, ds):
    init = np.array(-np.inf, x.dtype)  # concrete (numpy) init: differentiable under jit
    return lax.reduce_window(x, init, lax.max, (1, *ks, 1), (1, *ss, 1),
                             ((0, 0), *pads, (0, 0)), window_dilation=(1, *ds, 1))


def _tap(xp, offset, out_shape, strides):
    """The window tap at `offset` of every output position: a strided slice of the padded x."""
    limit = [o + (n - 1) * s + 1 for o, n, s in zip(offset, out_shape[1:-1], strides)]
    return lax.slice(xp, (0, *offset, 0), (xp.shape[0], *limit, xp.shape[-1]), (1, *strides, 1))


def _max_and_first_tap(x, ks, ss, pads, ds):
    """Each window's maximum and the index (int8, row-major over the window) of the tap that
    holds it first, as torch's CPU kernel picks it (`val > max || isnan(val)`). One running
    chain of compares: the index never depends on an equality with a separately computed max."""
    xp = _pad_spatial(x, -np.inf, pads)
    offsets = list(itertools.product(*[[i * d for i in range(k)] for k, d in zip(ks, ds)]))
    out_shape = jax.eval_shape(lambda v: _max_pool_plain(v, ks, ss, pads, ds), x).shape
    y = _tap(xp, offsets[0], out_shape, ss)
    idx = jnp.zeros(out_shape, jnp.int8)  # len(offsets) <= MAX_POOL_TAPS < 128
    for i, off in enumerate(offsets[1:], 1):
        xs = _tap(xp, off, out_shape, ss)
        take = (xs > y) | jnp.isnan(xs)
        y, idx = jnp.where(take, xs, y), jnp.where(take, jnp.int8(i), idx)
    return y, idx, offsets


def _pad_spatial(x, value, pads):
    """x padded with `value` by (low, high) per spatial axis."""
    return lax.pad(x, np.array(value, x.dtype), ((0, 0, 0), *((a, b, 0) for a, b in pads), (0, 0, 0)))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3, 4))
def _max_pool_taps(x, ks, ss, pads, ds):
    """Max pooling whose derivative routes each window's tangent from its first maximal tap.

    XLA differentiates `reduce_window` max into `select_and_scatter`, a serial loop on XLA:CPU
    (googlenet's train step 0.74x torch). Here the tangent is a sum of strided slices masked by
    the tap index, so its transpose is padded shifts that XLA fuses (docs/benchmarks.md)."""
    return _max_pool_plain(x, ks, ss, pads, ds)


@_max_pool_taps.defjvp
def _max_pool_taps_jvp(ks, ss, pads, ds, primals, tangents):
    (x,), (t,) = primals, tangents
    y, idx, offsets = _max_and_first_tap(x, ks, ss, pads, ds)
    tp = _pad_spatial(t, 0, pads)
    dy = jnp.zeros(y.shape, t.dtype)
    for i, off in enumerate(offsets):
        dy = dy + jnp.where(idx == i, _tap(tp, off, y.shape, ss), jnp.zeros((), t.dtype))
    return y, dy


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True):
    """torch.nn.AvgPool2d on NHWC input (divisor rules of count_include_pad and ceil_mode);
    AvgPool1d on NLC input."""
    nd = x.ndim - 2
    ks = _ntuple(kernel_size, nd, "kernel_size")
    ss = _ntuple(stride if stride is not None else kernel_size, nd, "stride")
    ps = _ntuple(padding, nd, "padding")
    sizes = x.shape[1:-1]
    extra = _pool_extras("avg_pool2d", sizes, ks, ss, ps, (1,) * nd, ceil_mode)
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


def _fma(a, b, c):
    """a * b + c rounded once, as torch's CPU kernels compute it (compiled with FMA
    contraction). float32 through float64 (exact product); float64 through Dekker's exact
    product and a compensated sum (correctly rounded unless the result is a near tie)."""
    a, b, c = np.asarray(a), np.asarray(b), np.asarray(c)
    if a.dtype == np.float32:
        return (a.astype(np.float64) * b.astype(np.float64) + c.astype(np.float64)).astype(np.float32)
    p = a * b

    def split(v):
        s = 134217729.0 * v  # 2**27 + 1
        hi = s - (s - v)
        return hi, v - hi
    (ah, al), (bh, bl) = split(a), split(b)
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl  # p + e == a * b exactly
    s = p + c
    bb = s - p
    return s + (((p - (s - bb)) + (c - bb)) + e)


def _interp_taps(n_in: int, n_out: int, mode: str, align_corners: bool, dtype):
    """Per output index: the input indices (clamped to the border) and weights torch's upsample
    kernels use (ATen's area_pixel_compute_source_index, cubic A = -0.75). The operation
    order, and where FMA contraction applies, reproduce torch 2.x's CPU kernel."""
    f = np.dtype(dtype).type
    d = np.arange(n_out).astype(dtype)
    if align_corners:
        scale = f(f(n_in - 1) / f(n_out - 1)) if n_out > 1 else f(0)
        src = scale * d
    else:
        src = _fma(f(f(n_in) / f(n_out)), d + f(0.5), f(-0.5))
        if mode == "bilinear":
            src = np.maximum(src, f(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    t = np.minimum(np.maximum(src - i0.astype(dtype), f(0)), f(1)).astype(dtype)
    one = f(1)
    if mode == "bilinear":
        return np.stack([i0, np.minimum(i0 + 1, n_in - 1)], -1), np.stack([one - t, t], -1)
    a = f(-0.75)

    def near(x):  # |x| <= 1: ((A + 2) x - (A + 3)) x x + 1
        return _fma(a + f(2), x, -(a + f(3))) * x * x + one

    def far(x):  # 1 < |x| < 2: ((A x - 5A) x + 8A) x - 4A
        return _fma(_fma(a, x, -f(5) * a), x, f(8) * a) * x - f(4) * a

    w = np.stack([far(t + one), near(t), near(one - t), far((one - t) + one)], -1).astype(dtype)
    return np.clip(i0[:, None] + np.arange(-1, 3), 0, n_in - 1), w


def interpolate(x, size: int | Sequence[int], mode: str = "bilinear", align_corners: bool = False):
    """torch.nn.functional.interpolate(x, size, mode, align_corners) for mode "bilinear" or
    "bicubic" (antialias=False) over the LAST TWO axes (torch's (N, C, H, W) layout), in numpy.

    A weight-space helper (e.g. resizing ViT position embeddings), not a traced layer.
    "bicubic" is torch's CPU kernel (ATen's index and cubic-coefficient arithmetic, A = -0.75,
    with the FMA contractions of its x86 build, and its tap order): measured against torch 2.13
    (AVX512 kernels), float32 bit for bit, float64 bit for bit with align_corners=False and
    <= 2e-15 relative with True. "bilinear" has torch's exact tap weights but rounds the sum
    differently (<= 1.6e-7 relative in float32, <= 3.3e-15 in float64).
    `jax.image.resize`'s cubic is Keys a = -0.5 without align_corners: it does not match torch."""
    if mode not in ("bilinear", "bicubic"):
        raise ValueError(f"interpolate: mode must be 'bilinear' or 'bicubic', got {mode!r}")
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"interpolate: float32 or float64 input expected, got {x.dtype}")
    oh, ow = _pair(size)
    ih, wh = _interp_taps(x.shape[-2], oh, mode, align_corners, x.dtype)
    iw, ww = _interp_taps(x.shape[-1], ow, mode, align_corners, x.dtype)
    def weighted_sum(terms, weights):
        # torch's unrolled tap loop, compiled with FMA contraction: t0*w0 + t1*w1 fuses the
        # first product, every later tap is fma(t, w, acc).
        acc = _fma(terms[0], weights[0], terms[1] * weights[1])
        for t, w in zip(terms[2:], weights[2:]):
            acc = _fma(t, w, acc)
        return acc

    inner = []
    for j in range(ih.shape[1]):  # height taps outermost, width taps inside
        rows = x[..., ih[:, j], :]
        inner.append(weighted_sum([rows[..., iw[:, k]] for k in range(iw.shape[1])],
                                  [ww[:, k] for k in range(iw.shape[1])]))
    return weighted_sum(inner, [wh[:, j][:, None] for j in range(ih.shape[1])])


class SeparableConvNormAct(nn.Module):
    """timm.layers.SeparableConvNormAct: depthwise "conv_dw" (channel_multiplier 1) ->
    pointwise "conv_pw" (both without bias) -> BatchNormAct2d "bn"."""

    features: int
    kernel_size: int = 3
    stride: int = 1
    dilation: int = 1
    act: Act = relu
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    kernel_init: Callable = kaiming_fan_out

    @nn.compact
    def __call__(self, x, train: bool = False):
        c = x.shape[-1]
        x = Conv2d(c, self.kernel_size, self.stride,
                   timm_padding(self.kernel_size, self.stride, self.dilation), self.dilation, c,
                   dtype=self.dtype, param_dtype=self.param_dtype, kernel_init=self.kernel_init,
                   name="conv_dw")(x)
        x = Conv2d(self.features, 1, padding=0, dtype=self.dtype, param_dtype=self.param_dtype,
                   kernel_init=self.kernel_init, name="conv_pw")(x)
        return BatchNormAct2d(self.bn_momentum, self.bn_eps, dtype=self.dtype,
                              param_dtype=self.param_dtype, act=self.act, name="bn")(x, train)


class ClassifierHead(nn.Module):
    """timm.layers.ClassifierHead(pool_type="avg"): global average pool over every spatial
    axis, Dropout(drop_rate), Linear "fc" (none when num_classes == 0: pooled features out)."""

    num_classes: int
    drop_rate: float = 0.0
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    fc_bias_init: Callable | None = None  # None: torch's default
    fc_kernel_init: Callable = torch_default_init

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))
        x = nn.Dropout(self.drop_rate, name="drop")(x, deterministic=not train)
        if self.num_classes <= 0:
            return x
        return Linear(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype,
                      kernel_init=self.fc_kernel_init, bias_init=self.fc_bias_init, name="fc")(x)
