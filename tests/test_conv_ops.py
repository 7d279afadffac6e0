"""conv_ops.conv2d (every implementation) against lax.conv_general_dilated at highest precision.

Forward and the gradients with respect to input and kernel, on odd sizes, strides 1/2,
dilations 1/2, asymmetric and zero padding, dense / grouped (wide and narrow groups) /
depthwise (channel multiplier 1 and 2) kernels, non-square kernels. Tolerances (relative to
the largest reference magnitude): float32 1e-5, float64 1e-12. The measured worst errors are
printed (pytest -s).
"""
from __future__ import annotations

import re
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from flaxnets import conv_ops

TOL = {"float32": 1e-5, "float64": 1e-12}

# (name, n, h, w, cin, cout, kernel, stride, dilation, padding, groups)
CASES = [
    ("dense3x3", 2, 9, 7, 5, 6, (3, 3), 1, 1, ((1, 1), (1, 1)), 1),
    ("dense1x1s2", 2, 9, 8, 8, 4, (1, 1), 2, 1, ((0, 0), (0, 0)), 1),
    ("dense1x1", 2, 6, 5, 16, 8, (1, 1), 1, 1, ((0, 0), (0, 0)), 1),
    ("dense1x1s2_pad_asym", 2, 9, 10, 8, 4, (1, 1), 2, 1, ((1, 0), (0, 1)), 1),
    ("dense1x1s3_odd", 1, 10, 11, 8, 8, (1, 1), 3, 1, ((0, 0), (0, 0)), 1),
    ("dense3x3s2_asym", 2, 11, 8, 6, 5, (3, 3), 2, 1, ((1, 2), (0, 1)), 1),
    ("dense3x3_dil2", 2, 9, 10, 4, 6, (3, 3), 1, 2, ((2, 2), (2, 2)), 1),
    ("dense7x7s2_stem", 2, 15, 13, 3, 8, (7, 7), 2, 1, ((3, 3), (3, 3)), 1),
    ("dense1x3", 2, 7, 9, 5, 4, (1, 3), 1, 1, ((0, 0), (1, 1)), 1),
    # strided input gradients by phase: phases no tap reaches, taps spaced by the dilation,
    # padding wider than the kernel reach
    ("dense2x2s3_gap", 2, 10, 11, 4, 5, (2, 2), 3, 1, ((0, 0), (1, 0)), 1),
    ("dense3x3s3_dil2", 1, 14, 13, 4, 4, (3, 3), 3, 2, ((2, 1), (0, 2)), 1),
    ("dense5x3s2_bigpad", 2, 9, 8, 3, 4, (5, 3), 2, 1, ((4, 0), (2, 3)), 1),
    ("dense4x4s2_dil3", 1, 16, 15, 3, 4, (4, 4), 2, 3, ((1, 5), (3, 0)), 1),
    ("grouped_s1", 2, 9, 11, 32, 48, (3, 3), 1, 1, ((1, 1), (1, 1)), 2),
    ("grouped_s2_asym", 2, 11, 9, 48, 48, (3, 3), 2, 1, ((1, 2), (0, 1)), 3),
    ("grouped_dil2", 1, 10, 9, 32, 32, (3, 3), 1, 2, ((2, 2), (2, 2)), 2),
    ("grouped_s2_dil2_pad0", 2, 13, 12, 32, 64, (3, 3), 2, 2, ((0, 0), (0, 0)), 2),
    ("grouped_narrow", 2, 9, 7, 24, 24, (3, 3), 1, 1, ((1, 1), (1, 1)), 6),
    ("grouped_narrow_s2", 2, 8, 9, 16, 32, (3, 3), 2, 1, ((1, 1), (1, 1)), 8),
    ("grouped_1x3", 2, 7, 9, 32, 32, (1, 3), 1, 1, ((0, 0), (1, 1)), 2),
    # one block-diagonal dense conv (DENSE_MAX_WIDTH); its float32 gradient is where an
    # eye-mask construction of the kernel crashed XLA:CPU
    ("grouped_dense32_s2", 2, 12, 11, 32, 32, (3, 3), 2, 1, ((1, 1), (1, 1)), 2),
    ("grouped_narrow_dense24", 2, 9, 8, 24, 24, (3, 3), 1, 1, ((1, 1), (1, 1)), 3),
    ("depthwise3x3", 2, 9, 7, 6, 6, (3, 3), 1, 1, ((1, 1), (1, 1)), 6),
    ("depthwise_s2_asym", 2, 11, 8, 5, 5, (3, 3), 2, 1, ((0, 1), (1, 0)), 5),
    ("depthwise5x5_s2", 1, 13, 10, 4, 4, (5, 5), 2, 1, ((2, 2), (2, 2)), 4),
    ("depthwise_dil2_s2", 2, 12, 9, 3, 3, (3, 3), 2, 2, ((2, 2), (2, 2)), 3),
    ("depthwise_mult2", 2, 8, 9, 3, 6, (3, 3), 1, 1, ((1, 1), (1, 1)), 3),
    ("depthwise_7x1_pad0", 2, 9, 7, 4, 4, (7, 1), 1, 1, ((0, 0), (0, 0)), 4),
    ("depthwise_bigpad", 1, 7, 7, 4, 4, (3, 3), 3, 1, ((4, 1), (1, 3)), 4),
    # 7x7 (DW_LOOP_MIN_TAPS): a fori_loop over batch chunks (12: 2 chunks of 6; 14: 2 of 7; 10: 2 of 5)
    ("depthwise7x7_loop", 12, 9, 10, 5, 5, (7, 7), 1, 1, ((3, 3), (3, 3)), 5),
    ("depthwise7x7_loop_s2_mult2", 14, 11, 8, 3, 6, (7, 7), 2, 1, ((3, 2), (1, 3)), 3),
    ("depthwise7x7_loop_dil2", 10, 13, 13, 4, 4, (7, 7), 1, 2, ((6, 6), (6, 6)), 4),
]


def _reference(x, w, stride, dilation, padding, groups):
    return lax.conv_general_dilated(
        x, w, (stride, stride), padding, rhs_dilation=(dilation, dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups,
        precision=lax.Precision.HIGHEST)


def _outputs(conv, x, w, g):
    """y, dL/dx, dL/dw for L = <conv(x, w), g>."""
    y, vjp = jax.vjp(conv, x, w)
    return (y, *vjp(g))


def _rel(got, ref) -> float:
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    assert got.shape == ref.shape
    return float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-300))


# "plain" is lax itself (feature_group_count): checked on a few cases only.
PARAMS = [pytest.param(case, "fast", dtype, id=f"{case[0]}-fast-{dtype}")
          for case in CASES for dtype in ("float32", "float64")]
PARAMS += [pytest.param(case, "plain", "float32", id=f"{case[0]}-plain-float32")
           for case in CASES if case[0] in ("dense3x3", "grouped_s2_asym", "depthwise_s2_asym")]


@pytest.mark.parametrize("case,impl,dtype", PARAMS)
def test_conv2d_matches_lax(case, impl, dtype):
    name, n, h, wd, cin, cout, kernel, stride, dilation, padding, groups = case
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x = rng.standard_normal((n, h, wd, cin))
    w = rng.standard_normal((*kernel, cin // groups, cout))
    with jax.enable_x64(dtype == "float64"), jax.default_matmul_precision("highest"):
        x, w = jnp.asarray(x, dtype), jnp.asarray(w, dtype)
        ref_fn = jax.jit(lambda x, w, g: _outputs(
            lambda x, w: _reference(x, w, stride, dilation, padding, groups), x, w, g))
        got_fn = jax.jit(lambda x, w, g: _outputs(
            lambda x, w: conv_ops.conv2d(x, w, stride, padding, dilation, groups, impl=impl), x, w, g))
        y = _reference(x, w, stride, dilation, padding, groups)
        g = jnp.asarray(rng.standard_normal(y.shape), dtype)
        errs = [_rel(a, b) for a, b in zip(got_fn(x, w, g), ref_fn(x, w, g))]
    print(f"{name} {impl} {dtype}: rel err y {errs[0]:.1e} dx {errs[1]:.1e} dw {errs[2]:.1e}")
    assert max(errs) <= TOL[dtype], errs


@pytest.mark.parametrize("groups,cin,cout,kind", [
    (4, 64, 64, "grouped"), (8, 16, 16, "merged"), (16, 16, 32, "depthwise"), (1, 16, 16, "dense")])
def test_auto_routes_to_fast_paths_on_cpu(groups, cin, cout, kind):
    x, w = jnp.ones((1, 8, 8, cin)), jnp.ones((3, 3, cin // groups, cout))
    conv = lambda x, w: conv_ops.conv2d(x, w, 1, 1, 1, groups)  # noqa: E731
    fwd = str(jax.make_jaxpr(conv)(x, w))
    # "merged": groups narrower than MIN_GROUP_WIDTH all fit one block-diagonal dense conv.
    assert "custom_vjp_call" in fwd  # dense and merged too: the dense custom VJP
    # Neither XLA's grouped convolution nor its dense-with-mask kernel gradient may appear.
    grad = str(jax.make_jaxpr(jax.grad(lambda x, w: conv(x, w).sum(), argnums=(0, 1)))(x, w))
    counts = re.findall(r"(?:feature|batch)_group_count=(\d+)", fwd + grad)
    assert set(counts) <= {"1"}, counts


@pytest.mark.parametrize("groups,cin,loop", [
    (2, 32, False), (8, 16, False), (3, 24, False), (4, 64, True), (2, 48, True), (6, 48, True)])
def test_grouped_runs_dense_or_as_a_loop(groups, cin, loop):
    """No wider than DENSE_MAX_WIDTH: one dense conv; else a loop over (super-)groups."""
    x, w = jnp.ones((1, 8, 8, cin)), jnp.ones((3, 3, cin // groups, cin))
    jaxpr = str(jax.make_jaxpr(lambda x, w: conv_ops.conv2d(x, w, 1, 1, 1, groups))(x, w))
    assert ("name=_grouped" in jaxpr, "name=_dense" in jaxpr) == (loop, not loop)


def test_bfloat16_depthwise_and_grouped_keep_dtype():
    x = jnp.ones((2, 8, 8, 32), jnp.bfloat16)
    for w in (jnp.ones((3, 3, 1, 32), jnp.bfloat16), jnp.ones((3, 3, 16, 32), jnp.bfloat16)):
        groups = 32 // w.shape[2]
        ref = _reference(x.astype(jnp.float32), w.astype(jnp.float32), 1, 1, ((1, 1), (1, 1)), groups)
        y, (dx, dw) = jax.value_and_grad(
            lambda x, w: conv_ops.conv2d(x, w, 1, 1, 1, groups, impl="fast").astype(jnp.float32).sum(),
            argnums=(0, 1))(x, w)
        assert dx.dtype == dw.dtype == jnp.bfloat16
        np.testing.assert_allclose(float(y), float(ref.sum()), rtol=1e-2)


# The low-precision taps formulation (conv_ops._taps_plan): forced on in float32/float64 on
# every dense case above plus wide ones, it must equal XLA's convolution and its gradients.
TAPS_CASES = [c for c in CASES if c[10] == 1] + [
    ("taps3x3_wide_s2", 2, 9, 9, 32, 40, (3, 3), 2, 1, ((1, 1), (1, 1)), 1),
    ("taps3x3_pad0_s2_crop", 2, 10, 9, 8, 8, (3, 3), 2, 1, ((0, 0), (0, 0)), 1),
    ("taps5x5_s2_dil2", 1, 17, 15, 6, 7, (5, 5), 2, 2, ((4, 3), (2, 4)), 1),
]


@pytest.mark.parametrize("case,dtype", [
    pytest.param(case, dtype, id=f"{case[0]}-{dtype}")
    for case in TAPS_CASES for dtype in ("float32", "float64")])
def test_taps_formulation_matches_lax(case, dtype):
    name, n, h, wd, cin, cout, kernel, stride, dilation, padding, _ = case
    rng = np.random.default_rng(zlib.crc32(b"taps" + name.encode()))
    st, dl = (stride, stride), (dilation, dilation)
    with jax.enable_x64(dtype == "float64"), jax.default_matmul_precision("highest"):
        x = jnp.asarray(rng.standard_normal((n, h, wd, cin)), dtype)
        w = jnp.asarray(rng.standard_normal((*kernel, cin, cout)), dtype)
        y_ref, vjp = jax.vjp(lambda x, w: _reference(x, w, stride, dilation, padding, 1), x, w)
        g = jnp.asarray(rng.standard_normal(y_ref.shape), dtype)
        y = conv_ops._dense_forward(x, w, st, padding, dl, lax.Precision.HIGHEST, True)
        dx, dw = conv_ops._dense_grads(x, w, g, st, padding, dl, lax.Precision.HIGHEST, (True, True))
        errs = [_rel(a, b) for a, b in zip((y, dx, dw), (y_ref, *vjp(g)))]
    print(f"{name} taps {dtype}: rel err y {errs[0]:.1e} dx {errs[1]:.1e} dw {errs[2]:.1e}")
    assert max(errs) <= TOL[dtype], errs


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("h,cin,cout,kernel,stride,groups", [
    (7, 512, 512, 3, 1, 1),     # taps forward, input and kernel gradient
    (14, 256, 256, 3, 2, 1),    # taps forward and phase input gradient; kernel gradient too (7x7 out)
    (14, 256, 256, 3, 1, 1),    # taps forward and input gradient, XLA's kernel gradient (14x14 out)
    (9, 64, 256, 1, 2, 1),      # 1x1 strided: matmuls
    (8, 32, 32, 3, 1, 1),       # narrow: XLA's low-precision convolution
    (7, 400, 400, 3, 1, 25),    # grouped (regnet_x_400mf's last stage): the group loop in float32
    (14, 160, 160, 3, 2, 10),   # grouped, strided
    (8, 32, 32, 3, 1, 2),       # grouped, merged into one block-diagonal dense conv
])
def test_low_precision_conv_rounds_once(dtype, h, cin, cout, kernel, stride, groups):
    """Low-precision dense and grouped conv (whatever `_taps_plan` / `grouped_conv2d` pick),
    forward and gradients, against the float32 convolution of the same rounded inputs: within
    one rounding of the result."""
    rng = np.random.default_rng(h * cin + kernel + groups)
    pad = kernel // 2
    cin_g = cin // groups
    x = jnp.asarray(rng.standard_normal((2, h, h, cin)), dtype)
    w = jnp.asarray(rng.standard_normal((kernel, kernel, cin_g, cout)) / np.sqrt(cin_g * kernel ** 2), dtype)
    f32 = lambda a: a.astype(jnp.float32)  # noqa: E731
    ref = lambda x, w: _reference(x, w, stride, 1, ((pad, pad), (pad, pad)), groups)  # noqa: E731
    got = lambda x, w: conv_ops.conv2d(x, w, stride, pad, 1, groups, impl="fast")  # noqa: E731
    y_ref, vjp_ref = jax.vjp(ref, f32(x), f32(w))
    g = jnp.asarray(rng.standard_normal(y_ref.shape), dtype)
    y, vjp = jax.vjp(got, x, w)
    for name, a, b in zip(("y", "dx", "dw"), (y, *vjp(g)), (y_ref, *vjp_ref(f32(g)))):
        assert a.dtype == jnp.dtype(dtype), name
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        # one rounding: half an ulp (2^-8 of |b| in bfloat16, 2^-11 in float16), plus float32
        # summation-order differences near cancellation
        ulp = 2.0 ** (-8 if dtype == "bfloat16" else -11)
        bound = ulp * np.abs(b) + 1e-5 * np.abs(b).max()
        worst = float((np.abs(a - b) / bound).max())
        print(f"{dtype} {h}x{h}x{cin}->{cout} k{kernel} s{stride} g{groups} {name}: worst/bound {worst:.2f}")
        assert worst <= 1.0, (name, worst)


def test_taps_plan():
    """float32/float64 never; low precision: 1x1 always, kxk from TAPS_MIN_CHANNELS, kernel
    gradient too for at most TAPS_KERNEL_GRAD_MAX_PIXELS output pixels; the traced forward
    is float32-accumulated dot_generals, no convolution."""
    plan = conv_ops._taps_plan
    bf = lambda c: jnp.ones((1, 7, 7, c), jnp.bfloat16)  # noqa: E731
    k = lambda kh, ci, co, dt=jnp.bfloat16: jnp.ones((kh, kh, ci, co), dt)  # noqa: E731
    assert plan(jnp.ones((1, 7, 7, 512)), k(3, 512, 512, jnp.float32), (7, 7)) == (False, False)
    assert plan(bf(64), k(1, 64, 16), (56, 56)) == (True, True)
    assert plan(bf(128), k(3, 128, 512), (7, 7)) == (False, False)
    assert plan(bf(256), k(3, 256, 256), (14, 14)) == (True, False)
    assert plan(bf(512), k(3, 512, 512), (7, 7)) == (True, True)
    assert plan(jnp.ones((1, 7, 7, 256), jnp.float16), k(3, 256, 256, jnp.float16), (7, 7)) == (True, True)
    jaxpr = str(jax.make_jaxpr(lambda x, w: conv_ops.conv2d(x, w, 1, 1, 1, 1, impl="fast"))(
        bf(256), k(3, 256, 256)))
    assert "conv_general_dilated" not in jaxpr
    assert jaxpr.count("preferred_element_type=float32") == 9, jaxpr


def test_low_precision_grouped_runs_in_float32():
    """bfloat16 grouped conv of more groups than one block-diagonal merge: the group loop's
    convolutions, forward and gradients, take float32 operands (upcast once, rounded once)."""
    x = jnp.ones((1, 7, 7, 400), jnp.bfloat16)
    w = jnp.ones((3, 3, 16, 400), jnp.bfloat16)
    f = lambda x, w: conv_ops.conv2d(x, w, 1, 1, 1, 25, impl="fast")  # noqa: E731
    grad = jax.grad(lambda x, w: f(x, w).astype(jnp.float32).sum(), (0, 1))
    for fn in (f, grad):
        jaxpr = str(jax.make_jaxpr(fn)(x, w))
        convs = [line for line in jaxpr.splitlines() if "conv_general_dilated[" in line]
        assert convs, jaxpr
        assert all(":f32[" in line and ":bf16[" not in line for line in convs), convs
    assert f(x, w).dtype == jnp.bfloat16
    assert all(g.dtype == jnp.bfloat16 for g in grad(x, w))


def test_conv_impl_validation():
    with pytest.raises(ValueError, match="bogus"):
        conv_ops.conv2d(jnp.ones((1, 4, 4, 4)), jnp.ones((3, 3, 1, 4)), groups=4, impl="bogus")
    with pytest.raises(ValueError, match="groups"):
        conv_ops.conv2d(jnp.ones((1, 4, 4, 6)), jnp.ones((3, 3, 4, 4)), groups=2, impl="plain")


def test_use_impl_nests_and_restores():
    x, w = jnp.ones((1, 8, 8, 64)), jnp.ones((3, 3, 16, 64))

    def jaxpr():  # a fresh function each time: jax caches traces per function object
        return str(jax.make_jaxpr(lambda x, w: conv_ops.conv2d(x, w, 1, 1, 1, 4))(x, w))

    assert conv_ops.conv_impl() == "auto"
    with conv_ops.use_impl("fast"):
        assert "custom_vjp_call" in jaxpr()
        with conv_ops.use_impl("plain"):
            assert conv_ops.conv_impl() == "plain"
            assert "feature_group_count=4" in jaxpr()
        assert conv_ops.conv_impl() == "fast"
    assert conv_ops.conv_impl() == "auto"
    with pytest.raises(ValueError, match="bogus"):
        with conv_ops.use_impl("bogus"):
            pass


# 1-D (N, L, C) x (k, I/g, O): (name, n, length, cin, cout, k, stride, dilation, padding, groups)
CASES_1D = [
    ("dense1d_k3", 2, 17, 5, 6, 3, 1, 1, (1, 1), 1),
    ("dense1d_k1_s2", 2, 15, 8, 4, 1, 2, 1, (0, 0), 1),
    ("dense1d_k7_s2_asym", 2, 23, 3, 8, 7, 2, 1, (3, 2), 1),
    ("dense1d_k3_s3_dil2", 1, 20, 4, 4, 3, 3, 2, (2, 1), 1),
    ("grouped1d_s2", 2, 19, 48, 48, 3, 2, 1, (1, 1), 3),
    ("grouped1d_narrow", 2, 13, 24, 24, 3, 1, 1, (1, 1), 6),
    ("depthwise1d_k5_s2", 2, 21, 6, 6, 5, 2, 1, (2, 2), 6),
    ("depthwise1d_mult2_dil2", 2, 16, 3, 6, 3, 1, 2, (2, 2), 3),
]


@pytest.mark.parametrize("case,impl,dtype", [
    pytest.param(c, impl, dt, id=f"{c[0]}-{impl}-{dt}")
    for c in CASES_1D for impl in ("fast", "plain") for dt in ("float32", "float64")])
def test_conv1d_matches_lax(case, impl, dtype):
    """1-D input runs through the same paths (a unit height axis) as lax's rank-1 conv."""
    name, n, length, cin, cout, k, stride, dilation, padding, groups = case
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x = rng.standard_normal((n, length, cin))
    w = rng.standard_normal((k, cin // groups, cout))

    def ref(x, w):
        return lax.conv_general_dilated(x, w, (stride,), (padding,), rhs_dilation=(dilation,),
                                        dimension_numbers=("NWC", "WIO", "NWC"),
                                        feature_group_count=groups, precision=lax.Precision.HIGHEST)

    with jax.enable_x64(dtype == "float64"), jax.default_matmul_precision("highest"):
        x, w = jnp.asarray(x, dtype), jnp.asarray(w, dtype)
        y = ref(x, w)
        g = jnp.asarray(rng.standard_normal(y.shape), dtype)
        got = jax.jit(lambda x, w, g: _outputs(
            lambda x, w: conv_ops.conv2d(x, w, stride, (padding,), dilation, groups, impl=impl),
            x, w, g))(x, w, g)
        errs = [_rel(a, b) for a, b in zip(got, _outputs(ref, x, w, g))]
    print(f"{name} {impl} {dtype}: rel err y {errs[0]:.1e} dx {errs[1]:.1e} dw {errs[2]:.1e}")
    assert max(errs) <= TOL[dtype], errs


def test_conv1d_rejects_mixed_ranks():
    with pytest.raises(ValueError, match="1-D input"):
        conv_ops.conv2d(jnp.ones((1, 8, 4)), jnp.ones((3, 3, 4, 4)))
    with pytest.raises(ValueError, match="stride"):
        conv_ops.conv2d(jnp.ones((1, 8, 4)), jnp.ones((3, 4, 4)), stride=(2, 2))
