"""Inception-v3: pooling sizes at odd inputs, transform_input, auxiliary head."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
import torch
import torch.nn.functional as F

import flaxnets
from flaxnets.convert import variable_shapes
from flaxnets.layers import avg_pool2d, max_pool2d
from parity_tests.harness import _to_nhwc, eval_parity, set_precision
from test_googlenet import module_shapes_agree  # tests/ is on sys.path (rootdir-relative import)

# 75 is torchvision's minimum; 299 the natural size; the rest odd.
SIZES = [(75, 75), (107, 139), (151, 151), (299, 299), (301, 333)]


@pytest.fixture(autouse=True, scope="module")
def _precision():
    set_precision()


@pytest.mark.parametrize("size", [15, 16, 17, 35, 36, 71, 72, 147])
def test_pools_match_torch(size):
    """Floor-mode 3x3/2 max pool, 3x3/1 pad-1 avg pool (count_include_pad), 5x5/3 avg pool."""
    x = torch.randn(2, 4, size, size + 1, generator=torch.Generator().manual_seed(size))
    xj = jnp.asarray(_to_nhwc(x))
    cases = [(max_pool2d(xj, 3, 2), F.max_pool2d(x, 3, 2)),
             (avg_pool2d(xj, 3, 1, 1), F.avg_pool2d(x, 3, 1, 1)),
             (avg_pool2d(xj, 5, 3), F.avg_pool2d(x, 5, 3))]
    for got, ref in cases:
        ref = _to_nhwc(ref)
        assert got.shape == ref.shape
        assert float(jnp.max(jnp.abs(got - ref))) <= 1e-6


def test_module_sizes_at_odd_inputs():
    module_shapes_agree("inception_v3", SIZES)


def test_transform_input_parity():
    res = eval_parity("inception_v3", [(107, 139)], {"transform_input": True})
    print(res)
    assert res["layers"]["first_bad"] is None and res["layers"]["compared"] > 200
    assert res["logits"]["107x139"] <= 1e-5


def test_aux_output_structure():
    """Train mode returns (logits, aux_logits); eval returns logits; the head's variables exist
    at any init size (eval never runs it); aux_logits=False drops it. Values: test_parity."""
    model = flaxnets.create_model("inception_v3", num_classes=10)
    v = variable_shapes(model)
    assert "AuxLogits" in v["params"]
    small = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 75, 75, 3))))
    assert jax.tree.structure(small) == jax.tree.structure(v)
    x = jax.ShapeDtypeStruct((2, 299, 299, 3), jnp.float32)
    logits, aux = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"],
                                 rngs={"dropout": jax.random.key(0)})[0], v, x)
    assert logits.shape == aux.shape == (2, 10)
    assert jax.eval_shape(lambda v, x: model.apply(v, x), v, x).shape == (2, 10)
    no_aux = flaxnets.create_model("inception_v3", aux_logits=False)
    v = variable_shapes(no_aux)
    assert "AuxLogits" not in v["params"]
    out = jax.eval_shape(lambda v: no_aux.apply(v, jnp.zeros((1, 75, 75, 3)), train=True,
                                               mutable=["batch_stats"],
                                               rngs={"dropout": jax.random.key(0)})[0], v)
    assert out.shape == (1, 1000)
