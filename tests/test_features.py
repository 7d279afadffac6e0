"""Backbone interface (flaxnets.features): feature_info, features_only / out_indices,
num_classes=0, the converter's backbone mode and variable slicing. Numerical parity of the
maps against torch is in parity_tests (test_features*, and every eval parity run)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import flaxnets
import torchref
from flaxnets.convert import ConversionError, layout, variable_shapes


@pytest.fixture(scope="module")
def resnet18_sd():
    torch.manual_seed(0)
    return torchref.create_model("resnet18").state_dict()


def test_feature_info_resnet():
    assert flaxnets.feature_info("resnet50") == [
        {"module": "layer1", "num_chs": 256, "reduction": 4},
        {"module": "layer2", "num_chs": 512, "reduction": 8},
        {"module": "layer3", "num_chs": 1024, "reduction": 16},
        {"module": "layer4", "num_chs": 2048, "reduction": 32},
    ]
    # knobs change the trunk: dilation keeps the last stage at reduction 16
    info = flaxnets.feature_info("resnet50", replace_stride_with_dilation=(False, False, True))
    assert [d["reduction"] for d in info] == [4, 8, 16, 16]


@pytest.mark.parametrize("name,modules", [
    ("regnet_x_400mf", ["trunk_output.block1", "trunk_output.block2", "trunk_output.block3", "trunk_output.block4"]),
    ("mobilenet_v3_large", ["features.1", "features.3", "features.6", "features.12", "features.16"]),
    ("efficientnet_b0", ["features.1", "features.2", "features.3", "features.5", "features.8"]),
    ("inception_v3", ["Conv2d_2b_3x3", "Conv2d_4a_3x3", "Mixed_5d", "Mixed_6e", "Mixed_7c"]),
    ("swin_t", ["features.1", "features.3", "features.5", "features.7"]),
    ("convnext_tiny", ["features.1", "features.3", "features.5", "features.7"]),
    # timm-layout families: timm's features_only=True module names (checked through timm 1.0.31)
    ("ese_vovnet19b_dw", ["stem.1", "stages.0", "stages.1", "stages.2", "stages.3"]),
    ("darknet53", ["stem.conv1", "stages.0", "stages.1", "stages.2", "stages.3", "stages.4"]),
    ("semnasnet_100", ["blocks.0", "blocks.1", "blocks.2", "blocks.4", "blocks.6"]),
])
def test_feature_info_paths(name, modules):
    info = flaxnets.feature_info(name)
    assert [d["module"] for d in info] == modules
    reductions = [d["reduction"] for d in info]
    assert reductions == sorted(reductions) and len(set(reductions)) == len(reductions)


def test_features_model_shapes_and_variables():
    x = jnp.zeros((2, 97, 131, 3))
    model = flaxnets.create_model("resnet18", features_only=True, out_indices=(-3, -2))
    assert model.feature_paths == ("layer2", "layer3")
    variables = jax.jit(model.init)(jax.random.key(0), x)
    assert sorted(variables["params"]) == ["bn1", "conv1", "layer1", "layer2", "layer3"]
    feats = jax.jit(model.apply)(variables, x)
    assert [f.shape for f in feats] == [(2, 13, 17, 128), (2, 7, 9, 256)]
    out, new = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
    assert [f.shape for f in out] == [(2, 13, 17, 128), (2, 7, 9, 256)]
    moved = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
                         variables["batch_stats"]["layer3"], new["batch_stats"]["layer3"])
    assert any(jax.tree.leaves(moved))


def test_features_equal_full_model_intermediates():
    x = jax.random.normal(jax.random.key(1), (2, 64, 80, 3))
    full = flaxnets.create_model("regnet_x_400mf")
    v = jax.jit(full.init)(jax.random.key(0), x)
    _, st = jax.jit(lambda v, x: full.apply(v, x, capture_intermediates=True, mutable=["intermediates"]))(v, x)
    fm = flaxnets.create_model("regnet_x_400mf", features_only=True)
    feats = jax.jit(fm.apply)(flaxnets.features.slice_variables(v, "regnet_x_400mf", features_only=True), x)
    for path, f in zip(fm.feature_paths, feats):
        node = st["intermediates"]
        for k in path.split("."):
            node = node[k]
        np.testing.assert_array_equal(np.asarray(f), np.asarray(node["__call__"][0]))


def test_feature_info_matches_outputs():
    for name in ("mobilenet_v2", "densenet121", "shufflenet_v2_x1_0", "vgg11"):
        info = flaxnets.feature_info(name)
        model = flaxnets.create_model(name, features_only=True)
        outs = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x)[0],
                              jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32))
        assert [o.shape[-1] for o in outs] == [d["num_chs"] for d in info], name
        assert [o.shape[1] for o in outs] == [224 // d["reduction"] for d in info], name


def test_vit_features_are_maps():
    model = flaxnets.create_model("vit_b_32", features_only=True, out_indices=(0, -1))
    outs = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x)[0],
                          jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32))
    assert [o.shape for o in outs] == [(2, 7, 7, 768)] * 2
    assert model.feature_paths == ("encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_11")


def test_one_d_features():
    model = flaxnets.create_model("resnet18", features_only=True, spatial_dims=1, in_channels=2)
    outs = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x)[0],
                          jax.ShapeDtypeStruct((2, 256, 2), jnp.float32))
    assert [o.shape for o in outs] == [(2, 64, 64), (2, 32, 128), (2, 16, 256), (2, 8, 512)]


def test_out_indices_errors():
    with pytest.raises(ValueError, match=r"out_indices entry 4 is not in \[-4, 4\)"):
        flaxnets.create_model("resnet18", features_only=True, out_indices=(1, 4))
    with pytest.raises(ValueError, match="twice"):
        flaxnets.create_model("resnet18", features_only=True, out_indices=(1, -3))
    with pytest.raises(TypeError, match="needs features_only=True"):
        flaxnets.create_model("resnet18", out_indices=(1,))
    with pytest.raises(TypeError, match="sequence"):
        flaxnets.create_model("resnet18", features_only=True, out_indices=2)


def test_pooled_model():
    model = flaxnets.create_model("resnet18", num_classes=0)
    x = jnp.zeros((3, 64, 64, 3))
    v = jax.jit(model.init)(jax.random.key(0), x)
    assert "fc" not in v["params"]
    assert jax.jit(model.apply)(v, x).shape == (3, 512)
    assert set(layout("resnet18")) - set(layout("resnet18", num_classes=0)) == {"fc.weight", "fc.bias"}
    with pytest.raises(ValueError, match="aux_logits=True"):
        flaxnets.create_model("googlenet", num_classes=0, aux_logits=True)
    g = flaxnets.create_model("googlenet", num_classes=0)  # the auxiliary heads are left out
    assert not any(k.startswith("aux") for k in layout("googlenet", num_classes=0))
    assert g.aux_logits is False


def test_convert_backbone_from_full_checkpoint(resnet18_sd):
    v, left = flaxnets.from_torch_state_dict("resnet18", resnet18_sd, features_only=True,
                                             out_indices=(0, 1), return_left_out=True)
    assert left == [k for k in resnet18_sd if k.startswith(("layer3.", "layer4.", "fc."))]
    assert sorted(v["params"]) == ["bn1", "conv1", "layer1", "layer2"]
    np.testing.assert_array_equal(np.asarray(v["params"]["conv1"]["kernel"]),
                                  resnet18_sd["conv1.weight"].numpy().transpose(2, 3, 1, 0))
    # back to torch: the backbone's keys in torchvision's order
    back = flaxnets.to_torch_state_dict("resnet18", v, features_only=True, out_indices=(0, 1))
    assert list(back) == [k for k in resnet18_sd if k not in set(left)]
    # a backbone-only checkpoint converts too (nothing left out)
    v2, left2 = flaxnets.from_torch_state_dict("resnet18", back, features_only=True, out_indices=(0, 1),
                                               return_left_out=True)
    assert left2 == []
    # a head of another size is left out all the same (fine-tuned checkpoints)
    sd10 = dict(resnet18_sd, **{"fc.weight": torch.zeros(10, 512), "fc.bias": torch.zeros(10)})
    _, left10 = flaxnets.from_torch_state_dict("resnet18", sd10, num_classes=0, return_left_out=True)
    assert left10 == ["fc.weight", "fc.bias"]


def test_convert_backbone_stays_strict(resnet18_sd):
    with pytest.raises(ConversionError, match="unexpected 1 torch keys: foo.weight"):
        flaxnets.from_torch_state_dict("resnet18", {**resnet18_sd, "foo.weight": torch.zeros(1)},
                                       features_only=True)
    sd = dict(resnet18_sd)
    del sd["layer1.0.conv1.weight"]
    with pytest.raises(ConversionError, match="missing 1 torch keys: layer1.0.conv1.weight"):
        flaxnets.from_torch_state_dict("resnet18", sd, features_only=True)
    sd = dict(resnet18_sd, **{"layer2.0.conv1.weight": torch.zeros(128, 64, 1, 1)})
    with pytest.raises(ConversionError, match="layer2.0.conv1.weight: expected"):
        flaxnets.from_torch_state_dict("resnet18", sd, features_only=True)
    with torch.device("meta"):
        other = torchref.create_model("resnet34").state_dict()
    with pytest.raises(ConversionError, match="unexpected"):  # a wrong model's checkpoint
        flaxnets.from_torch_state_dict("resnet18", {k: torch.zeros(v.shape) for k, v in other.items()},
                                       features_only=True)


def test_slice_variables(resnet18_sd):
    full = flaxnets.from_torch_state_dict("resnet18", resnet18_sd)
    sliced = flaxnets.features.slice_variables(full, "resnet18", features_only=True, out_indices=(2,))
    direct = flaxnets.from_torch_state_dict("resnet18", resnet18_sd, features_only=True, out_indices=(2,))
    assert jax.tree.structure(sliced) == jax.tree.structure(direct)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(sliced), jax.tree.leaves(direct)))
    pooled = flaxnets.features.slice_variables(full, "resnet18", num_classes=0)
    assert "fc" not in pooled["params"] and "layer4" in pooled["params"]
    with pytest.raises(ValueError, match="lack params/bn1/bias"):
        flaxnets.features.slice_variables({"params": {}, "batch_stats": full["batch_stats"]}, "resnet18",
                                          num_classes=0)


def test_swin_backbone_buffers():
    """Derived buffers (relative_position_index) belong to the stages a backbone computes."""
    keys = set(layout("swin_t", features_only=True, out_indices=(0,)))
    fixed = flaxnets.convert._model_buffers("swin_t", layout("swin_t", features_only=True, out_indices=(0,)),
                                            features_only=True, out_indices=(0,))
    assert fixed and all(k.startswith("features.1.") for k in fixed)
    assert all(k.startswith(("features.0.", "features.1.")) for k in keys)


def test_every_family_declares_its_backbone():
    for name in flaxnets.list_models():
        cls = type(flaxnets.MODELS.create(name))
        assert getattr(cls, "feature_modules", None), f"{name}: {cls.__name__} has no feature_modules"
        assert isinstance(getattr(cls, "classifier", None), str), f"{name}: {cls.__name__} has no classifier"


def test_variable_shapes_of_backbone_models_match_layout():
    m = flaxnets.create_model("mobilenet_v3_small", features_only=True, out_indices=(2,))
    assert m.feature_paths == ("features.3",)
    shapes = variable_shapes(m)
    assert sorted(shapes["params"]["features"]) == ["0", "1", "2", "3"]
