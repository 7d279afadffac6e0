"""The one convolution every flaxnets model goes through, with per-shape fast paths.

`conv2d` is 2-D (NHWC x HWIO) or 1-D (NLC x LIO, i.e. (N, L, C) input and a (k, I/g, O)
kernel), the rank taken from the input. A 1-D convolution runs as the 2-D one over a unit
height axis (a 1 x k kernel), so it goes through the same paths below, forward and gradients.

`conv2d` computes what `lax.conv_general_dilated` computes (NHWC input, HWIO kernel, explicit
per-side padding, torch's `groups`), forward and gradients. XLA:CPU (jaxlib 0.10) is slow at
grouped and depthwise convolutions: `feature_group_count` convolutions take a slow path, and
their kernel gradient becomes a dense C x C convolution plus a mask. So on CPU:

- grouped (1 < groups, several input channels per group): a `lax.fori_loop` over groups of
  one dense convolution on the group's channels, sliced in place (`dynamic_slice`, results
  written with `dynamic_update_slice`; a `lax.map` over a (groups, ...) transposed copy was
  3-6% slower on regnet_x_400mf's train step, 15% on resnext50_32x4d's), with a custom VJP
  whose input and kernel gradients are such loops of dense convolutions written in the
  layouts XLA's Eigen convolution takes without transposes (the kernel gradient as a
  convolution with the input channels as batch, from one transposed copy of x). One loop
  body instead of one convolution per group keeps compile time flat in the group count (one
  convolution per group, unrolled, made regnet_x_400mf's train step 4-19% faster than the
  `lax.map` but doubled its compile time and took the RegNet/ResNeXt tests from 294 to
  749 s). Groups narrower than
  `MIN_GROUP_WIDTH` channels are merged into block-diagonal super-groups, and a grouped conv
  no wider than `DENSE_MAX_WIDTH` channels runs as one dense conv on a block-diagonal kernel
  (regnet_x_400mf's first stage, 2 groups of 16: Eigen's 32-channel convolution is ~3x as
  fast per FLOP as its 16-channel one, so twice the FLOPs cost less; train step +5-8%).
- depthwise (one input channel per group, any channel multiplier): k*k shifted, strided
  slices times a per-channel weight, summed in one fused loop; custom VJP: the input gradient
  is the same kind of loop over the stride-dilated gradient, the kernel gradient sums batch
  rows inside the fused loop before reducing. Kernels of 49 or more taps (ConvNeXt's 7x7) run
  the forward and input gradient over chunks of up to 8 images in a `lax.fori_loop`
  (`DW_LOOP_MIN_TAPS`), which keeps XLA from fusing their producers into the tap loop, and the
  kernel gradient per image with one reduction per tap.

- strided input gradients (dense and grouped): one stride-1 convolution per phase of the
  input (rows and columns p = q * s + r), with the kernel taps that reach that phase,
  interleaved; XLA's lhs-dilated convolution multiplies mostly zeros (resnet50 train step
  +16-19%, regnet_x_400mf +3%).
- dense (groups == 1, also merged super-groups): XLA's forward convolution with a custom VJP.
  XLA computes a kernel gradient as a convolution over the transposed input and fuses the
  input's elementwise producers (BatchNorm, residual adds) into that transposing copy, which
  then dominated resnet50's train step; a 1x1 kernel gradient is instead one matmul that
  contracts the (batch, space) rows in place, and a strided 1x1 input gradient a 1x1
  convolution spread out by interior padding (no lhs-dilated convolution over zeros).

- bfloat16/float16 dense convolutions (`_taps_plan`): 1x1 convolutions, and kxk ones at least
  `TAPS_MIN_CHANNELS` wide, as float32-accumulated matmuls (one per kernel tap, rounded once),
  forward and gradients: XLA:CPU's own low-precision convolutions reach neither AMX nor
  AVX512-BF16, its float32-accumulated bfloat16 matmuls do (resnet50 bf16 train step -18%,
  inference -44%). float32 and float64 never take this path.
- bfloat16/float16 grouped convolutions (not merged into one dense conv): the group loop in
  float32 on upcast operands, rounded once (XLA:CPU's low-precision per-group convolutions ran
  1.4-7x slower than float32; regnet_x_400mf bf16 train step -29%, inference -37%).

Sub-float32 inputs are accumulated in float32 on the depthwise path. Measured GFLOP/s and the
profile: docs/benchmarks.md (`python -m benchmarks.bench --convs`).

The implementation is ``auto`` (the default: the fast paths on CPU, XLA's own convolutions
elsewhere), ``plain`` (always `lax.conv_general_dilated`) or ``fast`` (the fast paths on every
backend); one mechanism selects it: ``with conv_ops.use_impl("plain"):`` for everything traced
inside the block (this thread), or `conv2d(..., impl=...)` for one call. The same switch
selects `flaxnets.layers.BatchNorm2d`'s train-mode VJP and `flaxnets.layers.attention`'s
heads-major layout (`fast_paths()`).
"""
from __future__ import annotations

import contextlib
import functools
import threading

import jax
import jax.numpy as jnp
from jax import lax

IMPLS = ("auto", "plain", "fast")
_DIMS = ("NHWC", "HWIO", "NHWC")
MIN_GROUP_WIDTH = 16  # narrower groups are merged into block-diagonal super-groups
DENSE_MAX_WIDTH = 32  # grouped convs no wider than this run as one block-diagonal dense conv


def _pair(v) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    a, b = v
    return (int(a), int(b))


_override = threading.local()


@contextlib.contextmanager
def use_impl(impl: str):
    """Trace every `conv2d` inside the block with `impl` (this thread; blocks nest).

    Applies to tracing: a function object jax has already traced and cached keeps its trace,
    so trace a fresh function (e.g. a new lambda) inside the block.
    """
    if impl not in IMPLS:
        raise ValueError(f"conv impl {impl!r}: expected one of {', '.join(IMPLS)}")
    old = getattr(_override, "impl", None)
    _override.impl = impl
    try:
        yield
    finally:
        _override.impl = old


def conv_impl() -> str:
    """The implementation `conv2d` uses when traced here: the innermost `use_impl`, else auto."""
    return getattr(_override, "impl", None) or "auto"


def fast_paths(impl: str | None = None) -> bool:
    """Whether the CPU fast paths apply (to convolutions, BatchNorm's VJP, attention's layout) for `impl`."""
    return _use_fast_paths(impl or conv_impl())


def _use_fast_paths(impl: str) -> bool:
    if impl not in IMPLS:
        raise ValueError(f"conv impl {impl!r}: expected one of {', '.join(IMPLS)}")
    if impl == "plain":
        return False
    if impl == "fast":
        return True
    return jax.default_backend() == "cpu"


def plain_conv2d(x, w, stride, padding, dilation, groups=1, precision=None):
    return lax.conv_general_dilated(
        x, w, window_strides=stride, padding=padding, rhs_dilation=dilation,
        dimension_numbers=_DIMS, feature_group_count=groups, precision=precision)


def _out_size(size, k, stride, pad, dilation):
    return (size + pad[0] + pad[1] - dilation * (k - 1) - 1) // stride + 1


# ----------------------------------------------------------------------------- dense helpers
def _input_grad_pads(in_hw, kernel_hw, stride, padding, dilation, out_hw):
    """Per-side padding of the s-dilated gradient whose full correlation with the flipped
    kernel, cut to `in_hw`, is the input gradient (every backward pass below uses it)."""
    return [(d * (k - 1) - lo, size + lo - s * (o - 1) - 1)
            for size, k, s, d, (lo, _), o in zip(in_hw, kernel_hw, stride, dilation, padding, out_hw)]


def _xla_conv(precision):
    """A stride-1 forward-layout convolution `conv(lhs, rhs, pads, rhs_dilation)`: XLA's (the
    input gradients below take it as an argument; `_taps_conv` is the other)."""
    return lambda lhs, rhs, pads, dilation: lax.conv_general_dilated(
        lhs, rhs, (1, 1), pads, rhs_dilation=dilation, dimension_numbers=_DIMS,
        precision=precision)


def _conv_input_grad(g, w, in_hw, stride, padding, dilation, precision, conv=None):
    """Input gradient of a dense conv, as stride-1 forward-layout convs (NHWC x HWIO) `conv`
    (default XLA's).

    Stride 1: one convolution. Strided: `_phase_input_grad` (XLA's lhs-dilated convolution
    multiplies mostly zeros: 2-4x slower on RegNet's and ResNet's strided 3x3 convolutions).
    """
    conv = conv or _xla_conv(precision)
    if stride != (1, 1):
        return _phase_input_grad(g, w, in_hw, stride, padding, dilation, conv)
    pads = _input_grad_pads(in_hw, w.shape[:2], stride, padding, dilation, g.shape[1:3])
    return conv(g, jnp.swapaxes(w[::-1, ::-1], 2, 3), pads, dilation)


def _phase_axis(r, size, k, s, d, lo, o):
    """Along one axis, the kernel taps that reach input rows p = q * s + r, and the padding and
    dilation of the stride-1 correlation of the gradient with those taps (flipped) that gives
    rows q = 0 .. ceil(size / s) - 1 of that phase. None if no tap reaches the phase."""
    taps = [t for t in range(k) if (t * d - lo - r) % s == 0]
    if not taps:
        return None
    step = (taps[1] - taps[0]) * d // s if len(taps) > 1 else 1
    left = (taps[-1] * d - lo - r) // s
    return taps, (left, -(-size // s) + step * (len(taps) - 1) - o - left), step


def _phase_input_grad(g, w, in_hw, stride, padding, dilation, conv):
    """Strided input gradient as s_h * s_w stride-1 convolutions, one per phase (p mod s) of the
    input rows and columns, each with the kernel taps that reach that phase; interleaved."""
    n, cin = g.shape[0], w.shape[2]
    q = [-(-size // s) for size, s in zip(in_hw, stride)]
    rows = []
    for rh in range(stride[0]):
        row = []
        for rw in range(stride[1]):
            axes = [_phase_axis(r, size, k, s, d, lo, o) for r, size, k, s, d, (lo, _), o
                    in zip((rh, rw), in_hw, w.shape[:2], stride, dilation, padding, g.shape[1:3])]
            if None in axes:
                row.append(jnp.zeros((n, *q, cin), g.dtype))
                continue
            (th, ph, dh), (tw, pw, dw) = axes
            wr = w[th[0]:th[-1] + 1:th[1] - th[0] if len(th) > 1 else 1,
                   tw[0]:tw[-1] + 1:tw[1] - tw[0] if len(tw) > 1 else 1]
            row.append(conv(g, jnp.swapaxes(wr[::-1, ::-1], 2, 3), (ph, pw), (dh, dw)))
        rows.append(jnp.stack(row, 3))  # (n, qh, qw, sw, c)
    dx = jnp.stack(rows, 2).reshape(n, q[0] * stride[0], q[1] * stride[1], cin)
    return dx[:, :in_hw[0], :in_hw[1]]


def _conv_kernel_grad(xt, gt, kernel_hw, in_hw, stride, padding, dilation, precision):
    """Kernel gradient of a dense conv from xt = x as (Cin, H, W, N) and gt = g as (Ho, Wo, N, Cout).

    The spatial correlation of x with g, batch summed, is itself a forward-layout conv with
    Cin as its batch and N as its contracted feature: no transposes inside XLA's conv.
    Returns (Cin, kh, kw, Cout).
    """
    pads = []
    for size, k, s, d, (lo, _), o in zip(in_hw, kernel_hw, stride, dilation, padding, gt.shape[:2]):
        pads.append((lo, s * (o - 1) + 1 + d * (k - 1) - size - lo))
    return lax.conv_general_dilated(xt, gt, dilation, pads, rhs_dilation=stride,
                                    dimension_numbers=_DIMS, precision=precision)


# ----------------------------------------------------------------------------- dense
def _strided_1x1_input_grad(g, w, in_hw, stride, padding, conv):
    """Input gradient of a 1x1 conv: a 1x1 conv at the output's resolution, spread out by
    interior padding (instead of XLA's lhs-dilated convolution over mostly zeros)."""
    d = conv(g, jnp.swapaxes(w, 2, 3), ((0, 0), (0, 0)), (1, 1))
    (t, b), (l, r) = _input_grad_pads(in_hw, (1, 1), stride, padding, (1, 1), g.shape[1:3])
    cfg = ((0, 0, 0), (t, b, stride[0] - 1), (l, r, stride[1] - 1), (0, 0, 0))
    return lax.pad(d, jnp.array(0, d.dtype), cfg)


def _dense_input_grad(g, w, in_hw, stride, padding, dilation, precision, conv=None):
    conv = conv or _xla_conv(precision)
    if w.shape[:2] == (1, 1) and stride != (1, 1):
        return _strided_1x1_input_grad(g, w, in_hw, stride, padding, conv)
    return _conv_input_grad(g, w, in_hw, stride, padding, dilation, precision, conv)


def _dense_kernel_grad(x, g, kernel_hw, stride, padding, dilation, precision):
    """(kh, kw, Cin, Cout) kernel gradient.

    1x1: one matmul contracting the (batch, space) rows of x and g, which XLA's Eigen matmul
    reads in place (via a convolution, XLA transposes x first and fuses x's elementwise
    producers, BatchNorm and residual adds, into that transposing copy: 2.0 s of resnet50's
    3.8 s train step at batch 16). Larger kernels: `_conv_kernel_grad` on transposed x and g (one
    matmul per tap instead was 1.4-5x slower).
    """
    if kernel_hw == (1, 1):
        xp = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
        (_, _, xs), = _taps(xp, (1, 1), stride, dilation, g.shape[1:3])
        dw = _dot(xs.reshape(-1, x.shape[3]), g.reshape(-1, g.shape[3]), (0,), (0,), precision)
        return dw.reshape(1, 1, *dw.shape)
    dw = _conv_kernel_grad(jnp.transpose(x, (3, 1, 2, 0)), jnp.transpose(g, (1, 2, 0, 3)),
                           kernel_hw, x.shape[1:3], stride, padding, dilation, precision)
    return jnp.transpose(dw, (1, 2, 0, 3))


def low_precision(dtype) -> bool:
    """bfloat16 or float16: the dtypes whose CPU products accumulate in float32 (here, in
    `flaxnets.layers.matmul` and in attention)."""
    return dtype in (jnp.bfloat16, jnp.float16)


def _dot(a, b, ca, cb, precision=None):
    """a . b contracting axes ca of a with cb of b; bfloat16/float16 accumulate into a float32
    result rounded once (the form XLA:CPU runs on AMX/AVX512-BF16, and torch autocast's
    rounding: see `flaxnets.layers.matmul`)."""
    dims = ((tuple(ca), tuple(cb)), ((), ()))
    if low_precision(a.dtype):
        return lax.dot_general(a, b, dims, preferred_element_type=jnp.float32).astype(a.dtype)
    return lax.dot_general(a, b, dims, precision=precision)


def _taps_conv(x, w, stride, padding, dilation, precision=None):
    """Forward-layout conv (NHWC x HWIO, per-side `padding`, negative crops) as one matmul per
    kernel tap over the tap's strided window, summed (a 1x1 kernel: one matmul). Low precision
    accumulates every tap in float32 and rounds once at the end."""
    xp = lax.pad(x, jnp.array(0, x.dtype), ((0, 0, 0), (*padding[0], 0), (*padding[1], 0), (0, 0, 0)))
    out_hw = [_out_size(size, k, s, (0, 0), d)
              for size, k, s, d in zip(xp.shape[1:3], w.shape[:2], stride, dilation)]
    low = low_precision(x.dtype)
    acc = None
    for i, j, xs in _taps(xp, w.shape[:2], stride, dilation, out_hw):
        y = lax.dot_general(xs, w[i, j], (((3,), (0,)), ((), ())), precision=precision,
                            preferred_element_type=jnp.float32 if low else None)
        acc = y if acc is None else acc + y
    return acc.astype(x.dtype)


def _taps_kernel_grad(x, g, kernel_hw, stride, padding, dilation, precision=None):
    """(kh, kw, Cin, Cout) kernel gradient as one matmul per tap contracting the (batch, space)
    rows of the tap's window of x with g (float32 accumulation for low precision)."""
    xp = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
    rows = [_dot(xs, g, (0, 1, 2), (0, 1, 2), precision)
            for _, _, xs in _taps(xp, kernel_hw, stride, dilation, g.shape[1:3])]
    return jnp.stack(rows).reshape(*kernel_hw, x.shape[3], g.shape[3])


# Low precision (bfloat16/float16) on XLA:CPU 0.10 (docs/benchmarks.md "bfloat16
# convolutions"): XLA's bfloat16 convolutions reach neither AMX nor AVX512-BF16 (no faster than
# float32), its float32-accumulated matmuls do. So 1x1 convolutions and their gradients are
# always such matmuls (forward 1.4-4.8x, input gradient 1.4-6x, kernel gradient 1.3-3.5x
# faster on resnet50's shapes), and kxk convolutions with at least TAPS_MIN_CHANNELS input and
# output channels (small images, wide layers: resnet50's last two stages) run their forward
# and input gradient as one matmul per tap (from 256 channels forward 1.3-2.7x, input gradient
# 1.1-2.1x; at 64-160 channels the forward measured 0.4-0.85x).
# Their kernel gradient runs per tap only where the output has at most
# TAPS_KERNEL_GRAD_MAX_PIXELS pixels per image (7x7: 1.2-1.5x); over more rows a matmul per
# tap lost to XLA's convolution (14x14x512 0.82x, 28x28x512 0.82x, 56x56x256 0.31x).
TAPS_MIN_CHANNELS = 256
TAPS_KERNEL_GRAD_MAX_PIXELS = 49


def _taps_plan(x, w, out_hw=None) -> tuple[bool, bool]:
    """(taps forward and input gradient, taps kernel gradient) for this conv (the kernel
    gradient's choice needs the output's spatial size `out_hw`)."""
    if not low_precision(x.dtype):
        return False, False
    if w.shape[:2] == (1, 1):
        return True, True
    wide = min(w.shape[2], w.shape[3]) >= TAPS_MIN_CHANNELS
    small = out_hw is not None and out_hw[0] * out_hw[1] <= TAPS_KERNEL_GRAD_MAX_PIXELS
    return wide, wide and small


def _dense_forward(x, w, stride, padding, dilation, precision, taps):
    if taps:
        return _taps_conv(x, w, stride, padding, dilation, precision)
    return plain_conv2d(x, w, stride, padding, dilation, 1, precision)


def _dense_grads(x, w, g, stride, padding, dilation, precision, plan):
    """(dx, dw) of the dense conv; `plan` as `_taps_plan` (tests force it in float32/64)."""
    taps, taps_dw = plan
    conv = (lambda lhs, rhs, pads, d: _taps_conv(lhs, rhs, (1, 1), pads, d, precision)) if taps else None
    dx = _dense_input_grad(g, w, x.shape[1:3], stride, padding, dilation, precision, conv)
    if taps_dw and w.shape[:2] != (1, 1):
        return dx, _taps_kernel_grad(x, g, w.shape[:2], stride, padding, dilation, precision)
    return dx, _dense_kernel_grad(x, g, w.shape[:2], stride, padding, dilation, precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _dense(x, w, stride, padding, dilation, precision):
    return _dense_forward(x, w, stride, padding, dilation, precision, _taps_plan(x, w)[0])


def _dense_fwd(x, w, stride, padding, dilation, precision):
    return _dense(x, w, stride, padding, dilation, precision), (x, w)


def _dense_bwd(stride, padding, dilation, precision, res, g):
    x, w = res
    return _dense_grads(x, w, g, stride, padding, dilation, precision, _taps_plan(x, w, g.shape[1:3]))


_dense.defvjp(_dense_fwd, _dense_bwd)


def dense_conv2d(x, w, stride, padding, dilation, precision=None):
    """Dense convolution: XLA's forward; custom VJP (1x1 kernel gradients as matmuls, strided
    1x1 input gradients without lhs dilation). bfloat16/float16: float32-accumulated matmuls
    per `_taps_plan`."""
    return _dense(x, w, stride, padding, dilation, precision)


# ----------------------------------------------------------------------------- grouped
def _super_group(cin_g: int, groups: int) -> int:
    """Smallest divisor s of `groups` with s * cin_g >= MIN_GROUP_WIDTH (s groups per conv)."""
    for s in range(1, groups + 1):
        if groups % s == 0 and s * cin_g >= MIN_GROUP_WIDTH:
            return s
    return groups


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def _grouped(x, w, stride, padding, dilation, groups, precision):
    ci, co = x.shape[3] // groups, w.shape[3] // groups

    def conv(i):
        return plain_conv2d(lax.dynamic_slice_in_dim(x, i * ci, ci, 3),
                            lax.dynamic_slice_in_dim(w, i * co, co, 3),
                            stride, padding, dilation, 1, precision)

    y = jax.eval_shape(conv, 0)
    return lax.fori_loop(0, groups, lambda i, acc: lax.dynamic_update_slice_in_dim(acc, conv(i), i * co, 3),
                       jnp.zeros(y.shape[:3] + (w.shape[3],), y.dtype))


def _grouped_fwd(x, w, stride, padding, dilation, groups, precision):
    return _grouped(x, w, stride, padding, dilation, groups, precision), (x, w)


def _grouped_bwd(stride, padding, dilation, groups, precision, res, g):
    x, w = res
    in_hw, kernel_hw = x.shape[1:3], w.shape[:2]
    ci, co = x.shape[3] // groups, w.shape[3] // groups

    def dx_body(i, dx):
        d = _conv_input_grad(lax.dynamic_slice_in_dim(g, i * co, co, 3),
                             lax.dynamic_slice_in_dim(w, i * co, co, 3),
                             in_hw, stride, padding, dilation, precision)
        return lax.dynamic_update_slice_in_dim(dx, d, i * ci, 3)

    xt, gt = jnp.transpose(x, (3, 1, 2, 0)), jnp.transpose(g, (1, 2, 0, 3))

    def dw_body(i, dw):
        d = _conv_kernel_grad(lax.dynamic_slice_in_dim(xt, i * ci, ci, 0),
                              lax.dynamic_slice_in_dim(gt, i * co, co, 3),
                              kernel_hw, in_hw, stride, padding, dilation, precision)
        return lax.dynamic_update_slice_in_dim(dw, jnp.transpose(d, (1, 2, 0, 3)), i * co, 3)

    dx = lax.fori_loop(0, groups, dx_body, jnp.zeros(x.shape, g.dtype))
    return dx, lax.fori_loop(0, groups, dw_body, jnp.zeros(w.shape, g.dtype))


_grouped.defvjp(_grouped_fwd, _grouped_bwd)


def _block_diagonal(w, groups, s):
    """The kernel of `groups // s` convolutions with s groups each: each group's kernel on the
    diagonal of an (s * ci, s * co) block, zeros elsewhere (s x the FLOPs, much faster).

    Built by concatenation: the same kernel as a product with an eye mask crashes XLA:CPU
    (jaxlib 0.10.2, a YNNPACK transpose fusion in the gradient, from 24 merged channels)."""
    kh, kw, ci, cout = w.shape
    co = cout // groups
    zero = jnp.zeros((kh, kw, ci, co), w.dtype)
    blocks = []
    for b in range(groups // s):
        rows = [jnp.concatenate([w[..., (b * s + j) * co:(b * s + j + 1) * co] if j == i else zero
                                 for j in range(s)], 3) for i in range(s)]
        blocks.append(jnp.concatenate(rows, 2))
    return jnp.concatenate(blocks, 3)


def grouped_conv2d(x, w, stride, padding, dilation, groups, precision=None):
    """Grouped convolution as a loop over groups of dense convolutions (custom VJP).

    bfloat16/float16: the loop runs in float32 on the upcast operands and the result is rounded
    once (products of two bfloat16/float16 values are exact in float32, so this is the float32
    accumulation of `low_precision`). XLA:CPU's low-precision per-group convolutions reach no
    bfloat16 unit (XLA compiles them as float32 convolutions between conversions, which inside
    the loop ran 1.4-7x slower than the same loop in float32: docs/benchmarks.md, "Grouped
    bfloat16 convolutions in float32"); one matmul per tap batched over the groups was slower
    still. The gradients come back in the operands' dtype.
    """
    cin_g, cout = w.shape[2], w.shape[3]
    s = groups if max(cin_g * groups, cout) <= DENSE_MAX_WIDTH else _super_group(cin_g, groups)
    if s > 1:
        w = _block_diagonal(w, groups, s)
        groups //= s
    if groups == 1:
        return dense_conv2d(x, w, stride, padding, dilation, precision)
    if low_precision(x.dtype):
        y = _grouped(x.astype(jnp.float32), w.astype(jnp.float32), stride, padding, dilation,
                     groups, precision)
        return y.astype(x.dtype)
    return _grouped(x, w, stride, padding, dilation, groups, precision)


# ----------------------------------------------------------------------------- depthwise
def _taps(xp, kernel_hw, stride, dilation, out_hw):
    """(i, j, strided window of padded xp that kernel tap (i, j) multiplies)."""
    (sh, sw), (dh, dw), (ho, wo) = stride, dilation, out_hw
    n, c = xp.shape[0], xp.shape[3]
    for i in range(kernel_hw[0]):
        for j in range(kernel_hw[1]):
            yield i, j, lax.slice(xp, (0, i * dh, j * dw, 0),
                                  (n, i * dh + sh * (ho - 1) + 1, j * dw + sw * (wo - 1) + 1, c),
                                  (1, sh, sw, 1))


def _acc_dtype(dtype):
    return jnp.promote_types(dtype, jnp.float32)


def _depthwise_forward(x, w, stride, padding, dilation):
    kh, kw, _, cout = w.shape
    n, h, wd, c = x.shape
    m = cout // c
    out_hw = tuple(_out_size(s, k, st, p, d) for s, k, st, p, d
                   in zip((h, wd), (kh, kw), stride, padding, dilation))
    acc = _acc_dtype(x.dtype)
    xp = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
    wa = w.astype(acc).reshape(kh, kw, c, m)
    out = None
    for i, j, patch in _taps(xp, (kh, kw), stride, dilation, out_hw):
        term = patch.astype(acc)[..., None] * wa[i, j]
        out = term if out is None else out + term
    return out.reshape(n, *out_hw, cout).astype(x.dtype)


# Large depthwise kernels (7x7: ConvNeXt) run over batch chunks of up to DW_CHUNK images inside a
# lax.fori_loop. In a train step XLA:CPU otherwise fuses the convolution's producers (the previous
# block's residual add, layer scale, ...) into the 49-tap loop, or YNNPACK takes the taps into its
# fusion with the following LayerNorm and materialises every shifted window and broadcast weight;
# a loop's operands are materialised once. convnext_tiny, batch 16: train step 3854 -> 3530 ms,
# inference 1307 -> 820 ms (separate processes); the kernel gradient runs per image (below).
# Mobile nets' 3x3/5x5 kernels measured no train gain and slower inference (mobilenet_v3_large
# 170 -> 217 ms), so they keep the plain fused form.
DW_LOOP_MIN_TAPS = 49
DW_CHUNK = 8


def _dw_chunk(x, w) -> int:
    """Images per loop iteration, or 0 for no loop."""
    n = x.shape[0]
    if w.shape[0] * w.shape[1] < DW_LOOP_MIN_TAPS or n <= 1:
        return 0
    b = max(k for k in range(1, min(DW_CHUNK, n) + 1) if n % k == 0)
    return b if b < n else 0


def _batch_loop(fn, b: int, x, *others, acc=None):
    """fn over batch chunks of b rows of x and of `others` (same batch) inside a fori_loop: the outputs
    concatenated, or with ``acc=(shape, dtype)`` summed."""
    n = x.shape[0]
    sl = lambda a, k: lax.dynamic_slice_in_dim(a, k * b, b, 0)  # noqa: E731
    if acc is not None:
        return lax.fori_loop(0, n // b, lambda k, s: s + fn(sl(x, k), *(sl(o, k) for o in others)),
                             jnp.zeros(*acc))
    out0 = jax.eval_shape(fn, sl(x, 0), *(sl(o, 0) for o in others))
    return lax.fori_loop(0, n // b, lambda k, out: lax.dynamic_update_slice_in_dim(
        out, fn(sl(x, k), *(sl(o, k) for o in others)), k * b, 0),
        jnp.zeros((n,) + out0.shape[1:], out0.dtype))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _depthwise(x, w, stride, padding, dilation):
    b = _dw_chunk(x, w)
    if not b:
        return _depthwise_forward(x, w, stride, padding, dilation)
    return _batch_loop(lambda xc: _depthwise_forward(xc, w, stride, padding, dilation), b, x)


def _depthwise_fwd(x, w, stride, padding, dilation):
    return _depthwise(x, w, stride, padding, dilation), (x, w)


def _depthwise_bwd(stride, padding, dilation, res, g):
    x, w = res
    b = _dw_chunk(x, w)
    if not b:
        return _depthwise_grads(stride, padding, dilation, x, w, g)
    dx = _batch_loop(lambda xc, gc: _depthwise_grads(stride, padding, dilation, xc, w, gc, "x")[0], b, x, g)
    # The kernel gradient one image at a time, one reduction per tap: a same-process A/B of
    # convnext_tiny's train step (batch 16, 6 alternated rounds): 4115 ms with chunks of 8 images
    # and the batch-row sums below, 3453 ms this way.
    dw = _batch_loop(lambda xc, gc: _depthwise_grads(stride, padding, dilation, xc, w, gc, "w_reduce", False)[1],
                     1, x, g, acc=(w.shape, _acc_dtype(w.dtype)))
    return dx, dw.astype(w.dtype)


def _depthwise_grads(stride, padding, dilation, x, w, g, which="xw", cast=True):
    """(dx, dw) of the depthwise conv. ``which``: "xw" both; "x" only dx (dw None); "w_reduce" only dw, one
    reduction per tap (for the per-image loop; dx None). ``cast=False``: dw stays in the accumulation dtype
    (summed over chunks by the caller)."""
    kh, kw, _, cout = w.shape
    n, h, wd, c = x.shape
    m = cout // c
    acc = _acc_dtype(x.dtype)
    out_hw = g.shape[1:3]
    # Input gradient: the s-dilated gradient correlated with the flipped kernel, summed over
    # the channel multiplier: a stride-1 depthwise conv.
    pads = _input_grad_pads((h, wd), (kh, kw), stride, padding, dilation, out_hw)
    ga = g.astype(acc).reshape(n, *out_hw, c, m)
    gp = lax.pad(ga, jnp.array(0, acc), ((0, 0, 0), (*pads[0], stride[0] - 1),
                                        (*pads[1], stride[1] - 1), (0, 0, 0), (0, 0, 0)))
    wf = w.astype(acc).reshape(kh, kw, c, m)[::-1, ::-1]
    dx = None
    taps = _taps(gp.reshape(*gp.shape[:3], c * m), (kh, kw), (1, 1), dilation, (h, wd)) if "x" in which else ()
    for i, j, patch in taps:
        term = (patch.reshape(n, h, wd, c, m) * wf[i, j]).sum(-1)
        dx = term if dx is None else dx + term
    # Kernel gradient: per tap, window * gradient summed over batch and space. Up to 8 batch
    # rows are summed inside one fused loop (all taps in one output) before the reduction;
    # a plain reduce per tap makes XLA copy every shifted window out first (2-5x slower).
    if "w" not in which:
        return dx.astype(x.dtype), None
    xp = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0))).astype(acc)
    if which == "w_reduce":  # one reduction per tap (the per-image loop: the window stays in cache)
        dw = jnp.stack([jnp.sum(patch.reshape(n, *out_hw, c, 1) * ga, axis=(0, 1, 2))
                        for _, _, patch in _taps(xp, (kh, kw), stride, dilation, out_hw)])
        dw = dw.reshape(kh, kw, 1, cout)
        return None, (dw.astype(w.dtype) if cast else dw)
    r = max(k for k in range(1, 9) if n % k == 0)
    gr = ga.reshape(n // r, r, *out_hw, c, m)
    taps = []
    for _, _, patch in _taps(xp, (kh, kw), stride, dilation, out_hw):
        pr = patch.reshape(n // r, r, *out_hw, c, 1)
        taps.append(sum(pr[:, k] * gr[:, k] for k in range(1, r)) + pr[:, 0] * gr[:, 0])
    dw = jnp.moveaxis(jnp.stack(taps, -1).sum((0, 1, 2)), -1, 0)  # (kh * kw, c, m)
    dw = dw.reshape(kh, kw, 1, cout)
    return (None if dx is None else dx.astype(x.dtype)), (dw.astype(w.dtype) if cast else dw)


_depthwise.defvjp(_depthwise_fwd, _depthwise_bwd)


def depthwise_conv2d(x, w, stride, padding, dilation):
    """Depthwise conv (one input channel per group, cout = multiplier * cin) as shifted slices."""
    return _depthwise(x, w, stride, padding, dilation)


# ----------------------------------------------------------------------------- entry point
def _padding(padding):
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    return tuple(_pair(p) for p in padding)


def _single(v, what: str):
    """A 1-D convolution's stride/dilation (int or 1-tuple) as an int."""
    if isinstance(v, int):
        return v
    if len(v) != 1:
        raise ValueError(f"conv2d on 1-D input: {what} {v!r} should be an int or a 1-tuple")
    return int(v[0])


def _single_padding(padding) -> tuple[int, int]:
    """A 1-D convolution's padding (int, (p,), (lo, hi) or ((lo, hi),)) as (lo, hi)."""
    if isinstance(padding, int):
        return (padding, padding)
    padding = tuple(padding)
    if len(padding) == 1:
        p = padding[0]
        return (p, p) if isinstance(p, int) else _pair(p)
    if len(padding) == 2 and all(isinstance(p, int) for p in padding):
        return (int(padding[0]), int(padding[1]))
    raise ValueError(f"conv2d on 1-D input: padding {padding!r}")


def conv2d(x, w, stride=1, padding=0, dilation=1, groups: int = 1,
           impl: str | None = None, precision=None):
    """2-D convolution, NHWC x HWIO -> NHWC, with explicit symmetric (or per-side) padding.

    `padding` is an int, a (ph, pw) pair, or ((top, bottom), (left, right)).

    1-D input (N, L, C) with a (k, I/g, O) kernel: stride and dilation are ints (or 1-tuples),
    padding an int, (p,), (lo, hi) or ((lo, hi),); computed as the 2-D convolution of a unit
    height axis, so every fast path below applies.
    """
    if x.ndim == 3:
        if w.ndim != 3:
            raise ValueError(f"conv2d: 1-D input {tuple(x.shape)} needs a (k, in/groups, out) "
                             f"kernel, got {tuple(w.shape)}")
        y = conv2d(x[:, None], w[None], (1, _single(stride, "stride")),
                   ((0, 0), _single_padding(padding)), (1, _single(dilation, "dilation")),
                   groups, impl, precision)
        return y[:, 0]
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"conv2d: expected NHWC input and an HWIO kernel (or NLC and LIO), "
                         f"got {tuple(x.shape)} and {tuple(w.shape)}")
    stride, dilation, padding = _pair(stride), _pair(dilation), _padding(padding)
    cin = x.shape[-1]
    if w.shape[2] * groups != cin or w.shape[3] % groups:
        raise ValueError(
            f"conv2d: input has {cin} channels, kernel {tuple(w.shape)} with groups={groups}")
    if _use_fast_paths(impl or conv_impl()):
        if groups == 1:
            return dense_conv2d(x, w, stride, padding, dilation, precision)
        if w.shape[2] == 1:
            return depthwise_conv2d(x, w, stride, padding, dilation)
        return grouped_conv2d(x, w, stride, padding, dilation, groups, precision)
    return plain_conv2d(x, w, stride, padding, dilation, groups, precision)
