"""MaxViT: input-size rules, builder knobs, the stochastic-depth schedule, the relative position
index buffers and their strict conversion (torchvision/models/maxvit.py semantics)."""
from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import flaxnets
import torchref
from flaxnets.convert import ConversionError, derived_buffers, from_torch_state_dict, layout, to_torch_state_dict
from flaxnets.maxvit import MaxVit
from netspecs.maxvit import (VARIANTS, MaxVitConfig, block_grid_sizes, relative_position_index,
                             stochastic_depth_probs)
from torchref.maxvit import MaxVit as TorchMaxVit

TINY = MaxVitConfig(stem_channels=8, block_channels=(8, 16), block_layers=(1, 2), head_dim=4,
                    stochastic_depth_prob=0.5, partition_size=2)


def _meta_state_dict(**kwargs):
    with torch.device("meta"):
        return torchref.create_model("maxvit_t", **kwargs).state_dict()


def test_relative_position_index_formula():
    """index[i, j] = (dy + s - 1) * (2s - 1) + (dx + s - 1) for tokens i, j in row-major order."""
    for s in (1, 2, 3, 7):
        got = relative_position_index(s, s)
        assert got.dtype == np.int64 and got.shape == (s * s, s * s)
        want = np.array([[(i // s - j // s + s - 1) * (2 * s - 1) + (i % s - j % s + s - 1)
                          for j in range(s * s)] for i in range(s * s)])
        np.testing.assert_array_equal(got, want)
    assert relative_position_index(7, 7).max() == 13 * 13 - 1


@pytest.mark.parametrize("size", [(224, 224), (221, 223), (448, 446)])
def test_valid_input_sizes(size):
    model = flaxnets.create_model("maxvit_t", input_size=size)
    assert model.default_input_size == size
    grids = block_grid_sizes(size, 4)
    k = grids[-1][0] // 7
    assert grids == [(56 * k, 56 * k), (28 * k, 28 * k), (14 * k, 14 * k), (7 * k, 7 * k)]
    with torch.device("meta"):
        TorchMaxVit(VARIANTS["maxvit_t"], size)


@pytest.mark.parametrize("size, match", [
    ((200, 200), "not divisible by partition size 7"),   # torchvision's own check
    ((220, 224), "not divisible by partition size 7"),
    ((224, 448), "grid-attention sequences of 98 tokens"),  # torchvision fails in forward
])
def test_bad_input_size_raises_on_both_sides(size, match):
    with pytest.raises(ValueError, match=match):
        flaxnets.create_model("maxvit_t", input_size=size)
    with pytest.raises(ValueError, match=match):
        with torch.device("meta"):
            torchref.create_model("maxvit_t", input_size=size)


def test_input_shape_must_match_input_size():
    model = flaxnets.create_model("maxvit_t", num_classes=10)
    shape = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3))))
    x = jnp.zeros((1, 221, 223, 3))
    with pytest.raises(ValueError, match=r"input_size \(224, 224\) takes NHWC input \(N, 224, 224, 3\)"):
        jax.eval_shape(lambda: model.apply(shape, x))
    with pytest.raises(ValueError, match="NHWC"):
        jax.eval_shape(lambda: model.apply(shape, jnp.zeros((1, 3, 224, 224))))


def test_knobs_change_layout_as_torchvision():
    """num_classes, partition_size, squeeze/expansion/mlp ratios: Flax layout == torchref's."""
    kw = dict(num_classes=10, partition_size=2, input_size=(64, 64), squeeze_ratio=0.5,
              expansion_ratio=2, mlp_ratio=3)
    sd = _meta_state_dict(**kw)
    table = {k: leaf.torch_shape for k, leaf in layout("maxvit_t", **kw).items()}
    bufs = derived_buffers(flaxnets.create_model("maxvit_t", **kw))
    assert set(table) | set(bufs) == set(sd) and not set(table) & set(bufs)
    for k, v in sd.items():
        assert tuple(v.shape) == tuple(table.get(k, bufs.get(k, np.empty(0)).shape)), k
    pre = "blocks.1.layers.0.layers."
    assert sd["classifier.5.weight"].shape == (10, 512)
    assert sd[pre + "window_attention.attn_layer.1.relative_position_bias_table"].shape == (9, 4)
    assert bufs[pre + "grid_attention.attn_layer.1.relative_position_index"].shape == (4, 4)
    assert sd[pre + "MBconv.layers.conv_a.0.weight"].shape == (256, 64, 1, 1)        # 128 * 2
    assert sd[pre + "MBconv.layers.squeeze_excitation.fc1.weight"].shape == (64, 256, 1, 1)  # 128 * 0.5
    assert sd[pre + "grid_attention.mlp_layer.1.weight"].shape == (384, 128)          # 128 * 3
    assert sum(v.numel() for k, v in _meta_state_dict().items()
               if not k.endswith(("running_mean", "running_var", "num_batches_tracked",
                                  "relative_position_index"))) == 30_919_624  # torchvision's num_params


def test_stochastic_depth_schedule():
    """np.linspace(0, p, 11) over the 11 layers, as torchvision; torchref carries the values."""
    probs = stochastic_depth_probs(VARIANTS["maxvit_t"], 0.2)
    assert [len(p) for p in probs] == [2, 2, 5, 2]
    assert [p for b in probs for p in b] == np.linspace(0, 0.2, 11).tolist()
    with torch.device("meta"):
        model = torchref.create_model("maxvit_t", stochastic_depth_prob=0.3)
    got = [m.p for n, m in model.named_modules() if n.endswith("window_attention.stochastic_dropout")]
    assert got == np.linspace(0, 0.3, 11).tolist()


def test_stochastic_depth_stream_and_tiny_parity():
    """A tiny config: Flax matches torchref in eval and in train with stochastic depth off;
    with it on, train mode needs the "dropout" stream and is deterministic per key."""
    tmodel = TorchMaxVit(TINY, (16, 16), num_classes=5).double()
    fmodel = MaxVit(TINY, (16, 16), num_classes=5)
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with jax.enable_x64(True):
        xn = jnp.asarray(x.numpy().transpose(0, 2, 3, 1))
        shapes = jax.eval_shape(lambda: fmodel.init(jax.random.key(0), xn))
        flat_shapes = {k: leaf.torch_shape for k, leaf in _tiny_layout(shapes).items()}
        sd = tmodel.state_dict()
        assert {k for k in sd if not k.endswith("relative_position_index")} == set(flat_shapes)
        variables = _tiny_from_torch(sd, shapes)
        tmodel.eval()
        err = np.abs(np.asarray(fmodel.apply(variables, xn)) - tmodel(x).detach().numpy()).max()
        assert err < 1e-14, err
        key = jax.random.key(1)
        run = jax.jit(lambda k: fmodel.apply(variables, xn, train=True, mutable=["batch_stats"],
                                             rngs={"dropout": k})[0])
        a, b, c = run(key), run(key), run(jax.random.key(2))
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert not np.allclose(a, c)
        with pytest.raises(flax.errors.InvalidRngError):
            jax.eval_shape(lambda: fmodel.apply(variables, xn, train=True, mutable=["batch_stats"]))


def _tiny_layout(shapes):
    from flaxnets.convert import COLLECTIONS, Leaf, _flatten, _torch_shape, torch_key
    return {torch_key(col, path): Leaf(col, path, tuple(s.shape), _torch_shape(path, s.shape), s.dtype)
            for col in COLLECTIONS for path, s in _flatten(shapes.get(col, {})).items()}


def _tiny_from_torch(sd, shapes):
    from flaxnets.convert import _unflatten
    out = {"params": {}, "batch_stats": {}}
    for key, leaf in _tiny_layout(shapes).items():
        a = leaf.to_flax_layout(sd[key].numpy())
        out[leaf.collection][leaf.path] = jnp.asarray(a.astype(np.int32) if a.dtype == np.int64 else a)
    return {k: _unflatten(v) for k, v in out.items()}


@pytest.fixture(scope="module")
def maxvit_state_dict():
    torch.manual_seed(0)
    return torchref.create_model("maxvit_t", num_classes=10).state_dict()


def test_buffers_round_trip(maxvit_state_dict):
    sd = maxvit_state_dict
    variables = from_torch_state_dict("maxvit_t", sd, num_classes=10)
    back = to_torch_state_dict("maxvit_t", variables, num_classes=10)
    assert list(back) == list(sd)
    idx = [k for k in sd if k.endswith("relative_position_index")]
    assert len(idx) == 22  # 11 layers x (window, grid)
    for k in idx:
        assert back[k].dtype == torch.int64 and torch.equal(back[k], sd[k])


def test_wrong_buffer_values_rejected(maxvit_state_dict):
    sd = dict(maxvit_state_dict)
    key = "blocks.2.layers.3.layers.grid_attention.attn_layer.1.relative_position_index"
    sd[key] = sd[key].flip(0)
    with pytest.raises(ConversionError, match=key.replace(".", r"\.")) as e:
        from_torch_state_dict("maxvit_t", sd, num_classes=10)
    assert e.value.mismatched == [key]


def test_missing_or_misshaped_buffer_rejected(maxvit_state_dict):
    key = "blocks.0.layers.1.layers.window_attention.attn_layer.1.relative_position_index"
    sd = {k: v for k, v in maxvit_state_dict.items() if k != key}
    with pytest.raises(ConversionError, match="missing 1 torch keys") as e:
        from_torch_state_dict("maxvit_t", sd, num_classes=10)
    assert e.value.missing == [key]
    sd[key] = torch.zeros(7, 7, dtype=torch.int64)
    with pytest.raises(ConversionError, match="shape mismatches") as e:
        from_torch_state_dict("maxvit_t", sd, num_classes=10)
    assert e.value.mismatched == [key]
    # A checkpoint for another partition size does not load.
    with pytest.raises(ConversionError):
        from_torch_state_dict("maxvit_t", maxvit_state_dict, num_classes=10, partition_size=2,
                              input_size=(64, 64))
