"""DarkNet family (timm layout): registry names, timm's builder knobs, timm's state_dict
layout (pinned by a digest of timm 1.0.31's keys/shapes/dtypes), strict bit-exact conversion
both ways, the timm padding rule, drop-path rates, leaky ReLU."""
from __future__ import annotations

import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import flaxnets
import torchref
from flaxnets.convert import ConversionError, from_torch_state_dict, to_torch_state_dict
from flaxnets.layers import leaky_relu, timm_padding
from netspecs.darknet import VARIANTS, drop_path_rates, make_divisible, se_channels

# timm.create_model(name).state_dict(): number of keys, parameters, and the first 16 hex digits
# of sha256("\n".join(f"{key}:{tuple(shape)}:{dtype}")) in timm's key order (timm 1.0.31).
TIMM_LAYOUT = {
    "darknet17": (98, 14_304_840, "3fac438f3c4cb4af"),
    "darknet21": (122, 20_863_048, "bb2eee73ca1988ba"),
    "sedarknet21": (150, 20_950_432, "1ee4d903b2f9d031"),
    "darknet53": (314, 41_609_928, "3cbdd6fe070cea3b"),
    "cspdarknet53": (404, 27_642_184, "caea36fdd4053868"),
}


def _meta_state_dict(name, **kw):
    with torch.device("meta"):
        model = torchref.create_model(name, **kw)
    return model, model.state_dict()


def test_registry_names():
    for reg in (flaxnets, torchref):
        assert set(TIMM_LAYOUT) <= set(reg.list_models())
    assert set(VARIANTS) == set(TIMM_LAYOUT)


@pytest.mark.parametrize("name", sorted(TIMM_LAYOUT))
def test_torchref_has_timm_layout(name):
    n_keys, n_params, digest = TIMM_LAYOUT[name]
    model, sd = _meta_state_dict(name)
    text = "\n".join(f"{k}:{tuple(v.shape)}:{v.dtype}" for k, v in sd.items())
    assert len(sd) == n_keys
    assert sum(p.numel() for p in model.parameters()) == n_params
    assert hashlib.sha256(text.encode()).hexdigest()[:16] == digest


def _random_state_dict(name, seed=0, **kw):
    torch.manual_seed(seed)
    model = torchref.create_model(name, **kw)
    g = torch.Generator().manual_seed(seed + 1)
    sd = model.state_dict()
    with torch.no_grad():
        for k, v in sd.items():
            if v.is_floating_point():
                v.copy_(torch.randn(v.shape, generator=g))
            else:
                v.fill_(int(torch.randint(0, 1000, (1,), generator=g)))
    return sd


@pytest.mark.parametrize("name", ["darknet17", "sedarknet21", "cspdarknet53"])
def test_timm_state_dict_round_trip_bit_exact(name):
    sd = _random_state_dict(name, num_classes=7)
    variables = from_torch_state_dict(name, sd, num_classes=7)
    # timm's paths, Flax side
    p = variables["params"]
    assert p["stem"]["conv1"]["conv"]["kernel"].shape == (3, 3, 3, 32)
    assert set(p["stem"]["conv1"]["bn"]) == {"scale", "bias"}
    assert set(variables["batch_stats"]["stem"]["conv1"]["bn"]) == {"mean", "var", "num_batches_tracked"}
    assert p["head"]["fc"]["kernel"].shape == (1024, 7)
    back = to_torch_state_dict(name, variables, num_classes=7)
    assert list(back) == list(sd)
    for k, v in sd.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v), k


def test_conversion_errors_name_the_key():
    sd = _random_state_dict("darknet17")
    bad = dict(sd)
    bad["stages.0.blocks.0.conv1.bn.weightx"] = bad.pop("stages.0.blocks.0.conv1.bn.weight")
    with pytest.raises(ConversionError) as e:
        from_torch_state_dict("darknet17", bad)
    assert e.value.missing == ["stages.0.blocks.0.conv1.bn.weight"]
    assert e.value.unexpected == ["stages.0.blocks.0.conv1.bn.weightx"]
    with pytest.raises(ConversionError, match="head.fc.weight"):
        from_torch_state_dict("darknet17", sd, num_classes=10)


def test_cspdarknet53_stage_widths():
    sd = _meta_state_dict("cspdarknet53")[1]
    # stage 0: conv_exp 64 -> 128, blocks on the 64-wide second half with a 32-wide bottleneck
    assert tuple(sd["stages.0.conv_exp.conv.weight"].shape) == (128, 64, 1, 1)
    assert tuple(sd["stages.0.blocks.0.conv1.conv.weight"].shape) == (32, 64, 1, 1)
    assert tuple(sd["stages.0.conv_transition.conv.weight"].shape) == (64, 128, 1, 1)
    # later stages: halves of the stage width, blocks without bottleneck
    assert tuple(sd["stages.2.conv_exp.conv.weight"].shape) == (256, 256, 1, 1)
    assert tuple(sd["stages.2.blocks.7.conv1.conv.weight"].shape) == (128, 128, 1, 1)
    assert tuple(sd["stages.2.conv_transition_b.conv.weight"].shape) == (128, 128, 1, 1)


def test_se_channels_timm_rule():
    # timm SEModule: make_divisible(c / 16, 8, round_limit=0) -> never below 8
    assert [se_channels(c) for c in (32, 64, 128, 256, 512)] == [8, 8, 8, 16, 32]
    assert make_divisible(10, 8) == 16 and make_divisible(10, 8, round_limit=0.0) == 8
    sd = _meta_state_dict("sedarknet21")[1]
    assert tuple(sd["stages.4.blocks.1.attn.fc1.weight"].shape) == (32, 512, 1, 1)


def test_timm_padding_rule():
    # ((stride - 1) + dilation * (kernel - 1)) // 2
    assert [timm_padding(k, s) for k, s in ((1, 1), (3, 1), (3, 2), (1, 2), (4, 2), (7, 2))] == [0, 1, 1, 0, 2, 3]
    assert timm_padding(3, 1, 2) == 2
    model, _ = _meta_state_dict("darknet17")
    assert model.stages[0].conv_down.conv.padding == (1, 1)
    assert model.stages[0].conv_down.conv.stride == (2, 2)


def test_drop_path_rates_match_torch_linspace():
    depths = VARIANTS["cspdarknet53"].depths
    for rate in (0.1, 0.2, 0.37):
        want = [x.tolist() for x in torch.linspace(0, rate, sum(depths)).split(depths)]
        got = drop_path_rates(rate, depths)
        assert [len(s) for s in got] == list(depths)
        # equal up to one float32 ulp (torch's vectorised kernel rounds some entries differently)
        np.testing.assert_allclose(np.concatenate(got), np.concatenate(want), rtol=2 ** -23, atol=0)
    model = torchref.create_model("darknet53", drop_path_rate=0.37)
    probs = [m.drop_prob for m in model.modules() if type(m).__name__ == "DropPath"]
    flat = torch.linspace(0, 0.37, sum(VARIANTS["darknet53"].depths)).tolist()
    assert probs == flat[1:]  # timm's exact values; the first block's rate 0 is nn.Identity


def test_leaky_relu_torch_slope_and_gradient():
    x = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y_t = torch.nn.LeakyReLU()(t)
    y_t.sum().backward()
    with jax.enable_x64(True):
        xj = jnp.asarray(x)
        np.testing.assert_array_equal(np.asarray(leaky_relu(xj)), y_t.detach().numpy())
        g = jax.grad(lambda v: leaky_relu(v).sum())(xj)
        np.testing.assert_array_equal(np.asarray(g), t.grad.numpy())  # 0.01 at 0, as torch


def test_knobs_and_train_streams():
    x = jax.random.normal(jax.random.key(1), (2, 48, 40, 3))
    model = flaxnets.create_model("darknet17", num_classes=10, drop_rate=0.5, drop_path_rate=0.3)
    plain = flaxnets.create_model("darknet17", num_classes=10)
    variables = jax.jit(model.init)(jax.random.key(0), x)
    assert variables["params"]["head"]["fc"]["kernel"].shape == (1024, 10)
    # zero_init_last (timm default): each DarkBlock's last BN scale starts at 0
    blk = variables["params"]["stages"]["2"]["blocks"]["0"]
    assert not np.any(blk["conv2"]["bn"]["scale"]) and np.all(blk["conv1"]["bn"]["scale"] == 1)

    @jax.jit
    def run(key):
        train = model.apply(variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": key})[0]
        return train, model.apply(variables, x), plain.apply(variables, x)

    (a, ev, ev_plain), (b, _, _), (c, _, _) = (run(jax.random.key(k)) for k in (0, 0, 2))
    assert ev.shape == (2, 10)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(a, c)
    np.testing.assert_array_equal(np.asarray(ev), np.asarray(ev_plain))


def test_features_only_head_and_in_chans():
    # num_classes=0: timm's fc is Identity -> pooled features; in_chans=1: one-channel stem
    model = flaxnets.create_model("darknet17", num_classes=0, in_chans=1)
    x = jnp.ones((1, 32, 32, 1))
    variables = jax.jit(model.init)(jax.random.key(0), x)
    assert "head" not in variables["params"]
    assert variables["params"]["stem"]["conv1"]["conv"]["kernel"].shape == (3, 3, 1, 32)
    assert jax.eval_shape(model.apply, variables, x).shape == (1, 1024)
    sd = _random_state_dict("darknet17", num_classes=0, in_chans=1)
    assert "head.fc.weight" not in sd and tuple(sd["stem.conv1.conv.weight"].shape) == (32, 1, 3, 3)
    back = to_torch_state_dict("darknet17", from_torch_state_dict("darknet17", sd, num_classes=0,
                                                                  in_chans=1), num_classes=0, in_chans=1)
    assert list(back) == list(sd)


def test_float64_and_bfloat16():
    x = np.random.default_rng(0).standard_normal((1, 33, 35, 3))
    model = flaxnets.create_model("darknet17", num_classes=5)
    v = jax.jit(model.init)(jax.random.key(0), jnp.asarray(x, jnp.float32))
    with jax.enable_x64(True):
        v64 = jax.tree.map(lambda a: a.astype(jnp.float64) if a.dtype == jnp.float32 else a, v)
        y = jax.jit(model.apply)(v64, jnp.asarray(x, jnp.float64))
        assert y.dtype == jnp.float64
    bf16 = flaxnets.create_model("darknet17", num_classes=5, dtype=jnp.bfloat16)
    y = jax.jit(bf16.apply)(v, jnp.asarray(x, jnp.float32))
    assert y.dtype == jnp.bfloat16 and y.shape == (1, 5)
