"""ResNet knobs beyond the parity suite's defaults: dilation, groups/width, zero_init_residual."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flaxnets
import torchref
from parity_tests.harness import eval_parity, set_precision


@pytest.fixture(autouse=True, scope="module")
def _precision():
    set_precision()


def test_dilation_groups_width_match_torch():
    kwargs = dict(num_classes=10, groups=2, width_per_group=32,
                  replace_stride_with_dilation=(False, True, True))
    res = eval_parity("resnet50", [(64, 80)], kwargs)
    assert res["layers"]["compared"] > 100 and res["layers"]["first_bad"] is None, res["layers"]
    assert res["logits"]["64x80"] <= 1e-5


@pytest.mark.parametrize("name,last_bn", [("resnet18", "bn2"), ("resnet50", "bn3")])
def test_zero_init_residual(name, last_bn):
    model = flaxnets.create_model(name, zero_init_residual=True, num_classes=4)
    params = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]  # eager: no compile
    for s in range(1, 5):
        for block in params[f"layer{s}"].values():
            assert not np.any(np.asarray(block[last_bn]["scale"]))
            assert np.all(np.asarray(block["bn1"]["scale"]) == 1)


@pytest.mark.parametrize("name,kwargs", [("resnext50_32x4d", dict(groups=8)),
                                         ("resnext101_64x4d", dict(width_per_group=8)),
                                         ("wide_resnet50_2", dict(width_per_group=64))])
def test_variant_fixed_knobs_raise_like_torchvision(name, kwargs):
    for create in (flaxnets.create_model, torchref.create_model):
        with pytest.raises(ValueError, match="expected value"):
            create(name, **kwargs)


def test_basic_block_rejects_groups():
    with pytest.raises(ValueError, match="BasicBlock"):
        torchref.create_model("resnet18", groups=2)
    with pytest.raises(ValueError, match="BasicBlock"):
        jax.eval_shape(flaxnets.create_model("resnet18", groups=2).init,
                       jax.random.key(0), jax.ShapeDtypeStruct((1, 32, 32, 3), np.float32))
