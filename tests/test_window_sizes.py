"""Windows larger than their input: torch raises, and so does flaxnets.

lax.conv and reduce_window return an empty axis where a kernel is larger than its padded
input; a mean over it is then NaN, with no error (inception_v3 trained at 224x224 gave NaN
auxiliary logits this way until 2026-12-07). Each case is checked against torch itself: where
torch raises we raise a ValueError naming the layer and sizes; where torch gives an output (a
ceil-mode window may overhang the input) we give the same values.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import flaxnets
from flaxnets.layers import Conv2d, avg_pool2d, max_pool2d


class _Net(nn.Module):
    kernel: int
    padding: int

    @nn.compact
    def __call__(self, x):
        return Conv2d(4, self.kernel, padding=self.padding, name="stem")(x)


def _nchw(x):
    return torch.from_numpy(np.moveaxis(np.asarray(x), -1, 1).copy())


@pytest.mark.parametrize("shape,kernel,padding,raises", [
    ((1, 3, 3, 2), 5, 0, True), ((1, 3, 3, 2), 5, 1, False), ((1, 5, 4, 2), 5, 0, True),
    ((1, 5, 5, 2), 5, 0, False), ((1, 4, 2), 5, 0, True), ((1, 5, 2), 5, 0, False)])
def test_conv_window_larger_than_input(shape, kernel, padding, raises):
    x = jnp.asarray(np.random.default_rng(0).standard_normal(shape), jnp.float32)
    conv = (F.conv1d if len(shape) == 3 else F.conv2d)
    w = torch.zeros((4, 2) + (kernel,) * (len(shape) - 2))
    if raises:
        with pytest.raises(RuntimeError, match="Kernel size can't be greater"):
            conv(_nchw(x), w, padding=padding)
        with pytest.raises(ValueError, match=r"stem: convolution: input size .* smaller than the kernel"):
            _Net(kernel, padding).init(jax.random.key(0), x)
    else:
        ref = conv(_nchw(x), w, padding=padding)
        out, _ = _Net(kernel, padding).init_with_output(jax.random.key(0), x)
        assert out.shape[1:-1] == tuple(ref.shape[2:]) and min(out.shape) > 0


@pytest.mark.parametrize("pool", ["max", "avg"])
@pytest.mark.parametrize("size,k,s,p,ceil,raises", [
    (2, 3, 2, 0, False, True), (2, 3, 2, 0, True, False), (3, 5, 3, 0, False, True),
    (3, 5, 3, 0, True, False), (1, 3, 2, 1, True, False), (4, 5, 2, 0, True, False)])
def test_pool_output_size_below_one(pool, size, k, s, p, ceil, raises):
    """`raises` is what torch 2.13 does for the case (a ceil-mode window may overhang)."""
    x = np.random.default_rng(size).standard_normal((2, size, size + 1, 3)).astype(np.float32)
    tfn = F.max_pool2d if pool == "max" else F.avg_pool2d
    fn = max_pool2d if pool == "max" else avg_pool2d
    if raises:
        with pytest.raises(RuntimeError, match="too small"):
            tfn(_nchw(x), k, s, p, ceil_mode=ceil)
        with pytest.raises(ValueError, match=f"{pool}_pool2d: input size .* gives output size"):
            fn(jnp.asarray(x), k, s, p, ceil_mode=ceil)
        return
    ref = tfn(_nchw(x), k, s, p, ceil_mode=ceil)
    got = np.asarray(fn(jnp.asarray(x), k, s, p, ceil_mode=ceil))
    assert got.shape == np.moveaxis(ref.numpy(), 1, -1).shape and got.size > 0
    np.testing.assert_allclose(got, np.moveaxis(ref.numpy(), 1, -1), rtol=1e-6, atol=1e-6)


def test_inception_aux_head_below_its_size():
    """Train mode at 224x224 (the auxiliary head's 5x5 conv meets a 3x3 map): torchvision
    raises, and so do we, naming the layer; eval mode at 224 needs no auxiliary head."""
    model = flaxnets.create_model("inception_v3", num_classes=10)
    v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3))))
    x = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32)
    with pytest.raises(ValueError, match=r"AuxLogits/conv1/conv: convolution: input size \(3, 3\)"):
        jax.eval_shape(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"],
                                                rngs={"dropout": jax.random.key(0)}), v, x)
    assert jax.eval_shape(lambda v, x: model.apply(v, x), v, x).shape == (2, 10)
