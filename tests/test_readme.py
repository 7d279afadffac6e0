"""The README's commands and example stay true."""
from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import torch

import torchref

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def block(marker: str) -> str:
    m = re.search(re.escape(f"<!-- {marker} -->") + r"\s*```\w*\n(.*?)```", README, re.S)
    assert m, f"README has no block after <!-- {marker} -->"
    return m.group(1)


def test_quick_start_commands():
    assert block("ci:install").strip() == 'pip install -e ".[torch,train,test]" torch==2.13.0'
    assert block("ci:main").strip() == "python -m train.main --model regnet_x_400mf"
    assert block("ci:test").strip().startswith("pytest")


def test_top5_example(tmp_path, monkeypatch):
    """Runs the README example with a torchvision-layout checkpoint made by torchref."""
    torch.manual_seed(0)
    ref = torchref.create_model("regnet_x_400mf")
    with torch.no_grad():  # spread the logits so top-5 is not decided by rounding
        ref.fc.weight.normal_(0, 1.0)
    monkeypatch.chdir(tmp_path)
    torch.save(ref.state_dict(), "regnet_x_400mf.pth")
    fake = types.ModuleType("torchvision")
    fake.models = types.SimpleNamespace(regnet_x_400mf=lambda: torchref.create_model("regnet_x_400mf"))
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    exec(compile(block("example:top5"), "README.md", "exec"), {})


def test_usage_example():
    ns: dict = {}
    exec(compile(block("example:usage"), "README.md", "exec"), ns)
    assert ns["y"].shape == (2, 10)
    assert int(ns["variables"]["batch_stats"]["features"]["0"]["1"]["num_batches_tracked"]) == 1


def test_nnx_example():
    ns: dict = {}
    exec(compile(block("example:nnx"), "README.md", "exec"), ns)
    assert ns["y"].shape == (2, 10) and "fc.weight" in ns["sd"]


def test_backbone_example(tmp_path, monkeypatch):
    """The FPN example: a torchvision-layout RegNet checkpoint (made by torchref) converted as a
    backbone, a Flax head on its maps, a few training steps that lower the loss."""
    torch.manual_seed(0)
    monkeypatch.chdir(tmp_path)
    torch.save(torchref.create_model("regnet_x_400mf").state_dict(), "regnet_x_400mf.pth")
    ns: dict = {}
    exec(compile(block("example:backbone"), "README.md", "exec"), ns)
    assert ns["chs"] == [32, 64, 160, 400]
    assert "fc" not in ns["params"]["trunk"] and "block4" in ns["params"]["trunk"]["trunk_output"]
    assert ns["losses"][-1] < ns["losses"][0], ns["losses"]
