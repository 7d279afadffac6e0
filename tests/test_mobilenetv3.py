"""MobileNetV3: dropout uses the "dropout" RNG stream in train mode and leaves eval alone;
the hardsigmoid in its SE blocks has torch's float64 gradient."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch

import flaxnets
from flaxnets.blocks import hardsigmoid


def test_dropout_stream(twin_variables):
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
    model = flaxnets.create_model("mobilenet_v3_small", num_classes=10, dropout=0.5)
    plain = flaxnets.create_model("mobilenet_v3_small", num_classes=10, dropout=0.0)
    variables = twin_variables("mobilenet_v3_small", num_classes=10)

    @jax.jit
    def run(key):
        train = model.apply(variables, x, train=True, mutable=["batch_stats"],
                            rngs={"dropout": key})[0]
        return train, model.apply(variables, x), plain.apply(variables, x)

    (a, ev, ev_plain), (b, _, _), (c, _, _) = (run(jax.random.key(k)) for k in (0, 0, 2))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(a, c)
    np.testing.assert_array_equal(np.asarray(ev), np.asarray(ev_plain))


def test_hardsigmoid_matches_torch_float64():
    x = np.array([-4.0, -3.0, -2.9, -0.3, 0.0, 0.5, 2.9, 3.0, 4.0])
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y_t = torch.nn.functional.hardsigmoid(t)
    y_t.sum().backward()
    with jax.enable_x64(True):
        xj = jnp.asarray(x, jnp.float64)
        y, g = hardsigmoid(xj), jax.grad(lambda v: hardsigmoid(v).sum())(xj)
        np.testing.assert_allclose(np.asarray(y), y_t.detach().numpy(), rtol=1e-15, atol=0)
        np.testing.assert_array_equal(np.asarray(g), t.grad.numpy())  # slope float32(1/6)
