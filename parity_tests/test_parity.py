"""Flax vs torch parity for every registered model (see parity_tests/harness.py).

Tolerances (relative, max abs diff / max abs reference), never loosened:
eval logits and layer outputs in float32 <= 1e-5; train mode in float64 <= 1e-10.
Set PARITY_RESULTS=file.jsonl to collect the measured figures (python -m parity_tests.report).
"""
from __future__ import annotations

import functools
import json
import os

import pytest

import flaxnets
import torchref
from flaxnets.convert import derived_buffers, layout
from parity_tests import cases
from parity_tests.harness import (eval_parity, features_eval_parity, features_train_parity,
                                    train_parity)

EVAL_TOL = 1e-5
TRAIN_TOL = 1e-10
NAMES = flaxnets.list_models()


@functools.lru_cache(maxsize=None)
def num_params(name: str) -> int:
    """Parameter count of the torchref twin, built on the meta device (instant, no memory)."""
    import torch

    with torch.device("meta"):
        model = torchref.create_model(name, **dict(cases.case(name).kwargs))
    return sum(p.numel() for p in model.parameters())


def is_large(name: str) -> bool:
    c = cases.case(name)
    return c.large if c.large is not None else num_params(name) > cases.LARGE_PARAMS


def is_train_large(name: str) -> bool:
    c = cases.case(name)
    return c.train_large if c.train_large is not None else is_large(name)


def is_eval_large(name: str) -> bool:
    c = cases.case(name)
    return c.eval_large if c.eval_large is not None else num_params(name) > cases.HUGE_PARAMS


def _record(kind: str, res: dict) -> None:
    print(f"\n{kind}: {json.dumps(res)}")
    out = os.environ.get("PARITY_RESULTS")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps({"kind": kind, "params": num_params(res["model"]), **res}) + "\n")


def _large(select):
    return [pytest.param(n, marks=pytest.mark.large) for n in NAMES if select(n)]


def test_registries_agree():
    assert flaxnets.list_models() == torchref.list_models()


def _check_eval(name: str, sizes, kind: str):
    c = cases.case(name)
    res = eval_parity(name, sizes, {**dict(c.kwargs)}, tol=EVAL_TOL,
                      layers_at_every_size=c.layers_at_every_size)
    _record(kind, res)
    for size, layers in res.get("layers_at", {"": res["layers"]}).items():
        at = f" at {size}" if size else ""
        assert layers["compared"] > 0, f"{name}{at}: no layer outputs matched by module path"
        assert not layers["unmatched"], (
            f"{name}{at}: torch modules with parameters whose output has no Flax counterpart at "
            f"the same module path: {', '.join(layers['unmatched'])}")
        assert layers["first_bad"] is None, (
            f"{name}{at}: first diverging layer {layers['first_bad'][0]} "
            f"(rel err {layers['first_bad'][1]:.3g} > {EVAL_TOL})")
    for size, err in res["logits"].items():
        assert err <= EVAL_TOL, f"{name} eval logits at {size}: rel err {err:.3g} > {EVAL_TOL}"
    for size, err in res["features"].items():
        assert err <= EVAL_TOL, f"{name} feature maps at {size}: rel err {err:.3g} > {EVAL_TOL}"


@pytest.mark.parametrize("name", [n for n in NAMES if not is_eval_large(n)])
def test_eval(name):
    """Eval logits + layer by layer (float32); large models at reduced sizes here."""
    c = cases.case(name)
    sizes = c.eval_sizes if not is_large(name) or c.eval_sizes != cases.EVAL_SIZES else cases.SMALL_EVAL_SIZES
    _check_eval(name, sizes, "eval")


@pytest.mark.parametrize("name", _large(lambda n: is_large(n) or is_eval_large(n)))
def test_eval_full_size(name):
    _check_eval(name, cases.case(name).full_sizes or cases.EVAL_SIZES, "eval_full")


def _available_memory() -> int | None:
    """MemAvailable after returning this process's free heap to the OS (an earlier test's
    peak otherwise stays in glibc's heap, out of MemAvailable)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return None


def _check_train(name: str, skip_if_short_of_memory: bool = False):
    c = cases.case(name)
    # float64, at most ~4 model-sized copies at once (regnet_y_128gf: 20.0 GB peak RSS).
    need, avail = 4 * 8 * num_params(name), _available_memory()
    if skip_if_short_of_memory and avail is not None and need > avail:
        pytest.skip(f"{name}: float64 train parity needs ~{need / 2**30:.0f} GiB, "
                    f"{avail / 2**30:.0f} GiB available")
    res = train_parity(name, c.train_size,
                       {**cases.TRAIN_KWARGS, **dict(c.kwargs), **dict(c.train_kwargs)})
    _record("train", res)
    assert res["logits"] <= TRAIN_TOL, f"{name} train logits rel err {res['logits']:.3g}"
    assert res["running_stats"] <= TRAIN_TOL, (
        f"{name} running stats rel err {res['running_stats']:.3g} at {res['running_stats_worst_key']}")
    assert res["grads"] <= TRAIN_TOL, (
        f"{name} grads rel err {res['grads']:.3g} at {res['grads_worst_key']}")


@pytest.mark.parametrize("name", [n for n in NAMES if not is_train_large(n)])
def test_train(name):
    _check_train(name)


@pytest.mark.parametrize("name", _large(is_train_large))
def test_train_large(name):
    _check_train(name, skip_if_short_of_memory=True)


@pytest.mark.parametrize("name", NAMES)
def test_torchref_matches_flax_layout(name):
    """Every torchref model builds on the meta device (the converter orders keys with it) and
    its state_dict has exactly the keys and shapes the Flax model's variables convert to."""
    import torch

    with torch.device("meta"):
        sd = torchref.create_model(name).state_dict()
    table = {k: leaf.torch_shape for k, leaf in layout(name).items()}
    table.update({k: v.shape for k, v in derived_buffers(flaxnets.create_model(name)).items()})
    assert set(sd) == set(table), (sorted(set(sd) - set(table)), sorted(set(table) - set(sd)))
    for k, v in sd.items():
        assert tuple(v.shape) == tuple(table[k]), k


# ----------------------------------------------------------------------------- backbones
def family(name: str) -> str:
    """The flaxnets module that registers `name` (its family)."""
    fn = flaxnets.MODELS.get(name)
    return getattr(fn, "func", fn).__module__


@functools.lru_cache(maxsize=None)
def representatives() -> frozenset:
    """One model per family, its smallest by parameter count among those whose float64 train
    check is in the default suite (if any): its backbone parity runs in the default suite,
    the others' in the large tier."""
    reps: dict[str, str] = {}
    key = lambda n: (is_train_large(n), num_params(n))  # noqa: E731
    for n in NAMES:
        f = family(n)
        if f not in reps or key(n) < key(reps[f]):
            reps[f] = n
    return frozenset(reps.values())


def _check_features(name: str, all_sizes: bool = True):
    c = cases.case(name)
    sizes = c.eval_sizes if not is_large(name) or c.eval_sizes != cases.EVAL_SIZES else cases.SMALL_EVAL_SIZES
    if not all_sizes:  # the last (odd) size only: test_eval compares every feature path at every size
        sizes = sizes[-1:]
    res = features_eval_parity(name, sizes, dict(c.kwargs))
    full = set(layout(name, **dict(c.kwargs)))
    backbone = set(layout(name, features_only=True, **dict(c.kwargs)))
    assert set(res.pop("left_out")) == full - backbone  # the head and nothing else left out
    _record("features", res)
    for what in ("features", "pooled"):
        for size, err in res[what].items():
            assert err <= EVAL_TOL, f"{name} backbone {what} at {size}: rel err {err:.3g} > {EVAL_TOL}"


@pytest.mark.parametrize("name", sorted(representatives()))
def test_features(name):
    """features_only=True (every map) and num_classes=0 (pooled), converted from the full
    checkpoint, float32 at the odd eval size (the large tier: every eval size), against torch's
    module outputs; test_eval compares every model's feature paths at every eval size."""
    _check_features(name, all_sizes=False)


@pytest.mark.parametrize("name", _large(lambda n: num_params(n) <= cases.HUGE_PARAMS))
def test_features_large(name):
    _check_features(name)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.large) if cases.case(n).features_train_large
                                  else n for n in sorted(representatives())])
def test_features_train(name):
    """float64 train mode through a loss on every feature map: maps, BN statistics, every
    backbone parameter's gradient."""
    c = cases.case(name)
    res = features_train_parity(name, c.features_train_size or c.train_size,
                                {**cases.TRAIN_KWARGS, **dict(c.kwargs), **dict(c.train_kwargs)})
    _record("features_train", res)
    assert res["features"] <= TRAIN_TOL, f"{name} train feature maps rel err {res['features']:.3g}"
    assert res["running_stats"] <= TRAIN_TOL, (
        f"{name} running stats rel err {res['running_stats']:.3g} at {res['running_stats_worst_key']}")
    assert res["grads"] <= TRAIN_TOL, f"{name} grads rel err {res['grads']:.3g} at {res['grads_worst_key']}"


# ----------------------------------------------------------------------------- 1-D builds
ONE_D_NAMES = [n for n in NAMES if cases.case(n).lengths_1d]


def one_d_kwargs(name: str) -> dict:
    return {**dict(cases.case(name).kwargs), "spatial_dims": 1, "in_channels": cases.IN_CHANNELS_1D}


def takes_spatial_dims(name: str) -> bool:
    import inspect

    return all("spatial_dims" in inspect.signature(side.get(name)).parameters
               for side in (flaxnets.MODELS, torchref.MODELS))


@pytest.mark.parametrize("name", ONE_D_NAMES)
def test_eval_1d(name):
    """spatial_dims=1: float32 logits and every layer at each length (one odd)."""
    c = cases.case(name)
    res = eval_parity(name, [(n,) for n in c.lengths_1d], one_d_kwargs(name), tol=EVAL_TOL,
                      layers_at_every_size=True)
    _record("eval_1d", res)
    for size, layers in res["layers_at"].items():
        assert layers["compared"] > 0, f"{name} 1-D at {size}: no layer outputs matched"
        assert not layers["unmatched"], f"{name} 1-D: unmatched {', '.join(layers['unmatched'])}"
        assert layers["first_bad"] is None, (
            f"{name} 1-D at {size}: first diverging layer {layers['first_bad'][0]} "
            f"(rel err {layers['first_bad'][1]:.3g} > {EVAL_TOL})")
    for size, err in res["logits"].items():
        assert err <= EVAL_TOL, f"{name} 1-D eval logits at {size}: rel err {err:.3g} > {EVAL_TOL}"


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.large) if cases.case(n).train_1d_large
                                  else n for n in ONE_D_NAMES])
def test_train_1d(name):
    c = cases.case(name)
    res = train_parity(name, (c.train_length_1d,), {**cases.TRAIN_KWARGS, **one_d_kwargs(name)})
    _record("train_1d", res)
    assert res["logits"] <= TRAIN_TOL, f"{name} 1-D train logits rel err {res['logits']:.3g}"
    assert res["running_stats"] <= TRAIN_TOL, (
        f"{name} 1-D running stats rel err {res['running_stats']:.3g} at {res['running_stats_worst_key']}")
    assert res["grads"] <= TRAIN_TOL, (
        f"{name} 1-D grads rel err {res['grads']:.3g} at {res['grads_worst_key']}")


def test_one_d_cases_take_spatial_dims():
    assert ONE_D_NAMES and all(takes_spatial_dims(n) for n in ONE_D_NAMES)


@pytest.mark.parametrize("name", [n for n in NAMES if takes_spatial_dims(n)])
def test_torchref_matches_flax_layout_1d(name):
    """A 1-D build's torch state_dict: the 2-D build's keys in the same order, 1-D shapes
    (conv weights (O, I/g, k)), exactly what the Flax 1-D variables convert to."""
    import torch

    kw = {"spatial_dims": 1, "in_channels": cases.IN_CHANNELS_1D}
    with torch.device("meta"):
        sd1 = torchref.create_model(name, **kw).state_dict()
        sd2 = torchref.create_model(name, in_channels=cases.IN_CHANNELS_1D).state_dict()
    assert list(sd1) == list(sd2)
    for k, v in sd1.items():
        w = sd2[k]
        assert v.dtype == w.dtype, k
        if w.ndim == 4:  # a conv weight (O, I/g, kh, kw) -> (O, I/g, k), square kernels
            assert tuple(v.shape) == tuple(w.shape[:3]) and w.shape[2] == w.shape[3], k
        else:
            assert v.shape == w.shape, k
    table = {k: leaf.torch_shape for k, leaf in layout(name, **kw).items()}
    assert list(table) == list(sd1) or set(table) == set(sd1)
    for k, v in sd1.items():
        assert tuple(v.shape) == tuple(table[k]), k
