"""flaxnets models from flax.nnx (flaxnets/nnx_bridge.py): converted weights, eval and train mode
with BatchNorm state, and back to torch, equal to the linen model."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import flaxnets
from flaxnets.nnx_bridge import linen_variables, to_nnx

NAME = "resnet18"


def _max_diff(a, b) -> float:
    return max(jax.tree_util.tree_leaves(jax.tree_util.tree_map(
        lambda u, v: float(jnp.max(jnp.abs(jnp.asarray(u, jnp.float32) - jnp.asarray(v, jnp.float32)))), a, b)))


def test_nnx_model_equals_linen_in_eval_and_train():
    torch = pytest.importorskip("torch")
    import torchref
    from parity_tests.harness import randomize_

    torch.manual_seed(0)
    tm = torchref.create_model(NAME, num_classes=10)
    randomize_(tm, 1)
    variables = flaxnets.from_torch_state_dict(NAME, tm.state_dict(), num_classes=10)
    linen = flaxnets.create_model(NAME, num_classes=10)
    m = to_nnx(NAME, variables, num_classes=10)
    x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))

    assert float(jnp.max(jnp.abs(m(x, train=False) - linen.apply(variables, x, train=False)))) == 0.0
    y = m(x, train=True, mutable=["batch_stats"], rngs=nnx.Rngs(dropout=0))
    y_ref, upd = linen.apply(variables, x, train=True, mutable=["batch_stats"],
                             rngs={"dropout": jax.random.key(0)})
    assert float(jnp.max(jnp.abs(y - y_ref))) == 0.0
    now = linen_variables(m)
    assert _max_diff(now["batch_stats"], upd["batch_stats"]) == 0.0  # updated in place
    assert _max_diff(now["batch_stats"], variables["batch_stats"]) > 0.0
    back = flaxnets.to_torch_state_dict(NAME, {"params": now["params"], "batch_stats": variables["batch_stats"]},
                                        num_classes=10)
    for k, v in tm.state_dict().items():
        assert torch.equal(v, back[k]), k


def test_nnx_rejects_variables_of_another_model():
    other = flaxnets.init_variables(NAME, num_classes=5)
    with pytest.raises(ValueError, match="do not fit"):
        to_nnx(NAME, other, num_classes=10)


def test_nnx_fresh_init_and_grad():
    m = to_nnx("lenet5")
    x = jnp.ones((2, 32, 32, 3))

    def loss(model):
        return jnp.sum(model(x, train=False) ** 2)

    grads = nnx.grad(loss)(m)
    leaves = jax.tree_util.tree_leaves(nnx.state(grads, nnx.Param))
    assert leaves and all(np.isfinite(np.asarray(g)).all() for g in leaves)
    assert any(float(jnp.max(jnp.abs(g))) > 0 for g in leaves)
