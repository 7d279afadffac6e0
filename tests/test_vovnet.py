"""VoVNet V1/V2 in timm's layout: names, sizes, knobs (num_classes, drop_rate, drop_path_rate),
the drop-path schedule, the eSE gate's torch gradient, and strict bit-exact conversion of a
timm-layout state_dict both ways."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import flaxnets
import torchref
from flaxnets.convert import ConversionError, from_torch_state_dict, to_torch_state_dict
from netspecs.vovnet import VARIANTS, drop_path_rates, linspace_f32
from parity_tests.harness import randomize_

# Parameter counts and state_dict sizes of timm 1.0.31's models (timm.create_model(name)).
TIMM = {"vovnet39a": (22_600_296, 236), "vovnet57a": (36_640_296, 344),
        "ese_vovnet19b_dw": (6_543_080, 162), "ese_vovnet39b": (24_568_936, 244),
        "ese_vovnet57b": (38_608_936, 352), "ese_vovnet99b": (63_199_272, 604)}


def _meta(name, **kw):
    with torch.device("meta"):
        return torchref.create_model(name, **kw)


def test_names():
    assert set(VARIANTS) == set(TIMM)
    for name in TIMM:
        assert name in flaxnets.MODELS and name in torchref.MODELS


@pytest.mark.parametrize("name", sorted(TIMM))
def test_sizes_match_timm(name):
    m = _meta(name)
    assert (sum(p.numel() for p in m.parameters()), len(m.state_dict())) == TIMM[name]


def test_head_knobs():
    sd = _meta("ese_vovnet39b", num_classes=0).state_dict()
    assert not any(k.startswith("head.fc") for k in sd)
    sd = _meta("ese_vovnet39b", num_classes=7).state_dict()
    assert tuple(sd["head.fc.weight"].shape) == (7, 1024)
    model = flaxnets.create_model("ese_vovnet19b_dw", num_classes=0)
    shapes = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
    assert shapes[0].shape == (1, 1024) and "head" not in shapes[1]["params"]


@pytest.mark.parametrize("num", [1, 4, 6, 10, 16])
def test_linspace_within_one_ulp_of_torch(num):
    for rate in (0.05, 0.1, 0.2, 0.3):
        ours = np.float32(linspace_f32(rate, num))
        ref = torch.linspace(0, rate, num).numpy()
        assert np.max(np.abs(ours - ref) / np.spacing(np.maximum(np.abs(ref), np.float32(rate)))) <= 1
        assert ours[0] == 0 and (num == 1 or ours[-1] == np.float32(rate))


@pytest.mark.parametrize("name", ["vovnet39a", "ese_vovnet99b"])
def test_drop_path_schedule(name):
    """One rate per OSA module, linear from 0 to the rate over the network (timm's
    calculate_drop_path_rates); torchref's DropPath modules carry the same rates."""
    cfg = VARIANTS[name]
    rates = drop_path_rates(cfg, 0.2)
    assert tuple(len(r) for r in rates) == cfg.block_per_stage
    flat = [r for stage in rates for r in stage]
    n = len(flat)
    np.testing.assert_allclose(flat, [0.2 * i / (n - 1) for i in range(n)], rtol=1e-6, atol=0)
    model = torchref.create_model(name, drop_path_rate=0.2)
    got = [(p, m.drop_prob) for p, m in model.named_modules() if type(m).__name__ == "DropPath"]
    want = [f"stages.{i}.blocks.{j}.drop_path" for i, st in enumerate(rates)
            for j, r in enumerate(st) if r > 0]
    assert [p for p, _ in got] == want
    np.testing.assert_allclose([r for _, r in got], [r for r in flat if r > 0], rtol=2e-7)


def test_dropout_and_drop_path_streams(twin_variables):
    """drop_rate and drop_path_rate act in train mode only, through the "dropout" stream; timm
    drops paths of non-residual modules too (vovnet39a has no residuals)."""
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
    plain = flaxnets.create_model("vovnet39a", num_classes=5)
    variables = twin_variables("vovnet39a", num_classes=5)
    ev_plain = jax.jit(plain.apply)(variables, x)
    for knobs in ({"drop_path_rate": 0.5}, {"drop_rate": 0.5}):
        model = flaxnets.create_model("vovnet39a", num_classes=5, **knobs)

        @jax.jit
        def run(key):
            return model.apply(variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": key})[0]

        a, b, c = (run(jax.random.key(k)) for k in (0, 0, 3))
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert not np.allclose(a, c), knobs
        np.testing.assert_array_equal(np.asarray(jax.jit(model.apply)(variables, x)), np.asarray(ev_plain))


def test_ese_gate_is_torch_hardsigmoid_float64():
    """eSE: x * hardsigmoid(fc(mean(x))); output and input/weight gradients match torch's
    nn.Hardsigmoid in float64 to rounding, including its float32(1/6) slope."""
    from flaxnets.vovnet import EffectiveSEModule
    from torchref.vovnet import EffectiveSEModule as TorchESE

    torch.manual_seed(0)
    t = TorchESE(6).double()
    with torch.no_grad():
        t.fc.weight.mul_(30.0)  # spread the gate's input over both clipped ends and the ramp
    x = torch.randn(2, 6, 5, 4, dtype=torch.float64, requires_grad=True)
    y = t(x)
    w = torch.randn_like(y)
    (y * w).sum().backward()
    with jax.enable_x64(True):
        params = {"fc": {"kernel": jnp.asarray(t.fc.weight.detach().numpy().transpose(2, 3, 1, 0)),
                         "bias": jnp.asarray(t.fc.bias.detach().numpy())}}
        xj = jnp.asarray(x.detach().numpy().transpose(0, 2, 3, 1))
        wj = jnp.asarray(w.numpy().transpose(0, 2, 3, 1))
        f = lambda p, v: jnp.sum(EffectiveSEModule().apply({"params": p}, v) * wj)
        out = EffectiveSEModule().apply({"params": params}, xj)
        gp, gx = jax.grad(f, argnums=(0, 1))(params, xj)
    s = (t.fc(x.mean((2, 3), keepdim=True))).detach()
    assert (s < -3).any() and (s > 3).any() and ((s > -3) & (s < 3)).any()
    np.testing.assert_allclose(np.asarray(out), y.detach().numpy().transpose(0, 2, 3, 1), rtol=0, atol=1e-15)
    np.testing.assert_allclose(np.asarray(gx), x.grad.numpy().transpose(0, 2, 3, 1), rtol=0, atol=1e-14)
    np.testing.assert_allclose(np.asarray(gp["fc"]["kernel"]),
                               t.fc.weight.grad.numpy().transpose(2, 3, 1, 0), rtol=0, atol=1e-14)


@pytest.mark.parametrize("name, kw", [("ese_vovnet19b_dw", {}), ("vovnet39a", {"num_classes": 3})])
def test_timm_state_dict_round_trip_bit_exact(name, kw):
    torch.manual_seed(0)
    model = torchref.create_model(name, **kw)
    randomize_(model, 1)
    sd = model.state_dict()
    back = to_torch_state_dict(name, from_torch_state_dict(name, sd, **kw), **kw)
    assert list(back) == list(sd)
    for k, v in sd.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v), k


def test_conversion_errors_name_the_key():
    sd = dict(_meta("ese_vovnet19b_dw").state_dict())
    sd = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in sd.items()}
    sd["stages.0.blocks.0.attn.fc.weights"] = sd.pop("stages.0.blocks.0.attn.fc.weight")
    with pytest.raises(ConversionError, match=r"stages\.0\.blocks\.0\.attn\.fc\.weight") as e:
        from_torch_state_dict("ese_vovnet19b_dw", sd)
    assert e.value.missing == ["stages.0.blocks.0.attn.fc.weight"]
    assert e.value.unexpected == ["stages.0.blocks.0.attn.fc.weights"]


def test_odd_size_eval_matches_torch():
    """A 37x45 input: stem stride 4, then three ceil-mode 3x3/2 max pools (10x12 -> 5x6 ->
    3x3 -> 1x1)."""
    name = "ese_vovnet19b_dw"
    torch.manual_seed(0)
    model = torchref.create_model(name).eval()
    randomize_(model, 1)
    x = torch.randn(2, 3, 37, 45, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = model(x).numpy()
    variables = from_torch_state_dict(name, model.state_dict())
    got = jax.jit(flaxnets.create_model(name).apply)(variables, jnp.asarray(x.numpy().transpose(0, 2, 3, 1)))
    assert np.max(np.abs(np.asarray(got) - ref)) / np.max(np.abs(ref)) <= 1e-5


def test_timm_layers_padding_and_dtype():
    """timm's get_padding (not torch-style (k-1)//2: a 2x2/2 conv pads 1), and bf16 compute
    with float32 parameters reaches the logits."""
    from flaxnets.layers import ConvNormAct, timm_padding

    assert [timm_padding(3, 2), timm_padding(2, 2), timm_padding(1, 2), timm_padding(3, 1, 2)] == [1, 1, 0, 2]
    y = jax.eval_shape(lambda: ConvNormAct(4, 2, 2).init_with_output(jax.random.key(0), jnp.zeros((1, 7, 7, 3)))[0])
    assert y.shape == (1, 4, 4, 4)  # torch: Conv2d(3, 4, 2, 2, padding=1) on 7x7
    model = flaxnets.create_model("ese_vovnet19b_dw", dtype=jnp.bfloat16)
    out, variables = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
    assert out.dtype == jnp.bfloat16
    assert {v.dtype for v in jax.tree.leaves(variables["params"])} == {jnp.dtype(jnp.float32)}
