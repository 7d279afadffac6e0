"""semnasnet_* (timm's MnasNet-A1): the block table against timm's figures, knobs, layout.

The expected numbers were read off timm 1.0.31 (`timm.create_model(name)`): parameter counts,
and per block of semnasnet_100 (in, out, depthwise width, kernel, stride, SE width, skip).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import flaxnets
import torchref
from flaxnets.convert import ConversionError, from_torch_state_dict
from netspecs.semnasnet import VARIANTS, make_divisible, round_channels

NAMES = ["semnasnet_050", "semnasnet_075", "semnasnet_100", "semnasnet_140"]
TIMM_PARAMS = {"semnasnet_050": 2_082_006, "semnasnet_075": 2_912_278,
               "semnasnet_100": 3_887_038, "semnasnet_140": 6_105_992}
TIMM_STEM_HEAD = {"semnasnet_050": (16, 160), "semnasnet_075": (24, 240),
                  "semnasnet_100": (32, 320), "semnasnet_140": (48, 448)}
# timm semnasnet_100: (in, out, depthwise width, kernel, stride, SE conv_reduce width, skip)
TIMM_100 = [
    (32, 16, 32, 3, 1, 0, False),
    (16, 24, 96, 3, 2, 0, False), (24, 24, 144, 3, 1, 0, True),
    (24, 40, 72, 5, 2, 6, False), (40, 40, 120, 5, 1, 10, True), (40, 40, 120, 5, 1, 10, True),
    (40, 80, 240, 3, 2, 0, False), (80, 80, 480, 3, 1, 0, True), (80, 80, 480, 3, 1, 0, True),
    (80, 80, 480, 3, 1, 0, True),
    (80, 112, 480, 3, 1, 20, False), (112, 112, 672, 3, 1, 28, True),
    (112, 160, 672, 5, 2, 28, False), (160, 160, 960, 5, 1, 40, True), (160, 160, 960, 5, 1, 40, True),
    (160, 320, 960, 3, 1, 0, False),
]


def _meta(name, **kw):
    with torch.device("meta"):
        return torchref.create_model(name, **kw)


def test_registered_on_both_sides():
    for n in NAMES:
        assert n in flaxnets.MODELS and n in torchref.MODELS


def test_rounding_rules():
    assert [round_channels(32, m) for m in (0.5, 0.75, 1.0, 1.4)] == [16, 24, 32, 48]
    assert make_divisible(112 * 1.4) == 160 and make_divisible(13) == 16 and make_divisible(11) == 16


def test_blocks_match_timm_semnasnet_100():
    blocks = [b for stage in VARIANTS["semnasnet_100"].blocks() for b in stage]
    got = [(b.in_channels, b.out_channels, b.mid_channels, b.kernel, b.stride, b.se_channels,
            b.has_skip) for b in blocks]
    assert got == TIMM_100
    assert [b.kind for b in blocks] == ["ds"] + ["ir"] * 15


@pytest.mark.parametrize("name", NAMES)
def test_param_counts_and_widths_match_timm(name):
    m = _meta(name)
    assert sum(p.numel() for p in m.parameters()) == TIMM_PARAMS[name]
    stem, head_in = TIMM_STEM_HEAD[name]
    assert m.conv_stem.out_channels == stem and m.conv_head.in_channels == head_in
    assert m.conv_head.out_channels == 1280  # timm does not scale num_features


def test_state_dict_layout_and_knobs():
    sd = _meta("semnasnet_100", num_classes=10).state_dict()
    keys = list(sd)
    assert keys[:7] == ["conv_stem.weight", "bn1.weight", "bn1.bias", "bn1.running_mean",
                        "bn1.running_var", "bn1.num_batches_tracked", "blocks.0.0.conv_dw.weight"]
    assert keys[-2:] == ["classifier.weight", "classifier.bias"]
    assert "blocks.2.0.se.conv_reduce.weight" in sd and "blocks.1.0.se.conv_reduce.weight" not in sd
    assert sd["classifier.weight"].shape == (10, 1280)
    assert sum(v.numel() for k, v in sd.items() if not k.endswith(("running_mean", "running_var",
                                                                   "num_batches_tracked"))) == 2_618_848


def test_drop_path_schedule():
    blocks = [b for stage in VARIANTS["semnasnet_100"].blocks(0.2) for b in stage]
    assert [b.drop_path for b in blocks] == pytest.approx([0.2 * i / 16 for i in range(16)])
    m = _meta("semnasnet_100", drop_path_rate=0.2)
    assert m.blocks[5][2].drop_path.drop_prob == pytest.approx(0.2 * 14 / 16)
    assert isinstance(m.blocks[0][0].drop_path, torch.nn.Identity)  # rate 0 for block 0


def test_flax_dropout_knobs_act_in_train_mode_only(twin_variables):
    model = flaxnets.create_model("semnasnet_050", num_classes=5, drop_rate=0.5, drop_path_rate=0.3)
    x = jax.random.normal(jax.random.key(1), (2, 64, 64, 3))
    v = twin_variables("semnasnet_050", num_classes=5)
    # Jitted: one compile per program costs less CPU than eager op-by-op dispatch.
    # Eval: the knobs are inert, the same output as the model without them.
    plain = flaxnets.create_model("semnasnet_050", num_classes=5)
    np.testing.assert_array_equal(np.asarray(jax.jit(lambda v: model.apply(v, x, train=False))(v)),
                                  np.asarray(jax.jit(lambda v: plain.apply(v, x, train=False))(v)))
    train = jax.jit(lambda v, key: model.apply(v, x, train=True, mutable=["batch_stats"], rngs={"dropout": key})[0])
    t1, t2 = train(v, jax.random.key(2)), train(v, jax.random.key(3))
    assert float(jnp.abs(t1 - t2).max()) > 1e-3


def test_conversion_error_names_the_bad_key():
    sd = torchref.create_model("semnasnet_050").state_dict()
    sd["blocks.2.1.se.conv_expand.weight"] = torch.zeros(72, 5, 1, 1)
    with pytest.raises(ConversionError, match=r"blocks\.2\.1\.se\.conv_expand\.weight"):
        from_torch_state_dict("semnasnet_050", sd)
    del sd["blocks.2.1.se.conv_expand.weight"]
    with pytest.raises(ConversionError, match=r"missing 1 torch keys: blocks\.2\.1\.se\.conv_expand\.weight"):
        from_torch_state_dict("semnasnet_050", sd)
