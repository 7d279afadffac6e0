"""EfficientNet V1/V2: dropout and stochastic depth use the "dropout" RNG stream in train mode
(different keys -> different outputs, the same key -> the same), eval ignores both knobs,
and the stochastic-depth probabilities follow torchvision's per-block linear schedule."""
from __future__ import annotations

import flax
import jax
import numpy as np
import pytest

import flaxnets
from flaxnets.efficientnet import VARIANTS


@pytest.mark.parametrize("name, knobs", [
    ("efficientnet_b0", {"dropout": 0.0, "stochastic_depth_prob": 0.5}),  # stochastic depth alone
    ("efficientnet_b0", {"dropout": 0.5, "stochastic_depth_prob": 0.0}),  # dropout alone
])
def test_dropout_stream(name, knobs, twin_variables):
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
    model = flaxnets.create_model(name, num_classes=10, **knobs)
    plain = flaxnets.create_model(name, num_classes=10, dropout=0.0, stochastic_depth_prob=0.0)
    variables = twin_variables(name, num_classes=10)

    @jax.jit
    def run(key):
        train = model.apply(variables, x, train=True, mutable=["batch_stats"],
                            rngs={"dropout": key})[0]
        return train, model.apply(variables, x), plain.apply(variables, x)

    (a, ev, ev_plain), (b, _, _), (c, _, _) = (run(jax.random.key(k)) for k in (0, 0, 2))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(a, c)
    np.testing.assert_array_equal(np.asarray(ev), np.asarray(ev_plain))
    # With the knobs off, train mode needs no "dropout" stream at all.
    jax.eval_shape(lambda: plain.apply(variables, x, train=True, mutable=["batch_stats"]))
    with pytest.raises(flax.errors.InvalidRngError):
        jax.eval_shape(lambda: model.apply(variables, x, train=True, mutable=["batch_stats"]))


@pytest.mark.parametrize("name, n", [("efficientnet_b0", 16), ("efficientnet_b7", 55),
                                     ("efficientnet_v2_s", 40)])
def test_stochastic_depth_schedule(name, n):
    """Block i of n (counted over all stages) gets p * i / n."""
    probs = [s.sd_prob for specs in VARIANTS[name].blocks(0.2) for s in specs]
    assert probs == [0.2 * float(i) / n for i in range(n)]
