"""GoogLeNet: ceil-mode pooling sizes at odd inputs, transform_input, auxiliary heads."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flax.traverse_util import flatten_dict

import flaxnets
import torchref
from flaxnets import googlenet as fg
from flaxnets.convert import variable_shapes
from flaxnets.layers import max_pool2d
from parity_tests.harness import _to_nhwc, build_pair, eval_parity, set_precision, _channels_last, torch_forward
from torchref import googlenet as tg

ODD_SIZES = [(15, 15), (33, 47), (57, 57), (97, 113), (129, 161), (199, 227)]


@pytest.fixture(autouse=True, scope="module")
def _precision():
    set_precision()


def module_shapes_agree(name: str, sizes, **kwargs):
    """Every module output torch and Flax both have, at each size: same shape (NHWC)."""
    tmodel = torchref.create_model(name, **kwargs).eval()
    fmodel = flaxnets.create_model(name, **kwargs)
    variables = variable_shapes(fmodel)
    for h, w in sizes:
        _, t_outs = torch_forward(tmodel, torch.zeros(1, 3, h, w), capture=True)
        _, state = jax.eval_shape(lambda v, x: fmodel.apply(
            v, x, capture_intermediates=True, mutable=["intermediates"]),
            variables, jax.ShapeDtypeStruct((1, h, w, 3), jnp.float32))
        f_outs = {".".join(k[:-1]): v[0] for k, v in flatten_dict(state["intermediates"]).items()
                  if k[-1] == "__call__" and len(v) == 1 and hasattr(v[0], "shape")}
        common = [p for p in t_outs if p in f_outs]
        assert len(common) > 0.5 * len(f_outs), (h, w, len(common), len(f_outs))
        bad = [(p, t_outs[p].shape, f_outs[p].shape) for p in common
               if tuple(_channels_last(t_outs[p]).shape if t_outs[p].ndim == 4 else t_outs[p].shape)
               != tuple(f_outs[p].shape)]
        assert not bad, f"{name} at {h}x{w}: {bad[:3]}"


@pytest.mark.parametrize("k,s,p", [(3, 2, 0), (2, 2, 0), (3, 1, 1)])
@pytest.mark.parametrize("size", [4, 7, 14, 15, 28, 29, 56, 57, 113])
def test_ceil_mode_max_pool_matches_torch(k, s, p, size):
    """The three ceil-mode max pools GoogLeNet uses, values and sizes, at even and odd maps."""
    x = torch.randn(2, 5, size, size + 2, generator=torch.Generator().manual_seed(size))
    ref = _to_nhwc(F.max_pool2d(x, k, s, p, ceil_mode=True))
    got = np.asarray(max_pool2d(jnp.asarray(_to_nhwc(x)), k, s, p, ceil_mode=True))
    assert got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)


def test_module_sizes_at_odd_inputs():
    module_shapes_agree("googlenet", ODD_SIZES)


def test_transform_input_function():
    x = torch.randn(2, 3, 5, 7, generator=torch.Generator().manual_seed(0))
    ref = _to_nhwc(tg.transform_inputs(x))
    np.testing.assert_allclose(np.asarray(fg.transform_inputs(jnp.asarray(_to_nhwc(x)))), ref,
                               rtol=0, atol=1e-6)


def test_transform_input_parity():
    res = eval_parity("googlenet", [(97, 113)], {"transform_input": True})
    print(res)
    assert res["layers"]["first_bad"] is None and res["layers"]["compared"] > 100
    assert res["logits"]["97x113"] <= 1e-5


def test_aux_outputs_train_mode():
    """Train mode: (logits, aux_logits2, aux_logits1), each equal to torch's; eval: logits."""
    kwargs = {"num_classes": 10, "dropout": 0.0, "dropout_aux": 0.0}
    with jax.enable_x64(True):
        tmodel, fmodel = build_pair("googlenet", kwargs, seed=3, dtype=torch.float64)
        variables = flaxnets.from_torch_state_dict("googlenet", tmodel.state_dict(), **kwargs)
        g = torch.Generator().manual_seed(1)
        x = torch.randn(2, 3, 65, 81, dtype=torch.float64, generator=g)
        t_out = tmodel.train()(x)
        f_out, _ = jax.jit(lambda v, x: fmodel.apply(v, x, train=True, mutable=["batch_stats"]))(
            variables, jnp.asarray(_to_nhwc(x)))
        assert type(t_out).__name__ == "GoogLeNetOutputs" and len(f_out) == 3
        for name, t, f in zip(t_out._fields, t_out, f_out):
            t = t.detach().numpy()
            err = np.max(np.abs(np.asarray(f) - t)) / np.max(np.abs(t))
            assert f.shape == (2, 10) and err <= 1e-10, (name, err)
        assert jax.eval_shape(fmodel.apply, variables, jnp.asarray(_to_nhwc(x))).shape == (2, 10)

    no_aux = flaxnets.create_model("googlenet", aux_logits=False)
    v = variable_shapes(no_aux)
    assert not {"aux1", "aux2"} & set(v["params"])
    out = jax.eval_shape(lambda v: no_aux.apply(v, jnp.zeros((1, 64, 64, 3)), train=True,
                                               mutable=["batch_stats"],
                                               rngs={"dropout": jax.random.key(0)}), v)[0]
    assert out.shape == (1, 1000)
