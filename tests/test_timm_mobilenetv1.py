"""MobileNetV1 in timm's layout (mobilenetv1_100/_100h/_125): widths, sizes, knobs, and
bit-exact conversion of a timm-layout state_dict; torchvision-layout mobilenet_v1 is untouched."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import flaxnets
import torchref
from flaxnets.convert import from_torch_state_dict, to_torch_state_dict
from netspecs.timm_mobilenetv1 import VARIANTS, round_channels
from parity_tests.harness import randomize_

# timm 1.0.31: timm.create_model(name) parameter count and state_dict size.
TIMM = {"mobilenetv1_100": (4_231_976, 164), "mobilenetv1_100h": (5_282_600, 170),
        "mobilenetv1_125": (6_270_840, 164)}


def _meta(name, **kw):
    with torch.device("meta"):
        return torchref.create_model(name, **kw)


@pytest.mark.parametrize("name", sorted(TIMM))
def test_sizes_match_timm(name):
    m = _meta(name)
    assert (sum(p.numel() for p in m.parameters()), len(m.state_dict())) == TIMM[name]


def test_widths():
    cfg = VARIANTS["mobilenetv1_125"]
    assert cfg.stem_chs == 40
    outs = [b.out_chs for stage in cfg.blocks() for b in stage]
    assert outs == [80, 160, 160, 320, 320] + [640] * 6 + [1280, 1280]
    strides = [b.stride for stage in cfg.blocks() for b in stage]
    assert strides == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    assert VARIANTS["mobilenetv1_100h"].head_chs == 1024 and VARIANTS["mobilenetv1_100"].head_chs == 0
    assert [round_channels(c, 0.75) for c in (32, 64, 1024)] == [24, 48, 768]


def test_keys_are_timms_not_torchvisions():
    keys = list(_meta("mobilenetv1_100").state_dict())
    assert keys[:2] == ["conv_stem.weight", "bn1.weight"]
    assert "blocks.3.5.conv_pw.weight" in keys and keys[-2:] == ["classifier.weight", "classifier.bias"]
    assert list(_meta("mobilenet_v1").state_dict())[0] == "features.0.0.weight"


def test_knobs(twin_variables):
    assert not any(k.startswith("classifier") for k in _meta("mobilenetv1_100", num_classes=0).state_dict())
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
    plain = flaxnets.create_model("mobilenetv1_100", num_classes=4)
    variables = twin_variables("mobilenetv1_100", num_classes=4)

    def train(model, key):  # jitted: eager op-by-op dispatch costs more CPU than one compile
        return jax.jit(lambda v, k: model.apply(v, x, train=True, mutable=["batch_stats"],
                                                rngs={"dropout": k})[0])(variables, key)

    ref = train(plain, jax.random.key(0))
    # drop_path_rate is inert (no shortcuts), as in timm; drop_rate acts through "dropout".
    np.testing.assert_array_equal(np.asarray(train(flaxnets.create_model("mobilenetv1_100", num_classes=4,
                                                                         drop_path_rate=0.5), jax.random.key(0))),
                                  np.asarray(ref))
    dropped = flaxnets.create_model("mobilenetv1_100", num_classes=4, drop_rate=0.5)
    assert not np.allclose(train(dropped, jax.random.key(0)), ref)
    np.testing.assert_array_equal(np.asarray(jax.jit(dropped.apply)(variables, x)),
                                  np.asarray(jax.jit(plain.apply)(variables, x)))


@pytest.mark.parametrize("name", ["mobilenetv1_125", "mobilenetv1_100h"])
def test_timm_state_dict_round_trip_bit_exact(name):
    torch.manual_seed(0)
    model = torchref.create_model(name)
    randomize_(model, 1)
    sd = model.state_dict()
    back = to_torch_state_dict(name, from_torch_state_dict(name, sd))
    assert list(back) == list(sd)
    for k, v in sd.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v), k
    x = torch.randn(1, 3, 45, 61, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = model.eval()(x).numpy()
    got = flaxnets.create_model(name).apply(from_torch_state_dict(name, sd),
                                            jnp.asarray(x.numpy().transpose(0, 2, 3, 1)))
    assert np.max(np.abs(np.asarray(got) - ref)) / np.max(np.abs(ref)) <= 1e-5
