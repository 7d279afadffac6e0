"""1-D networks (`spatial_dims=1`, (N, L, C) input): docs/one_d.md's training example, the
shared layers against torch's 1-D layers, the builders' knobs and the converter."""
from __future__ import annotations

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import flaxnets
import torchref
from flaxnets import layers
from flaxnets.convert import ConversionError, from_torch_state_dict, to_torch_state_dict

DOC = (Path(__file__).resolve().parent.parent / "docs" / "one_d.md").read_text()
ONE_D_FAMILIES = ["mnasnet0_5", "semnasnet_050", "mobilenet_v2", "mobilenet_v3_small",
                  "efficientnet_b0", "efficientnet_v2_s", "resnet18", "resnext50_32x4d"]


def _block(marker: str) -> str:
    m = re.search(re.escape(f"<!-- {marker} -->") + r"\s*```\w*\n(.*?)```", DOC, re.S)
    assert m, f"docs/one_d.md has no block after <!-- {marker} -->"
    return m.group(1)


@pytest.mark.large  # ~60-100 s on 2 cores; the 1-D parity (test_eval_1d/test_train_1d) runs by default
def test_training_example_learns_sinusoid_frequencies():
    """docs/one_d.md: a 1-D mnasnet0_5 trained a few Adam steps on synthetic sinusoids."""
    ns: dict = {}
    exec(compile(_block("example:one_d"), "docs/one_d.md", "exec"), ns)
    losses, accuracy = ns["losses"], ns["accuracy"]
    print(f"loss {losses[0]:.3f} -> {np.mean(losses[-5:]):.3f}, accuracy {accuracy:.3f}")
    assert np.mean(losses[-5:]) < 0.5 * losses[0], losses
    assert accuracy > 0.7, accuracy  # chance: 1/3
    stats = ns["batch_stats"]["layers"]["1"]  # the stem BatchNorm1d's statistics were updated
    assert int(stats["num_batches_tracked"]) == 60


# ----------------------------------------------------------------------------- layers vs torch
def _t(x):  # NLC -> NCL torch
    return torch.from_numpy(np.asarray(x).transpose(0, 2, 1).copy())


def _rel(got, ref):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    return float(np.abs(got - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("k,stride,groups,dilation", [(3, 1, 1, 1), (5, 2, 6, 1), (3, 2, 3, 2), (7, 3, 1, 1)])
def test_conv2d_on_1d_input_is_conv1d(k, stride, groups, dilation):
    x = np.random.default_rng(0).standard_normal((2, 23, 6)).astype(np.float32)
    conv = layers.Conv2d(12, k, stride, dilation=dilation, groups=groups, use_bias=True)
    v = conv.init(jax.random.key(0), jnp.asarray(x))
    assert v["params"]["kernel"].shape == (k, 6 // groups, 12)
    ref = torch.nn.Conv1d(6, 12, k, stride, (k - 1) // 2 * dilation, dilation, groups)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(np.asarray(v["params"]["kernel"]).T.copy()))
        ref.bias.copy_(torch.from_numpy(np.array(v["params"]["bias"])))
        want = ref(_t(x)).numpy().transpose(0, 2, 1)
    err = _rel(conv.apply(v, jnp.asarray(x)), want)
    assert err < 1e-6, err


def test_pools_on_1d_input_match_torch():
    x = np.random.default_rng(1).standard_normal((2, 17, 4)).astype(np.float32)
    xt = _t(x)
    cases = [
        (layers.max_pool2d(jnp.asarray(x), 3, 2, 1, ceil_mode=True),
         torch.nn.MaxPool1d(3, 2, 1, ceil_mode=True)(xt)),
        (layers.avg_pool2d(jnp.asarray(x), 3, 2, 1, ceil_mode=True, count_include_pad=False),
         torch.nn.AvgPool1d(3, 2, 1, ceil_mode=True, count_include_pad=False)(xt)),
        (layers.avg_pool2d(jnp.asarray(x), 4, 3, 2), torch.nn.AvgPool1d(4, 3, 2)(xt)),
        (layers.adaptive_avg_pool2d(jnp.asarray(x), 5), torch.nn.AdaptiveAvgPool1d(5)(xt)),
        (layers.adaptive_avg_pool2d(jnp.asarray(x), 1), torch.nn.AdaptiveAvgPool1d(1)(xt)),
        (layers.spatial_mean(jnp.asarray(x)), xt.mean(2)),
    ]
    for got, want in cases:
        want = want.numpy()
        want = want.transpose(0, 2, 1) if want.ndim == 3 else want
        assert _rel(got, want) < 1e-6


def test_batchnorm_and_se_on_1d_input_match_torch():
    x = np.random.default_rng(2).standard_normal((3, 11, 8))
    with jax.enable_x64(True):
        bn = layers.BatchNorm2d(param_dtype=jnp.float64)
        v = bn.init(jax.random.key(0), jnp.asarray(x))
        y, upd = bn.apply(v, jnp.asarray(x), train=True, mutable=["batch_stats"])
        ref = torch.nn.BatchNorm1d(8).double().train()
        want = ref(_t(x)).detach().numpy().transpose(0, 2, 1)
        assert _rel(y, want) < 1e-12
        assert _rel(upd["batch_stats"]["var"], ref.running_var.numpy()) < 1e-12
        se = layers.SqueezeExcitation(4)
        v = se.init(jax.random.key(1), jnp.asarray(x))
        tse = torchref.layers.SqueezeExcitation(8, 4, spatial_dims=1).double()
        with torch.no_grad():
            for fc in ("fc1", "fc2"):
                getattr(tse, fc).weight.copy_(torch.from_numpy(np.asarray(v["params"][fc]["kernel"]).T.copy()))
                getattr(tse, fc).bias.copy_(torch.from_numpy(np.array(v["params"][fc]["bias"])))
            want = tse(_t(x)).numpy().transpose(0, 2, 1)
        assert _rel(se.apply(v, jnp.asarray(x)), want) < 1e-12


# ----------------------------------------------------------------------------- builders
@pytest.mark.parametrize("name", ONE_D_FAMILIES)
def test_1d_builds_and_shapes(name):
    model = flaxnets.create_model(name, spatial_dims=1, in_channels=2, num_classes=7)
    out = jax.eval_shape(lambda: model.init_with_output(
        jax.random.key(0), jnp.zeros((3, 101, 2)), train=False)[0])
    assert out.shape == (3, 7)
    with pytest.raises(ValueError, match=r"\(N, L, C\) input with C=2"):
        jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 2)), train=False))
    with pytest.raises(ValueError, match="C=2"):
        jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 3)), train=False))


def test_2d_in_channels_knob_and_bad_spatial_dims():
    model = flaxnets.create_model("resnet18", in_channels=1, num_classes=3)
    v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 1)), train=False))
    assert v["params"]["conv1"]["kernel"].shape == (7, 7, 1, 64)
    with pytest.raises(ValueError, match="spatial_dims must be 1 or 2"):
        torchref.create_model("mnasnet0_5", spatial_dims=3)
    with pytest.raises(ValueError, match="spatial_dims must be 1 or 2"):
        jax.eval_shape(lambda: flaxnets.create_model("mnasnet0_5", spatial_dims=3).init(
            jax.random.key(0), jnp.zeros((1, 8, 8, 8, 3)), train=False))


# ----------------------------------------------------------------------------- converter
def test_converter_1d_both_ways():
    kw = dict(spatial_dims=1, in_channels=2)
    torch.manual_seed(0)
    ref = torchref.create_model("semnasnet_050", **kw)
    sd = ref.state_dict()
    assert sd["conv_stem.weight"].shape == (16, 2, 3)
    assert sd["blocks.1.0.conv_dw.weight"].shape == (48, 1, 3)
    assert sd["blocks.2.0.se.conv_reduce.weight"].shape == (4, 48, 1)
    variables = from_torch_state_dict("semnasnet_050", sd, **kw)
    kernel = np.asarray(variables["params"]["conv_stem"]["kernel"])
    assert kernel.shape == (3, 2, 16)
    np.testing.assert_array_equal(kernel, sd["conv_stem.weight"].numpy().transpose(2, 1, 0))
    back = to_torch_state_dict("semnasnet_050", variables, **kw)
    assert list(back) == list(sd)
    assert all(back[k].dtype == v.dtype and torch.equal(back[k], v) for k, v in sd.items())
    # A 2-D checkpoint for a 1-D build: every conv weight reported as a shape mismatch.
    sd2 = torchref.create_model("semnasnet_050", in_channels=2).state_dict()
    with pytest.raises(ConversionError, match=r"65 shape mismatches: blocks.0.0.conv_dw.weight: "
                                              r"expected \(16, 1, 3\), got \(16, 1, 3, 3\)") as e:
        from_torch_state_dict("semnasnet_050", sd2, **kw)
    assert "conv_stem.weight" in e.value.mismatched


def test_1d_model_runs_like_torch_after_conversion():
    """A converted 1-D mnasnet0_5 (eval, float32) against its torch twin at an odd length."""
    kw = dict(spatial_dims=1, in_channels=2, num_classes=5)
    torch.manual_seed(0)
    ref = torchref.create_model("mnasnet0_5", **kw).eval()
    x = torch.randn(2, 2, 77)
    with torch.no_grad():
        want = ref(x).numpy()
    variables = from_torch_state_dict("mnasnet0_5", ref.state_dict(), **kw)
    with jax.default_matmul_precision("highest"):
        got = flaxnets.create_model("mnasnet0_5", **kw).apply(
            variables, jnp.asarray(x.numpy().transpose(0, 2, 1)), train=False)
    assert _rel(got, want) < 1e-5
