"""Tests for flaxnets.transforms: per-checkpoint eval preprocessing as data.

torchvision and timm are not installed in CI: their outputs on tests/transform_cases.py's images
were recorded by tools/gen_transform_golden.py as sha256 digests of the exact bytes (uint8 crop
before normalisation, float32 output after) for every distinct transform in
flaxnets/data/weights.json, plus three full crops (tests/data/transform_golden.npz).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib

import numpy as np
import pytest

import flaxnets
from flaxnets import transforms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import transform_cases  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "tests", "data")
GOLDEN = json.load(open(os.path.join(DATA, "transform_golden.json")))
NO_WEIGHTS = {"lenet5", "mobilenet_v1", "mobilenet_v1_0_25", "mobilenet_v1_0_5", "mobilenet_v1_0_75"}


@pytest.fixture(scope="module")
def cases():
    out = transform_cases.variants()
    got = {lbl: transform_cases.sha256(np.asarray(im)) for lbl, im in out}
    bad = [lbl for lbl in got if got[lbl] != GOLDEN["inputs"][lbl]]
    assert not bad, f"the test images themselves differ from the recorded ones (JPEG decoder / PIL resize?): {bad}"
    return out


@pytest.mark.parametrize("entry", GOLDEN["transforms"], ids=lambda e: f"{e['model']}.{e['weights']}")
def test_matches_torchvision_pixel_for_pixel(entry, cases):
    tf = flaxnets.eval_transform(entry["model"], entry["weights"])
    crops = {lbl: transform_cases.sha256(tf.crop(im)) for lbl, im in cases}
    outs = {lbl: transform_cases.sha256(tf(im)) for lbl, im in cases}
    assert [k for k in crops if crops[k] != entry["crops"][k]] == []
    assert [k for k in outs if outs[k] != entry["outputs"][k]] == []


def test_full_golden_crops(cases):
    by_label = dict(cases)
    with np.load(os.path.join(DATA, "transform_golden.npz")) as z:
        assert len(z.files) == 3
        for key in z.files:
            model, weights, label = key.split(".", 2)
            got = flaxnets.eval_transform(model, weights).crop(by_label[label])
            np.testing.assert_array_equal(got, z[key], err_msg=key)


def test_golden_covers_every_distinct_transform():
    db = transforms._load("weights.json")
    distinct = {(transforms.weights_info(n, w)["resize_size"], transforms.weights_info(n, w)["crop_size"],
                 transforms.weights_info(n, w)["interpolation"], tuple(transforms.weights_info(n, w)["mean"]),
                 tuple(transforms.weights_info(n, w)["std"]))
                for src in ("torchvision", "timm") for n in db[src] for w in db[src][n]["weights"]}
    tested = {(tf.resize_size, tf.crop_size, tf.interpolation, tf.mean, tf.std)
              for tf in (flaxnets.eval_transform(e["model"], e["weights"]) for e in GOLDEN["transforms"])}
    assert distinct == tested
    # 28 torchvision + 5 timm-only (timm's 256/224 bicubic ImageNet one is efficientnet_b0's)
    assert len(distinct) == 33


def test_numpy_input_and_modes(cases):
    tf = flaxnets.eval_transform("resnet18")
    im = dict(cases)["0:land500x333"]
    x = tf(im)
    assert x.shape == (224, 224, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(tf(np.asarray(im)), x)
    gray = im.convert("L")
    np.testing.assert_array_equal(tf(gray), tf(gray.convert("RGB")))
    np.testing.assert_array_equal(tf(np.asarray(gray)), tf(gray.convert("RGB")))
    np.testing.assert_array_equal(tf(im.convert("RGBA")), x)  # alpha dropped, as ImageFolder's loader does
    with pytest.raises(ValueError, match="uint8"):
        tf(np.asarray(im, np.float32))
    with pytest.raises(TypeError, match="PIL image"):
        tf("image.jpg")
    # normalisation: (x / 255 - mean) / std in float32
    c = tf.crop(im)
    mean, std = np.float32([0.485, 0.456, 0.406]), np.float32([0.229, 0.224, 0.225])
    want = (c.astype(np.float32) / np.float32(255) - mean) / std
    np.testing.assert_array_equal(x, want)


def test_center_crop_rounding_and_padding():
    a = np.arange(5 * 8 * 3, dtype=np.uint8).reshape(5, 8, 3)
    # crop 3 of 8: offset round(2.5) = 2 (halves to even), of 5: round(1.0) = 1
    np.testing.assert_array_equal(transforms.center_crop(a, 3), a[1:4, 2:5])
    # crop 7: width 8 -> offset round(0.5) = 0; height 5 -> padded 1 top, 1 bottom
    got = transforms.center_crop(a, 7)
    assert got.shape == (7, 7, 3)
    np.testing.assert_array_equal(got[1:6], a[:, 0:7])
    assert not got[0].any() and not got[6].any()
    # crop 10: width padded 1 left / 1 right, height 2 top / 3 bottom
    got = transforms.center_crop(a, 10)
    np.testing.assert_array_equal(got[2:7, 1:9], a)
    assert got.sum() == a.astype(int).sum()


def test_metadata():
    info = flaxnets.weights_info("resnet50")
    assert info["weights"] == "IMAGENET1K_V2" and info["source"] == "torchvision"
    assert (info["resize_size"], info["crop_size"], info["interpolation"]) == (232, 224, "bilinear")
    assert (info["acc1"], info["acc5"], info["num_params"]) == (80.858, 95.434, 25557032)
    assert info["file"] == "resnet50-11ad3fa6.pth" and info["url"].endswith(info["file"])
    v1 = flaxnets.weights_info("resnet50", "IMAGENET1K_V1")
    assert (v1["resize_size"], v1["acc1"]) == (256, 76.13)
    swag = flaxnets.weights_info("vit_h_14", "IMAGENET1K_SWAG_E2E_V1")
    assert (swag["resize_size"], swag["crop_size"], swag["interpolation"]) == (518, 518, "bicubic")
    assert flaxnets.list_weights("vit_h_14") == ["IMAGENET1K_SWAG_E2E_V1", "IMAGENET1K_SWAG_LINEAR_V1"]
    dk = flaxnets.weights_info("darknet53")
    assert (dk["source"], dk["weights"], dk["resize_size"], dk["crop_size"]) == ("timm", "c2ns_in1k", 288, 256)
    assert dk["has_weights"] and dk["num_params"] == 41609928
    db = transforms._load("weights.json")
    assert db["_source"].startswith("Generated by tools/gen_weights_meta.py from torchvision 0.28.0")
    assert len(db["torchvision"]) == 80
    assert sum(len(e["weights"]) for e in db["torchvision"].values()) == 115
    for name in ("convnext_tiny", "vit_b_16", "swin_v2_t", "maxvit_t", "swin_b"):
        assert name in db["torchvision"]
    for name in ("ese_vovnet19b_dw", "darknet53", "cspdarknet53", "semnasnet_100", "mobilenetv1_100",
                 "mobilenetv1_125"):
        assert name in db["timm"]
    assert set(flaxnets.list_models()) - set(db["torchvision"]) - set(db["timm"]) <= NO_WEIGHTS
    classes = flaxnets.imagenet_classes()
    assert len(classes) == 1000 and classes[0] == "tench" and classes[207] == "golden retriever"


def test_errors():
    with pytest.raises(ValueError, match=r"resnet50 has no weights 'IMAGENET1K_V3'; valid: "
                                         r"DEFAULT \(= IMAGENET1K_V2\), IMAGENET1K_V1, IMAGENET1K_V2"):
        flaxnets.eval_transform("resnet50", "IMAGENET1K_V3")
    with pytest.raises(ValueError, match=r"model 'resnet5'.*did you mean.*resnet50.*models with weights: alexnet"):
        flaxnets.eval_transform("resnet5")
    with pytest.raises(ValueError, match="no published weights metadata for model 'lenet5'"):
        flaxnets.eval_transform("lenet5")


def test_package_data_and_light_import():
    """`import flaxnets` and building a transform import neither PIL nor torch."""
    cfg = tomllib.load(open(os.path.join(REPO, "pyproject.toml"), "rb"))
    assert "data/*.json" in cfg["tool"]["setuptools"]["package-data"]["flaxnets"]
    code = ("import sys, flaxnets; flaxnets.weights_info('resnet18'); flaxnets.eval_transform('resnet18'); "
            "print('PIL' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False False"
    # the generators are development tools: nothing in the package imports them
    for dirpath, _, names in os.walk(os.path.join(REPO, "flaxnets")):
        for n in names:
            if n.endswith(".py"):
                src = open(os.path.join(dirpath, n)).read()
                for bad in ("import torchvision", "torchvision_shim", "import timm", "gen_weights_meta import",
                            "from tools", "import tools"):
                    assert bad not in src, (n, bad)
