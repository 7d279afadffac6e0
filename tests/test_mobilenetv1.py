"""MobileNetV1's documented state_dict layout (flaxnets/mobilenetv1.py, docs/mobilenet_v1.md)."""
from __future__ import annotations

import re

import pytest

import torchref
from flaxnets.convert import layout

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
PARAMS = {"mobilenet_v1": 4_231_976, "mobilenet_v1_0_75": 2_585_560,
          "mobilenet_v1_0_5": 1_331_592, "mobilenet_v1_0_25": 470_072}


def documented_keys() -> list[str]:
    keys = ["features.0.0.weight"] + [f"features.0.1.{k}" for k in BN]
    for n in range(1, 14):
        for part in ("0", "1"):
            keys += [f"features.{n}.{part}.0.weight"] + [f"features.{n}.{part}.1.{k}" for k in BN]
    return keys + ["classifier.1.weight", "classifier.1.bias"]


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_layout(name):
    sd = torchref.create_model(name, num_classes=10).state_dict()
    assert list(sd) == documented_keys()
    assert set(layout(name, num_classes=10)) == set(sd)
    a = {"mobilenet_v1": 1.0, "mobilenet_v1_0_75": 0.75, "mobilenet_v1_0_5": 0.5,
         "mobilenet_v1_0_25": 0.25}[name]
    assert sd["features.0.0.weight"].shape == (int(32 * a), 3, 3, 3)
    assert sd["features.13.0.0.weight"].shape == (int(1024 * a), 1, 3, 3)
    assert sd["classifier.1.weight"].shape == (10, int(1024 * a))
    strides = [m[0][0].stride[0] for m in torchref.create_model(name).features[1:]]
    assert strides == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    full = torchref.create_model(name).state_dict()
    params = sum(v.numel() for k, v in full.items() if re.search(r"\.(weight|bias)$", k))
    assert params == PARAMS[name]
