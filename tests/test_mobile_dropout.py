"""Dropout in MobileNetV1 / MobileNetV2 / MNASNet: the "dropout" RNG stream in train mode only."""
from __future__ import annotations

import flax
import jax
import numpy as np
import pytest

import flaxnets

CASES = [("mobilenet_v1_0_25", {}), ("mobilenet_v2", {"width_mult": 0.35}), ("mnasnet0_5", {})]


@pytest.mark.parametrize("name,kwargs", CASES, ids=[c[0] for c in CASES])
def test_dropout_stream(name, kwargs, twin_variables):
    kwargs = {"num_classes": 10, **kwargs}
    model = flaxnets.create_model(name, dropout=0.5, **kwargs)
    variables = twin_variables(name, **kwargs)
    x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))

    @jax.jit  # one compile costs less CPU than eager op-by-op dispatch (44 s -> 6 s, mnasnet0_5)
    def train(key):
        return model.apply(variables, x, train=True, mutable=["batch_stats"],
                           rngs={"dropout": key})[0]

    a, b, a_again = train(jax.random.key(2)), train(jax.random.key(3)), train(jax.random.key(2))
    np.testing.assert_array_equal(a, a_again)
    assert np.max(np.abs(a - b)) > 1e-3 * np.max(np.abs(a))
    with pytest.raises(flax.errors.InvalidRngError):
        jax.eval_shape(lambda: model.apply(variables, x, train=True, mutable=["batch_stats"]))

    # Eval: deterministic, no RNG needed, identical to the same model without dropout.
    no_dropout = flaxnets.create_model(name, dropout=0.0, **kwargs)
    ev, ev_plain = jax.jit(lambda v: (model.apply(v, x), no_dropout.apply(v, x)))(variables)
    np.testing.assert_array_equal(np.asarray(ev), np.asarray(ev_plain))
