"""LeNet-5: single-channel inputs and the 32x32 input check (see docs/lenet5.md)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import flaxnets
import torchref
from parity_tests.harness import rel_err, set_precision


@pytest.fixture(autouse=True, scope="module")
def _precision():
    set_precision()


def test_single_channel_converts_and_matches_torch():
    torch.manual_seed(0)
    tmodel = torchref.create_model("lenet5", in_channels=1, num_classes=26).eval()
    fmodel = flaxnets.create_model("lenet5", in_channels=1, num_classes=26)
    x = torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = tmodel(x).numpy()
    sd = tmodel.state_dict()
    variables = flaxnets.from_torch_state_dict("lenet5", sd, in_channels=1, num_classes=26)
    assert variables["params"]["conv1"]["kernel"].shape == (5, 5, 1, 6)
    got = fmodel.apply(variables, jnp.asarray(x.numpy().transpose(0, 2, 3, 1)))
    assert got.shape == (4, 26)
    assert rel_err(got, ref) <= 1e-5
    back = flaxnets.to_torch_state_dict("lenet5", variables, in_channels=1, num_classes=26)
    assert list(back) == list(sd) and all(torch.equal(back[k], sd[k]) for k in sd)
    init = flaxnets.init_variables("lenet5", in_channels=1)
    assert init["params"]["conv1"]["kernel"].shape == (5, 5, 1, 6)


@pytest.mark.parametrize("shape", [(1, 28, 28, 3), (1, 32, 32, 1), (1, 64, 64, 3)])
def test_rejects_other_input_shapes(shape):
    model = flaxnets.create_model("lenet5")
    assert model.default_input_size == 32
    with pytest.raises(ValueError, match="LeNet-5 expects"):
        jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct(shape, np.float32))
