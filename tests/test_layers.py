"""layers.BatchNorm2d's train-mode custom VJP against autodiff of the textbook formula.

float64, relative to the largest reference magnitude; cotangents on all three outputs
(normalised x, batch mean, batch variance), so the mean/variance terms are checked too.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxnets import conv_ops, layers


def _reference(x, scale, bias, eps):
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axes)
    var = jnp.mean(jnp.square(x - mean), axes)
    return (x - mean) * jax.lax.rsqrt(var + eps) * scale + bias, mean, var


@pytest.mark.parametrize("shape", [(4, 5, 3, 6), (2, 7)])
def test_bn_train_vjp_matches_autodiff(shape):
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.standard_normal(shape) * 3 + 1)
        c = shape[-1]
        scale, bias = jnp.asarray(rng.standard_normal(c)), jnp.asarray(rng.standard_normal(c))
        cts = (jnp.asarray(rng.standard_normal(shape)), jnp.asarray(rng.standard_normal(c)),
               jnp.asarray(rng.standard_normal(c)))
        got_out, got_vjp = jax.vjp(lambda *a: layers._bn_train(*a, 1e-5, jnp.float64), x, scale, bias)
        ref_out, ref_vjp = jax.vjp(lambda *a: _reference(*a, 1e-5), x, scale, bias)
        for got, ref in zip((*got_out, *got_vjp(cts)), (*ref_out, *ref_vjp(cts))):
            err = float(jnp.abs(got - ref).max() / jnp.abs(ref).max())
            assert got.dtype == ref.dtype and err < 1e-13, err


def test_bn_bfloat16_input_keeps_dtypes():
    bn = layers.BatchNorm2d(dtype=jnp.bfloat16)
    x = jnp.ones((2, 3, 3, 4), jnp.bfloat16) * jnp.arange(4, dtype=jnp.bfloat16)
    v = bn.init(jax.random.key(0), x)

    def loss(p, x):
        y, _ = bn.apply({"params": p, "batch_stats": v["batch_stats"]}, x, train=True, mutable=["batch_stats"])
        return y.astype(jnp.float32).sum()

    gp, gx = jax.grad(loss, argnums=(0, 1))(v["params"], x)
    assert gx.dtype == jnp.bfloat16 and gp["scale"].dtype == jnp.float32


def test_bn_vjp_follows_the_fast_path_switch():
    bn = layers.BatchNorm2d()
    x = jnp.ones((2, 3, 3, 4)) * jnp.arange(4.0)
    v = bn.init(jax.random.key(0), x)

    def jaxpr():  # a fresh function each time: jax caches traces per function object
        return str(jax.make_jaxpr(lambda x: bn.apply(v, x, train=True, mutable=["batch_stats"]))(x))

    with conv_ops.use_impl("fast"):
        assert "custom_vjp_call" in jaxpr()
    with conv_ops.use_impl("plain"):
        assert "custom_vjp_call" not in jaxpr()


def test_gelu_is_torchs_exact_gelu_forward_and_backward():
    """layers.gelu (erf form, custom JVP = torch's gelu_backward) against torch.nn.functional.gelu: float32
    values/gradients within a few ulp, float64 to 1e-15; forward mode (jax.jvp) and second derivatives work."""
    import torch

    from flaxnets import layers

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(20000) * 3, np.linspace(-12, 12, 2001)])
    for dtype, tol in (("float32", 1e-6), ("float64", 1e-15)):
        with jax.enable_x64(dtype == "float64"):
            xj = jnp.asarray(x, dtype)
            y, vjp = jax.vjp(layers.gelu, xj)
            g = rng.standard_normal(x.shape).astype(dtype)
            (dx,) = vjp(jnp.asarray(g))
            tx = torch.tensor(x.astype(dtype), requires_grad=True)
            ty = torch.nn.functional.gelu(tx)
            ty.backward(torch.tensor(g))
            for got, want in ((y, ty.detach().numpy()), (dx, tx.grad.numpy())):
                err = np.abs(np.asarray(got, np.float64) - want).max() / np.abs(want).max()
                assert err <= tol, (dtype, err)
            _, tangent = jax.jvp(layers.gelu, (xj,), (jnp.ones_like(xj),))
            np.testing.assert_allclose(np.asarray(tangent), np.asarray(jax.vmap(jax.grad(layers.gelu))(xj)),
                                       rtol=0, atol=0)
    # d2/dx2 gelu = pdf(x) * (2 - x^2), in float64 against the closed form
    with jax.enable_x64(True):
        xs = jnp.linspace(-4, 4, 81)
        d2 = jax.vmap(jax.grad(jax.grad(layers.gelu)))(xs)
        want = np.exp(-0.5 * np.asarray(xs) ** 2) / np.sqrt(2 * np.pi) * (2 - np.asarray(xs) ** 2)
        np.testing.assert_allclose(np.asarray(d2), want, rtol=0, atol=1e-14)


@pytest.mark.parametrize("impl", ["fast", "plain"])
def test_bf16_matmul_and_attention_accumulate_in_float32(impl):
    """bfloat16 Linear products and attention: bfloat16 out, within bfloat16 rounding of the
    float32 computation (the CPU form accumulates to float32 and rounds once, layers.matmul)."""
    rng = np.random.default_rng(0)
    x32 = rng.standard_normal((3, 5, 64)).astype(np.float32)
    w32 = rng.standard_normal((64, 48)).astype(np.float32) / 8
    x, w = jnp.asarray(x32, jnp.bfloat16), jnp.asarray(w32, jnp.bfloat16)
    with conv_ops.use_impl(impl):
        y = jax.jit(layers.matmul)(x, w)
        q, k, v = (jnp.asarray(rng.standard_normal((2, 7, 4, 16)), jnp.bfloat16) for _ in range(3))
        a = jax.jit(layers.attention)(q, k, v)
    ref = np.asarray(x, np.float32) @ np.asarray(w, np.float32)
    assert y.dtype == jnp.bfloat16 and a.dtype == jnp.bfloat16
    err = np.abs(np.asarray(y, np.float32) - ref).max() / np.abs(ref).max()
    assert err <= 2 ** -8, f"matmul rel err {err:.3g}"  # one bfloat16 rounding (8-bit mantissa)
    a_ref = layers.attention(*(jnp.asarray(t, jnp.float32) for t in (q, k, v)))
    err = float(jnp.abs(a.astype(jnp.float32) - a_ref).max() / jnp.abs(a_ref).max())
    assert err <= 2 ** -6, f"attention rel err {err:.3g}"


def _dot_operand_dtypes(jaxpr):
    """The operand dtypes of every dot_general in `jaxpr` and the jaxprs nested in it."""
    out = []
    for e in jaxpr.eqns:
        if e.primitive.name == "dot_general":
            out.append(tuple(str(v.aval.dtype) for v in e.invars))
        for p in e.params.values():
            for sub in (p if isinstance(p, (tuple, list)) else (p,)):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    out += _dot_operand_dtypes(inner)
    return out


@pytest.mark.parametrize("spec,shapes,out", [("rc,cd->rd", ((37, 64), (64, 48)), None),
                                             ("bhqd,bhkd->bhqk", ((2, 3, 7, 16), (2, 3, 9, 16)), "float32"),
                                             ("bhqk,bhkd->bhqd", ((2, 3, 7, 9), (2, 3, 9, 16)), None),
                                             ("bhqk,bkhd->bqhd", ((2, 3, 7, 9), (2, 9, 3, 16)), None)])
def test_low_precision_products_and_their_gradients(spec, shapes, out):
    """`layers.lp_einsum` on bfloat16 operands: the value, and both gradients, are each one bfloat16
    rounding (2^-8 of the largest magnitude) of the float32 product of the bfloat16 operands and
    the bfloat16-rounded cotangent, as torch autocast's oneDNN products; every product of the
    forward and of the VJP takes two bfloat16 operands (autodiff's VJP paired a float32
    cotangent with a bfloat16 operand: a float32 GEMM on XLA:CPU, `_LP_VJP` off)."""
    rng = np.random.default_rng(len(spec))
    a, b = (jnp.asarray(rng.standard_normal(s), jnp.bfloat16) for s in shapes)
    out_dtype = jnp.dtype(out) if out else jnp.bfloat16
    y_shape = jax.eval_shape(lambda a, b: jnp.einsum(spec, a, b), a, b).shape
    g = jnp.asarray(rng.standard_normal(y_shape), out_dtype)
    f = lambda a, b: layers.lp_einsum(spec, a, b, out)  # noqa: E731
    y, vjp = jax.vjp(f, a, b)
    da, db = jax.jit(vjp)(g)
    f32 = lambda t: np.asarray(t, np.float32)  # noqa: E731
    ins, o = spec.split("->")
    sa, sb = ins.split(",")
    g16 = f32(jnp.asarray(g, jnp.bfloat16))
    refs = ((y, np.einsum(spec, f32(a), f32(b))), (da, np.einsum(f"{o},{sb}->{sa}", g16, f32(b))),
            (db, np.einsum(f"{sa},{o}->{sb}", f32(a), g16)))
    for got, ref in refs[1:]:
        assert got.dtype == jnp.bfloat16
    assert y.dtype == out_dtype
    for got, ref in refs:
        err = np.abs(f32(got) - ref).max() / np.abs(ref).max()
        assert err <= 2 ** -8, (spec, err)
    dots = _dot_operand_dtypes(jax.make_jaxpr(jax.grad(lambda a, b: f(a, b).astype(jnp.float32).sum()
                                                       if out is None else (f(a, b) * g).sum(), (0, 1)))(a, b).jaxpr)
    assert dots == [("bfloat16", "bfloat16")] * 3, dots
    layers._LP_VJP = False
    try:
        plain = _dot_operand_dtypes(jax.make_jaxpr(jax.grad(lambda a, b: (layers.lp_einsum(spec, a, b, out)
                                                                          .astype(jnp.float32) * g).sum(),
                                                            (0, 1)))(a, b).jaxpr)
    finally:
        layers._LP_VJP = True
    assert ("float32", "bfloat16") in plain or ("bfloat16", "float32") in plain, plain
    with pytest.raises(ValueError, match=r"lp_einsum 'ab,bc->a'"):
        layers.lp_einsum("ab,bc->a", a, b)  # refused from the spec alone


def test_low_precision_vjp_in_linear_and_attention():
    """Linear and MultiheadAttention in bfloat16 on the CPU fast paths: every product of the train
    step's forward and backward takes bfloat16 operands, and the gradients stay within bfloat16
    rounding of the same layers in float32 (relative 2^-5 of the largest: a chain of roundings)."""
    rng = np.random.default_rng(1)
    m16 = layers.MultiheadAttention(num_heads=2, dtype=jnp.bfloat16)
    m32 = layers.MultiheadAttention(num_heads=2)
    x = jnp.asarray(rng.standard_normal((2, 6, 16)), jnp.float32)
    v = jax.tree.map(lambda a: jnp.asarray(rng.standard_normal(a.shape) / 4, a.dtype), m32.init(jax.random.key(0), x))
    t = jnp.asarray(rng.standard_normal((2, 6, 16)), jnp.float32)
    loss = lambda m: lambda v, x: (m.apply(v, x).astype(jnp.float32) * t).sum()  # noqa: E731
    with conv_ops.use_impl("fast"):
        dots = _dot_operand_dtypes(jax.make_jaxpr(jax.grad(loss(m16), (0, 1)))(v, x.astype(jnp.bfloat16)).jaxpr)
        g16 = jax.jit(jax.grad(loss(m16), (0, 1)))(v, x)
        g32 = jax.jit(jax.grad(loss(m32), (0, 1)))(v, x)
    assert len(dots) == 12 and set(dots) == {("bfloat16", "bfloat16")}, dots  # 4 products x 3
    for a, b in zip(jax.tree.leaves(g16), jax.tree.leaves(g32)):
        assert a.dtype == b.dtype
        err = float(jnp.abs(a.astype(jnp.float32) - b).max() / jnp.abs(b).max())
        assert err <= 2 ** -5, err


@pytest.mark.parametrize("shape,bias", [((3, 11, 4, 8), None), ((2, 9, 3, 16), "heads"),
                                        ((4, 5, 2, 8), "full")])
def test_attention_heads_major_equals_plain(shape, bias):
    """The CPU fast path's heads-major attention (q, k, v copied to (batch, heads, length, dim)
    first) against the plain einsum form on random shapes: forward and the gradients of q, k, v
    and the bias, with and without attention dropout; float64 to 1e-13 and float32 to 1e-6 of
    the largest magnitude, and both against a numpy softmax attention in float64."""
    rng = np.random.default_rng(sum(shape))
    b, n, h, d = shape
    bshape = {None: None, "heads": (1, h, n, n), "full": (b, h, n, n)}[bias]
    for dtype, tol in (("float64", 1e-13), ("float32", 1e-6)):
        with jax.enable_x64(dtype == "float64"):
            q, k, v = (jnp.asarray(rng.standard_normal(shape), dtype) for _ in range(3))
            bb = None if bshape is None else jnp.asarray(rng.standard_normal(bshape), dtype)
            ct = jnp.asarray(rng.standard_normal(shape), dtype)
            for rate in (0.0, 0.3):
                def f(q, k, v, bb):
                    return layers.attention(q, k, v, bias=bb, scale=0.7, dropout_rate=rate,
                                            dropout_rng=jax.random.key(3) if rate else None)
                outs = {}
                for impl in ("fast", "plain"):
                    with conv_ops.use_impl(impl):
                        args = (q, k, v, bb) if bb is not None else (q, k, v)
                        # a fresh function per form: jax caches traces per function object
                        fn = (lambda *a: f(*a)) if bb is not None else (lambda q, k, v: f(q, k, v, None))
                        # forward and VJP in one jitted program (an eager backward dispatches op by op)
                        outs[impl] = jax.jit(lambda *a, fn=fn: (lambda y, vjp: (y, *vjp(ct)))(*jax.vjp(fn, *a)))(*args)
                for got, want in zip(outs["fast"], outs["plain"]):
                    err = float(jnp.abs(got - want).max() / jnp.abs(want).max())
                    assert got.dtype == want.dtype and err <= tol, (dtype, rate, err)
            qn, kn, vn = (np.asarray(t, np.float64) for t in (q, k, v))
            logits = np.einsum("bqhd,bkhd->bhqk", qn * 0.7, kn)
            if bb is not None:
                logits = logits + np.asarray(bb, np.float64)
            w = np.exp(logits - logits.max(-1, keepdims=True))
            want = np.einsum("bhqk,bkhd->bqhd", w / w.sum(-1, keepdims=True), vn)
            with conv_ops.use_impl("fast"):
                got = np.asarray(jax.jit(lambda q, k, v: layers.attention(q, k, v, bias=bb, scale=0.7))(q, k, v))
            assert np.abs(got - want).max() / np.abs(want).max() <= tol


def test_attention_layout_follows_the_fast_path_switch():
    """The fast path's products batch over (batch, heads) as the two leading axes of both operands."""
    q = jnp.ones((2, 5, 3, 4))

    def dots(impl):
        with conv_ops.use_impl(impl):
            jaxpr = jax.make_jaxpr(lambda q: layers.attention(q, q, q))(q)
        return [e.params["dimension_numbers"] for e in jaxpr.eqns if e.primitive.name == "dot_general"]

    assert dots("fast") == [(((3,), (3,)), ((0, 1), (0, 1))), (((3,), (2,)), ((0, 1), (0, 1)))]
    assert all(dn[1] != ((0, 1), (0, 1)) for dn in dots("plain"))


def test_gelu_lane_constants_change_no_value():
    """gelu's constants as barrier'd vectors along the last axis (CPU fast paths) against scalars
    (plain): the same arithmetic, so values and derivatives are bit-identical, float32 and float64,
    on shapes of rank 0 to 4; the fast form's jaxpr has the barrier, the plain form's none."""
    rng = np.random.default_rng(1)
    for dtype in ("float32", "float64"):
        with jax.enable_x64(dtype == "float64"):
            for shape in ((), (7,), (3, 5), (2, 3, 4, 6)):
                x = jnp.asarray(rng.standard_normal(shape) * 3, dtype)
                t = jnp.asarray(rng.standard_normal(shape), dtype)
                got = {}
                for impl in ("fast", "plain"):
                    with conv_ops.use_impl(impl):
                        y, dy = jax.jit(lambda x, t: jax.jvp(layers.gelu, (x,), (t,)))(x, t)
                        g = jax.jit(jax.grad(lambda x: (layers.gelu(x) * t).sum()))(x)
                        got[impl] = [np.asarray(a) for a in (y, dy, g)]
                for a, b in zip(got["fast"], got["plain"]):
                    assert a.dtype == b.dtype and np.array_equal(a, b), (dtype, shape)
    x = jnp.ones((2, 4))
    for impl, barriers in (("fast", 1), ("plain", 0)):
        with conv_ops.use_impl(impl):
            jaxpr = jax.make_jaxpr(lambda x: layers.gelu(x))(x)  # a fresh function: jax caches traces
        inner = next(e for e in jaxpr.eqns if e.primitive.name == "custom_jvp_call").params["call_jaxpr"].eqns
        assert sum(e.primitive.name == "optimization_barrier" for e in inner) == barriers, impl


def _rows_cases(rng, dtype):
    """(feature width, [(name, variables, fn(variables, x))]) for the layers that compute `on_rows`."""
    d = 6
    mods = {"layer_norm": layers.LayerNorm(eps=1e-5), "layer_norm_nobias": layers.LayerNorm(use_bias=False),
            "linear": layers.Linear(5), "linear_bias_fn": layers.Linear(5, bias_fn=lambda b: b * 2.0),
            "linear_nobias": layers.Linear(5, use_bias=False)}
    out = []
    for name, m in mods.items():
        v = m.init(jax.random.key(0), jnp.zeros((1, d), dtype))
        # random affine parameters: an init's ones and zeros would hide a wrong broadcast
        v = jax.tree.map(lambda a: jnp.asarray(rng.standard_normal(a.shape), dtype), v)
        out.append((name, v, lambda v, x, m=m: m.apply(v, x)))
    out.append(("gelu", {}, lambda v, x: layers.gelu(x)))
    return d, out


def test_on_rows_equals_plain():
    """LayerNorm, Linear and gelu computed on the (rows, C) view (CPU fast paths)
    against the plain N-D form: values and gradients (input and parameters), float64 <= 1e-13 and
    float32 <= 1e-6 relative, on random shapes of rank 1, 3 and 4."""
    rng = np.random.default_rng(2)
    worst = {}
    for dtype, tol in (("float32", 1e-6), ("float64", 1e-13)):
        with jax.enable_x64(dtype == "float64"):
            d, cases = _rows_cases(rng, dtype)
            for shape in ((d,), (2, 3, d), (1, 5, 1, d)):  # (rank 2 is the identity view)
                x = jnp.asarray(rng.standard_normal(shape) * 2, dtype)
                for name, v, fn in cases:
                    got = {}
                    t = jnp.asarray(rng.standard_normal(jax.eval_shape(fn, v, x).shape), dtype)
                    for impl in ("fast", "plain"):
                        with conv_ops.use_impl(impl):
                            # fresh functions per form (jax caches traces per function object);
                            # value and gradients in one program
                            vjp = jax.jit(lambda v, x, fn=fn: (lambda y, back: (y, back(t)))(*jax.vjp(fn, v, x)))
                            got[impl] = [np.asarray(a) for a in jax.tree.leaves(vjp(v, x))]
                    for a, b in zip(got["fast"], got["plain"]):
                        assert a.dtype == b.dtype == np.dtype(dtype) and a.shape == b.shape
                        err = np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)
                        worst[(dtype, name)] = max(worst.get((dtype, name), 0.0), err)
                        assert err <= tol, (dtype, name, shape, err)
    assert len(worst) == 12


def test_on_rows_reshapes_only_on_the_fast_paths():
    """The fast form of LayerNorm on a rank-4 input reduces a rank-2 operand, the plain form a
    rank-4 one (so the test above compares two different computations)."""
    m = layers.LayerNorm()
    x = jnp.ones((2, 3, 4, 5))
    v = m.init(jax.random.key(0), x)
    for impl, rank in (("fast", 2), ("plain", 4)):
        with conv_ops.use_impl(impl):
            jaxpr = jax.make_jaxpr(lambda v, x: m.apply(v, x))(v, x)
        ranks = {e.invars[0].aval.ndim for e in jaxpr.eqns if e.primitive.name == "reduce_sum"}
        assert ranks == {rank}, (impl, ranks)
    assert layers.on_rows(lambda r: r[:, :2], jnp.ones((2, 3, 5))).shape == (2, 3, 2)
    for shape in ((0, 3, 5), (2, 3, 0)):  # empty batches and zero-width features keep their shape
        assert layers.on_rows(lambda r: r * 2, jnp.ones(shape)).shape == shape
