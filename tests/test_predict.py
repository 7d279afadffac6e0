"""Tests for `python -m flaxnets.predict`: random torchref weights, compared with the torch twin."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import flaxnets
import torchref
from flaxnets import predict
from flaxnets.convert.__main__ import write_flax_variables

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import transform_cases  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = "resnet18"  # DEFAULT = IMAGENET1K_V1: resize 256 bilinear, crop 224 (alexnet's golden transform)
LINE = re.compile(r"^\s+(\d+)\. (\d\.\d{6})\s+(\d+)\s+(.+)$")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("predict")
    torch.manual_seed(0)
    net = torchref.create_model(MODEL).eval()
    with torch.no_grad():  # non-trivial BN statistics, so eval mode is not the identity
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    pth = str(d / "net.pth")
    torch.save(net.state_dict(), pth)
    msgpack = str(d / "net.msgpack")
    write_flax_variables(msgpack, flaxnets.from_torch_state_dict(MODEL, net.state_dict()))
    cases = dict(transform_cases.variants())
    imgs = []
    for label, fmt in (("0:orig", "png"), ("1:portrait201x427", "png"), ("0:wide640x120", "jpg")):
        p = str(d / f"{label.replace(':', '_')}.{fmt}")
        cases[label].save(p)
        imgs.append(p)
    bad = d / "notes.jpg"
    bad.write_text("not an image\n")
    garbage = d / "garbage.pth"
    garbage.write_bytes(b"\x00garbage" * 10)
    return {"net": net, "pth": pth, "msgpack": msgpack, "images": imgs, "bad_image": str(bad),
            "garbage": str(garbage), "dir": d}


def parse(out: str) -> dict[str, list[tuple[int, float, str]]]:
    res, cur = {}, None
    for line in out.splitlines()[1:]:
        m = LINE.match(line)
        if m:
            res[cur].append((int(m.group(3)), float(m.group(2)), m.group(4)))
        else:
            cur = line
            res[cur] = []
    return res


def torch_top5(net, x: np.ndarray):
    with torch.no_grad():
        logits = net(torch.from_numpy(x).permute(0, 3, 1, 2)).double()
    p = torch.softmax(logits, dim=1)
    top = torch.topk(p, 5, dim=1)
    return top.indices.numpy(), top.values.numpy()


@pytest.mark.parametrize("kind", ["pth", "msgpack"])
def test_predict_matches_torchref(files, kind, capsys):
    assert predict.main([MODEL, files[kind], *files["images"]]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"# {MODEL}, eval transform of IMAGENET1K_V1: resize 256 (bilinear), center crop 224"
    res = parse(out)
    assert list(res) == files["images"]
    tf = flaxnets.eval_transform(MODEL)
    x = np.stack([predict.load_image(p, tf) for p in files["images"]])
    # the preprocessing is torchvision's: the PNG of china.jpg gives the golden torchvision crop
    with np.load(os.path.join(REPO, "tests", "data", "transform_golden.npz")) as z:
        np.testing.assert_array_equal(tf.crop(Image.open(files["images"][0])), z["alexnet.IMAGENET1K_V1.0:orig"])
    idx, probs = torch_top5(files["net"], x)
    classes = flaxnets.imagenet_classes()
    for path, i_ref, p_ref in zip(files["images"], idx, probs):
        got = res[path]
        assert [g[0] for g in got] == list(i_ref)
        assert [g[2] for g in got] == [classes[i] for i in i_ref]
        np.testing.assert_allclose([g[1] for g in got], p_ref, rtol=0, atol=1e-5 + 5e-7)  # printed to 6 decimals
    # unrounded probabilities from the Python API
    variables = predict.load_variables(MODEL, files[kind])
    i_got, p_got = predict.predict(flaxnets.create_model(MODEL), variables, x, top=5)
    np.testing.assert_array_equal(i_got, idx)
    assert np.abs(p_got - probs).max() <= 1e-5
    assert np.abs(p_got - probs).max() / probs.max() <= 1e-4


def test_top_and_weights_options(files, capsys):
    assert predict.main([MODEL, files["pth"], files["images"][0], "--top", "2", "--batch-size", "1"]) == 0
    assert [len(v) for v in parse(capsys.readouterr().out).values()] == [2]
    # resnet18 has only IMAGENET1K_V1
    assert predict.main([MODEL, files["pth"], files["images"][0], "--weights", "IMAGENET1K_V2"]) == 2
    assert "resnet18 has no weights 'IMAGENET1K_V2'; valid: DEFAULT (= IMAGENET1K_V1), IMAGENET1K_V1" in \
        capsys.readouterr().err


@pytest.mark.parametrize("case,msg", [
    ("missing_ckpt", "nope.pth: no such checkpoint file"),
    ("garbage_ckpt", "garbage.pth: not a readable torch checkpoint"),
    ("missing_image", "nope.jpg: no such image file"),
    ("bad_image", "notes.jpg: not a readable image (UnidentifiedImageError"),
    ("truncated_image", "cut.jpg: not a readable image (OSError"),
    ("wrong_model", "resnet34: missing"),
    ("unknown_model", "resnet19"),
])
def test_errors(files, case, msg, capsys):
    d, img = files["dir"], files["images"][0]
    if case == "truncated_image":
        full = str(d / "full.jpg")
        Image.open(img).save(full, quality=90)
        data = open(full, "rb").read()
        open(d / "cut.jpg", "wb").write(data[: len(data) // 2])
    argv = {
        "missing_ckpt": [MODEL, str(d / "nope.pth"), img],
        "garbage_ckpt": [MODEL, files["garbage"], img],
        "missing_image": [MODEL, files["pth"], str(d / "nope.jpg")],
        "bad_image": [MODEL, files["pth"], img, files["bad_image"]],
        "truncated_image": [MODEL, files["pth"], str(d / "cut.jpg")],
        "wrong_model": ["resnet34", files["pth"], img],
        "unknown_model": ["resnet19", files["pth"], img],
    }[case]
    assert predict.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and msg in err and len(err.splitlines()) == 1, err


def test_cli_module(files):
    out = subprocess.run([sys.executable, "-m", "flaxnets.predict", MODEL, files["msgpack"], files["images"][2],
                          "--top", "3"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert [len(v) for v in parse(out.stdout).values()] == [3]
