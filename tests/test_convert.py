"""Strict checkpoint conversion: errors name the culprit, files round-trip bit for bit."""
from __future__ import annotations

import os
import subprocess
import sys

import jax
import pytest
import torch

import flaxnets
import torchref
from flaxnets.convert import (ConversionError, from_torch_state_dict, layout, load_torch_checkpoint,
                              numpy_to_tensor, to_torch_state_dict)
from flaxnets.convert.__main__ import main as convert_main

NAME = "regnet_x_400mf"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def state_dict():
    torch.manual_seed(0)
    sd = torchref.create_model(NAME).state_dict()
    for k, v in sd.items():  # distinct values everywhere, num_batches_tracked included
        if v.dtype == torch.int64:
            v.fill_(17)
        elif "running_var" in k:
            v.uniform_(0.5, 2.0)
        else:
            v.normal_()
    return sd


def _equal(a: dict, b: dict, ordered: bool = True):
    assert list(a) == list(b) if ordered else sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert torch.equal(a[k], b[k]), k


def test_roundtrip_bit_exact(state_dict):
    variables = from_torch_state_dict(NAME, state_dict)
    assert set(variables) == {"params", "batch_stats"}
    assert variables["params"]["stem"]["0"]["kernel"].shape == (3, 3, 3, 32)
    _equal(to_torch_state_dict(NAME, variables), state_dict)


def test_roundtrip_float64_and_bfloat16(state_dict):
    with jax.enable_x64(True):
        sd64 = {k: v.double() if v.is_floating_point() else v for k, v in state_dict.items()}
        _equal(to_torch_state_dict(NAME, from_torch_state_dict(NAME, sd64)), sd64)
    sd16 = {k: v.bfloat16() if v.is_floating_point() else v for k, v in state_dict.items()}
    _equal(to_torch_state_dict(NAME, from_torch_state_dict(NAME, sd16)), sd16)


def test_wrong_family_names_keys_and_shapes():
    sd = torchref.create_model("regnet_y_400mf").state_dict()
    with pytest.raises(ConversionError) as e:
        from_torch_state_dict(NAME, sd)
    msg = str(e.value)
    table = layout(NAME)
    missing = [k for k in table if k not in sd]
    unexpected = [k for k in sd if k not in table]
    mismatched = [k for k in table if k in sd and tuple(sd[k].shape) != table[k].torch_shape]
    assert missing and unexpected and mismatched  # regnet_y_400mf differs in all three ways
    assert e.value.missing == missing and e.value.unexpected == unexpected
    assert e.value.mismatched == mismatched
    assert f"missing {len(missing)} torch keys: {missing[0]}" in msg
    assert f"unexpected {len(unexpected)} torch keys: {unexpected[0]}" in msg
    assert f"{len(mismatched)} shape mismatches: {mismatched[0]}: expected" in msg


def test_missing_unexpected_and_shape(state_dict):
    sd = dict(state_dict)
    sd.pop("fc.bias")
    sd["fc.extra"] = torch.zeros(3)
    sd["stem.0.weight"] = torch.zeros(32, 3, 5, 5)
    with pytest.raises(ConversionError) as e:
        from_torch_state_dict(NAME, sd)
    msg = str(e.value)
    assert "missing 1 torch keys: fc.bias" in msg
    assert "unexpected 1 torch keys: fc.extra" in msg
    assert "stem.0.weight: expected (32, 3, 3, 3), got (32, 3, 5, 5)" in msg


def test_to_torch_is_strict(state_dict):
    variables = from_torch_state_dict(NAME, state_dict)
    del variables["batch_stats"]["stem"]["1"]["var"]
    with pytest.raises(ConversionError, match=r"missing 1 Flax leaves: stem\.1\.running_var"):
        to_torch_state_dict(NAME, variables)


def test_num_classes_knob(state_dict):
    sd = torchref.create_model(NAME, num_classes=10).state_dict()
    v = from_torch_state_dict(NAME, sd, num_classes=10)
    assert v["params"]["fc"]["kernel"].shape == (400, 10)
    with pytest.raises(ConversionError, match=r"fc.weight: expected \(1000, 400\), got \(10, 400\)"):
        from_torch_state_dict(NAME, sd)


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "module", "safetensors"])
def test_checkpoint_formats(tmp_path, state_dict, wrap):
    path = tmp_path / ("w.safetensors" if wrap == "safetensors" else "w.pth")
    if wrap == "safetensors":
        from safetensors.torch import save_file
        save_file(dict(state_dict), str(path))
    elif wrap == "module":
        torch.save({f"module.{k}": v for k, v in state_dict.items()}, path)
    elif wrap == "plain":
        torch.save(state_dict, path)
    else:
        torch.save({wrap: state_dict, "epoch": 3}, path)
    got = load_torch_checkpoint(path)
    if wrap == "safetensors":  # read without torch: numpy arrays, same bits
        got = {k: numpy_to_tensor(a) for k, a in got.items()}
    _equal(got, dict(state_dict), ordered=wrap != "safetensors")


def test_bad_files(tmp_path, state_dict):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_torch_checkpoint(tmp_path / "nope.pth")
    good = tmp_path / "good.pth"
    torch.save(state_dict, good)
    trunc = tmp_path / "trunc.pth"
    trunc.write_bytes(good.read_bytes()[:50_000])
    with pytest.raises(ValueError, match="trunc.pth: not a readable torch checkpoint"):
        load_torch_checkpoint(trunc)
    other = tmp_path / "other.pth"
    torch.save({"a": 1}, other)
    with pytest.raises(ValueError, match="other.pth: expected a state_dict"):
        load_torch_checkpoint(other)


def test_cli_roundtrip_and_errors(tmp_path, state_dict, capsys):
    pth, msg, back = tmp_path / "w.pth", tmp_path / "w.msgpack", tmp_path / "back.pth"
    torch.save(state_dict, pth)
    assert convert_main([NAME, str(pth), "-o", str(msg)]) == 0
    assert convert_main([NAME, str(msg), "-o", str(back), "--to-torch"]) == 0
    _equal(torch.load(back, weights_only=True), dict(state_dict))

    # Never overwrite without --force; the existing file is untouched.
    before = back.read_bytes()
    assert convert_main([NAME, str(msg), "-o", str(back), "--to-torch"]) == 2
    assert "exists" in capsys.readouterr().err
    assert back.read_bytes() == before
    assert convert_main([NAME, str(msg), "-o", str(back), "--to-torch", "--force"]) == 0

    # Failures write nothing, give one line naming the problem, exit non-zero.
    trunc = tmp_path / "trunc.pth"
    trunc.write_bytes(pth.read_bytes()[:10_000])
    cases = [
        (["regnet_x_400m", str(pth)], "unknown model 'regnet_x_400m'; closest: regnet_x_400mf"),
        (["regnet_y_400mf", str(pth)], "regnet_y_400mf: missing"),
        ([NAME, str(trunc)], "trunc.pth: not a readable torch checkpoint"),
        ([NAME, str(tmp_path / "missing.pth")], "missing.pth: no such checkpoint file"),
    ]
    for args, expected in cases:
        out = tmp_path / "out.msgpack"
        assert convert_main(args + ["-o", str(out)]) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, err
        assert not out.exists()
        assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]


def test_cli_hint_for_num_classes(tmp_path, capsys):
    pth = tmp_path / "w10.pth"
    torch.save(torchref.create_model(NAME, num_classes=10).state_dict(), pth)
    assert convert_main([NAME, str(pth), "-o", str(tmp_path / "o.msgpack")]) == 2
    assert "--num-classes" in capsys.readouterr().err
    assert convert_main([NAME, str(pth), "-o", str(tmp_path / "o.msgpack"), "--num-classes", "10"]) == 0


def test_python_m_entry_point(tmp_path):
    r = subprocess.run([sys.executable, "-m", "flaxnets.convert", "--help"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--to-torch" in r.stdout and not r.stderr


def test_registry_errors():
    with pytest.raises(ValueError, match="closest: regnet_x_400mf"):
        flaxnets.create_model("regnet_x_400")
    with pytest.raises(ValueError, match="already registered"):
        flaxnets.register(NAME, lambda: None)
    with pytest.raises(ValueError, match="already registered"):
        torchref.register(NAME, lambda: None)


def test_safetensors_without_torch_api_bit_exact(tmp_path, state_dict):
    """Our safetensors reader/writer (numpy, no torch) against safetensors' torch API, bf16 too."""
    from safetensors.torch import load_file, save_file

    from flaxnets.convert import save_checkpoint, to_numpy_state_dict
    for dtype in (torch.float32, torch.bfloat16, torch.float64):
        sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
        theirs = tmp_path / f"theirs_{dtype}.safetensors"
        save_file(sd, str(theirs))
        with jax.enable_x64(dtype == torch.float64):
            arrays = load_torch_checkpoint(theirs)  # numpy arrays, not tensors
            assert all(not isinstance(a, torch.Tensor) for a in arrays.values())
            variables = from_torch_state_dict(NAME, arrays)
            ours = tmp_path / f"ours_{dtype}.safetensors"
            save_checkpoint(ours, to_numpy_state_dict(NAME, variables))
        _equal(load_file(str(ours)), sd, ordered=False)


def test_cli_to_safetensors(tmp_path, state_dict):
    from safetensors.torch import load_file, save_file

    src, msg, back = tmp_path / "w.safetensors", tmp_path / "w.msgpack", tmp_path / "back.safetensors"
    save_file(dict(state_dict), str(src))
    assert convert_main([NAME, str(src), "-o", str(msg)]) == 0
    assert convert_main([NAME, str(msg), "-o", str(back), "--to-torch"]) == 0
    _equal(load_file(str(back)), dict(state_dict), ordered=False)


def test_layout_cache_gives_copies_and_follows_the_registry(monkeypatch):
    """layout() traces a model once per knobs: callers get their own copy, and a name whose
    builder is replaced (a test's monkeypatch) is traced anew, not served the old table."""
    import functools

    a = layout("lenet5", num_classes=7)
    a.pop("fc3.weight")
    b = layout("lenet5", num_classes=7)
    assert "fc3.weight" in b and b["fc3.weight"].torch_shape == (7, 84)
    assert layout("lenet5", num_classes=3)["fc3.weight"].torch_shape == (3, 84)
    assert layout("lenet5")["fc3.weight"].torch_shape == (10, 84)  # cached now
    monkeypatch.setitem(flaxnets.MODELS._builders, "lenet5",
                        functools.partial(flaxnets.MODELS.get("lenet5"), num_classes=5))
    assert layout("lenet5")["fc3.weight"].torch_shape == (5, 84)
