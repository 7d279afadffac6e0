"""DenseNet: memory_efficient (nn.remat) gives the same numbers; drop_rate; builder knobs.

A small DenseNet (k=8, blocks (2, 3)) runs the registered models' code paths at a fraction of
the compile time; the full models' parity is in parity_tests.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flaxnets
from flaxnets.convert import variable_shapes
from flaxnets.densenet import VARIANTS, DenseNet, DenseNetConfig

SMALL = DenseNetConfig(8, (2, 3), 16)


def _train_step(model, variables, x, key=None):
    def loss(params):
        out, upd = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, x,
                               train=True, mutable=["batch_stats"],
                               rngs={"dropout": key if key is not None else jax.random.key(0)})
        w = jnp.linspace(-1.0, 1.0, out.size, dtype=out.dtype).reshape(out.shape)
        return jnp.sum(out * w), (out, upd["batch_stats"])
    return jax.jit(jax.grad(loss, has_aux=True))(variables["params"])


def test_memory_efficient_same_numbers():
    """Logits and running statistics bit-identical, gradients to float64 rounding."""
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(1), (2, 33, 37, 3), jnp.float64)
        plain = DenseNet(SMALL, num_classes=5)
        remat = DenseNet(SMALL, num_classes=5, memory_efficient=True)
        v = plain.init(jax.random.key(0), x)
        assert jax.tree.structure(remat.init(jax.random.key(0), x)) == jax.tree.structure(v)
        g0, (o0, s0) = _train_step(plain, v, x)
        g1, (o1, s1) = _train_step(remat, v, x)
        np.testing.assert_array_equal(o1, o0)
        jax.tree.map(np.testing.assert_array_equal, s1, s0)
        for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g0)):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-13 * np.max(np.abs(b)))
        # The checkpoint is really there: the backward pass recomputes the dense layers.
        step = lambda p: _train_step(remat, {**v, "params": p}, x)  # noqa: E731
        jaxpr = str(jax.make_jaxpr(step)(v["params"]))
        assert "remat" in jaxpr or "checkpoint" in jaxpr


def test_memory_efficient_eval_same():
    x = jax.random.normal(jax.random.key(2), (2, 32, 32, 3))
    v = DenseNet(SMALL, num_classes=5).init(jax.random.key(0), x)
    a = jax.jit(DenseNet(SMALL, num_classes=5).apply)(v, x)
    b = jax.jit(DenseNet(SMALL, num_classes=5, memory_efficient=True).apply)(v, x)
    np.testing.assert_array_equal(a, b)


def test_drop_rate():
    x = jax.random.normal(jax.random.key(2), (2, 32, 32, 3))
    model = DenseNet(SMALL, drop_rate=0.5, num_classes=5)
    v = model.init(jax.random.key(0), x)
    np.testing.assert_array_equal(model.apply(v, x), DenseNet(SMALL, num_classes=5).apply(v, x))
    run = jax.jit(lambda key: model.apply(v, x, train=True, mutable=["batch_stats"],
                                          rngs={"dropout": key})[0])
    k1, k2 = jax.random.key(1), jax.random.key(2)
    np.testing.assert_array_equal(run(k1), run(k1))
    assert not np.array_equal(run(k1), run(k2))


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_builder_knobs(name):
    """memory_efficient keeps the variable layout; bn_size and num_classes reach the model."""
    def shapes(**kw):
        return jax.tree.map(lambda s: s.shape, variable_shapes(flaxnets.create_model(name, **kw)))
    assert shapes(memory_efficient=True) == shapes()
    k = VARIANTS[name].growth_rate
    small = variable_shapes(flaxnets.create_model(name, bn_size=2, num_classes=7))
    conv1 = small["params"]["features"]["denseblock1"]["denselayer1"]["conv1"]["kernel"]
    assert conv1.shape[-1] == 2 * k
    assert small["params"]["classifier"]["kernel"].shape[-1] == 7
