"""ConvNeXt: variant table and knobs, layer-by-layer parity at odd input sizes, layer scale
randomised by the harness (the residual branch contributes), the depthwise fast path,
stochastic depth (whole rows dropped with probability p, survivors scaled by 1/(1-p)),
and conversion errors naming the bad key."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import flaxnets
import torchref
from flaxnets import conv_ops
from flaxnets.convert import ConversionError, from_torch_state_dict, variable_shapes
from flaxnets.convnext import CNBlock
from flaxnets.layers import stochastic_depth
from netspecs.convnext import VARIANTS
from parity_tests.harness import build_pair, eval_parity, set_precision, torch_forward

NAMES = ("convnext_tiny", "convnext_small", "convnext_base", "convnext_large")
# torchvision's ConvNeXt_*_Weights meta "num_params" and builder stochastic_depth_prob defaults.
TORCHVISION = {"convnext_tiny": (28_589_128, 0.1), "convnext_small": (50_223_688, 0.4),
               "convnext_base": (88_591_464, 0.5), "convnext_large": (197_767_336, 0.5)}


@pytest.fixture(autouse=True, scope="module")
def _precision():
    set_precision()


@pytest.mark.parametrize("name", NAMES)
def test_variant_table_and_defaults(name):
    """Paper Sec. 3 widths/depths, torchvision's parameter counts and stochastic depth
    defaults on both sides, torchvision's schedule p * i / (blocks - 1)."""
    cfg = VARIANTS[name]
    widths = tuple(s.input_channels for s in cfg.stages)
    depths = tuple(s.num_layers for s in cfg.stages)
    assert widths == {"convnext_tiny": (96, 192, 384, 768), "convnext_small": (96, 192, 384, 768),
                      "convnext_base": (128, 256, 512, 1024),
                      "convnext_large": (192, 384, 768, 1536)}[name]
    assert depths == ((3, 3, 9, 3) if name == "convnext_tiny" else (3, 3, 27, 3))
    assert tuple(s.out_channels for s in cfg.stages) == (*widths[1:], None)
    params, p = TORCHVISION[name]
    with torch.device("meta"):
        tmodel = torchref.create_model(name)
    assert sum(t.numel() for t in tmodel.parameters()) == params
    probs = [m.stochastic_depth.p for m in tmodel.modules() if hasattr(m, "stochastic_depth")]
    n = sum(depths)
    assert probs == [p * i / (n - 1.0) for i in range(n)] and probs[-1] == pytest.approx(p)
    fmodel = flaxnets.create_model(name)
    assert fmodel.stochastic_depth_prob == p and fmodel.layer_scale == 1e-6
    shapes = variable_shapes(fmodel)["params"]
    assert sum(int(np.prod(v.shape)) for v in jax.tree_util.tree_leaves(shapes)) == params
    ls = shapes["features"]["1"]["0"]["layer_scale"]
    assert ls.shape == (widths[0], 1, 1)


def test_knobs_reach_both_sides():
    kw = {"num_classes": 10, "stochastic_depth_prob": 0.3, "layer_scale": 0.5}
    tmodel = torchref.create_model("convnext_tiny", **kw)
    assert tmodel.classifier[2].out_features == 10
    assert tmodel.features[7][2].stochastic_depth.p == pytest.approx(0.3)
    assert torch.all(tmodel.features[1][0].layer_scale == 0.5)
    fmodel = flaxnets.create_model("convnext_tiny", **kw)
    variables = jax.jit(fmodel.init)(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    assert np.all(np.asarray(variables["params"]["features"]["1"]["0"]["layer_scale"]) == 0.5)
    assert variables["params"]["classifier"]["2"]["kernel"].shape == (768, 10)
    assert "batch_stats" not in variables


@pytest.mark.parametrize("sizes", [((199, 227), (33, 47))])
def test_odd_size_layer_parity(sizes):
    """Layer by layer at 199x227 (stage maps 49x56 .. 6x7), logits also at 33x47 (last stage
    1x1): every module with parameters matched (128 outputs), float32 <= 1e-5."""
    res = eval_parity("convnext_tiny", sizes, {})
    print(res)
    layers = res["layers"]
    assert layers["compared"] == 128 and not layers["unmatched"]
    assert layers["first_bad"] is None and layers["worst_err"] <= 1e-5
    for err in res["logits"].values():
        assert err <= 1e-5


def test_harness_randomises_layer_scale_and_the_branch_contributes():
    """layer_scale starts at 1e-6 (the residual branch is ~invisible); the parity harness
    must move it far from that, so that parity checks the branch at all."""
    tmodel, _ = build_pair("convnext_tiny", {}, seed=0)
    scales = torch.cat([m.layer_scale.detach().flatten() for m in tmodel.modules() if hasattr(m, "layer_scale")])
    assert scales.numel() == 3 * 96 + 3 * 192 + 9 * 384 + 3 * 768
    assert float(scales.abs().mean()) > 0.05 and float(scales.std()) > 0.1  # N(1e-6, 0.2^2)
    assert float((scales.abs() < 1e-4).float().mean()) < 0.01
    # Block output minus its input (= layer_scale * branch) vs the input, at every block.
    tmodel.eval()
    _, outs = torch_forward(tmodel, torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)),
                            capture=True)
    ratios = []
    for s, n in ((1, 3), (3, 3), (5, 9), (7, 3)):
        prev = outs[f"features.{s - 1}"]
        for b in range(n):
            out = outs[f"features.{s}.{b}"]
            ratios.append(np.abs(out - prev).max() / np.abs(prev).max())
            prev = out
    print(f"layer_scale |mean| {float(scales.abs().mean()):.3f} std {float(scales.std()):.3f}; "
          f"min block |out - in| / |in| {min(ratios):.3g}")
    assert min(ratios) > 1e-2, min(ratios)


def test_depthwise_convs_take_the_fast_path(monkeypatch):
    calls = []
    real = conv_ops.depthwise_conv2d

    def spy(x, w, *args):
        calls.append(tuple(w.shape))
        return real(x, w, *args)

    monkeypatch.setattr(conv_ops, "depthwise_conv2d", spy)
    model = flaxnets.create_model("convnext_tiny")
    with conv_ops.use_impl("fast"):
        jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3))))
    assert calls == [(7, 7, 1, c) for c, n in ((96, 3), (192, 3), (384, 9), (768, 3)) for _ in range(n)]


def test_dtypes():
    model = flaxnets.create_model("convnext_tiny", num_classes=5)
    variables = variable_shapes(model)
    x = jax.ShapeDtypeStruct((1, 37, 45, 3), jnp.float32)
    assert jax.eval_shape(model.apply, variables, x).shape == (1, 5)
    bf16 = flaxnets.create_model("convnext_tiny", num_classes=5, dtype=jnp.bfloat16)
    assert jax.eval_shape(bf16.apply, variables, x).dtype == jnp.bfloat16
    with jax.enable_x64(True):
        v64 = jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct(s.shape, jnp.float64), variables)
        out = jax.eval_shape(model.apply, v64, jax.ShapeDtypeStruct((1, 37, 45, 3), jnp.float64))
        assert out.dtype == jnp.float64


class _Drop(nn.Module):
    p: float

    @nn.compact
    def __call__(self, x, train: bool):
        return stochastic_depth(x, self.p, train, self)


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_stochastic_depth_drops_whole_rows(p):
    """Each of n rows is all zero or all 1/(1-p); the dropped fraction is within 5 binomial
    standard deviations of p (sqrt(p(1-p)/n): 0.0021 at p=0.1, 0.0035 at p=0.5)."""
    n = 20_000
    x = jnp.ones((n, 3, 4, 5))
    y = np.asarray(_Drop(p).apply({}, x, True, rngs={"dropout": jax.random.key(0)}))
    kept = np.all(y == np.float32(1.0 / (1.0 - p)), axis=(1, 2, 3))
    dropped = np.all(y == 0.0, axis=(1, 2, 3))
    assert np.all(kept ^ dropped)
    tol = 5 * np.sqrt(p * (1 - p) / n)
    print(f"p={p}: dropped {dropped.mean():.4f} of {n} rows (tolerance {tol:.4f})")
    assert abs(dropped.mean() - p) <= tol, (dropped.mean(), p, tol)
    # Eval and p=0 are the identity; another key drops other rows.
    np.testing.assert_array_equal(np.asarray(_Drop(p).apply({}, x, False)), np.asarray(x))
    np.testing.assert_array_equal(np.asarray(_Drop(0.0).apply({}, x, True)), np.asarray(x))
    y2 = np.asarray(_Drop(p).apply({}, x, True, rngs={"dropout": jax.random.key(1)}))
    assert not np.array_equal(y, y2)


def test_cnblock_stochastic_depth_rows():
    """In a CNBlock (train mode, p=0.4), each sample's residual branch is either dropped
    (output == input) or kept and scaled by 1/(1-p) (output - input == branch / (1-p), with
    branch = eval output - input); the dropped fraction is within 5 binomial standard
    deviations of p (n=4000: 0.039)."""
    p, n = 0.4, 4000
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(0), (n, 3, 3, 8), jnp.float64)
        block = CNBlock(sd_prob=p, layer_scale=100.0)  # branch O(0.1-1), not O(1e-3)
        variables = block.init(jax.random.key(1), x)
        variables = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), variables)
        branch = np.asarray(block.apply(variables, x) - x)
        y = np.asarray(block.apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)}) - x)
    assert np.all(np.abs(branch).max(axis=(1, 2, 3)) > 1e-2)  # every row's branch is visible
    dropped = np.all(y == 0.0, axis=(1, 2, 3))
    kept = np.all(np.abs(y - branch / (1 - p)) <= 1e-12 * np.abs(branch).max(), axis=(1, 2, 3))
    assert np.all(kept ^ dropped)
    tol = 5 * np.sqrt(p * (1 - p) / n)
    print(f"CNBlock p={p}: dropped {dropped.mean():.4f} of {n} samples (tolerance {tol:.4f})")
    assert abs(dropped.mean() - p) <= tol, (dropped.mean(), p, tol)


def test_model_stochastic_depth_uses_the_dropout_stream(twin_variables):
    model = flaxnets.create_model("convnext_tiny", num_classes=10, stochastic_depth_prob=0.5)
    plain = flaxnets.create_model("convnext_tiny", num_classes=10, stochastic_depth_prob=0.0)
    x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
    variables = twin_variables("convnext_tiny", num_classes=10)

    run = jax.jit(lambda key: model.apply(variables, x, train=True, rngs={"dropout": key}))
    a, b, c = (run(jax.random.key(k)) for k in (0, 0, 2))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(a, c)
    # Eval ignores the knob: the same program as with stochastic depth off.
    np.testing.assert_array_equal(np.asarray(jax.jit(model.apply)(variables, x)),
                                  np.asarray(jax.jit(plain.apply)(variables, x)))


def test_conversion_errors_name_the_bad_key():
    with torch.device("meta"):
        sd = torchref.create_model("convnext_tiny").state_dict()
    sd = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in sd.items()}
    bad = dict(sd, **{"features.3.1.layer_scale": torch.zeros(192)})
    with pytest.raises(ConversionError, match=r"features\.3\.1\.layer_scale: expected \(192, 1, 1\)"):
        from_torch_state_dict("convnext_tiny", bad)
    missing = {k: v for k, v in sd.items() if k != "features.5.8.block.0.weight"}
    with pytest.raises(ConversionError, match=r"missing 1 torch keys: features\.5\.8\.block\.0\.weight"):
        from_torch_state_dict("convnext_tiny", missing)
    variables = from_torch_state_dict("convnext_tiny", sd)
    assert variables["params"]["features"]["5"]["8"]["layer_scale"].shape == (384, 1, 1)
    assert variables["params"]["features"]["5"]["8"]["block"]["0"]["kernel"].shape == (7, 7, 1, 384)
