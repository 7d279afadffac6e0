"""Strict conversion between torchvision state_dicts and flaxnets variables.

Flax module paths mirror torchvision's module paths, so a torch key is the Flax path joined
with "." plus a leaf rename, and a tensor is at most a transpose:

    params/<path>/kernel (kh, kw, in, out)  <->  <path>.weight (out, in, kh, kw)   conv
    params/<path>/kernel (k, in, out)       <->  <path>.weight (out, in, k)        conv1d
    params/<path>/kernel (in, out)          <->  <path>.weight (out, in)           linear
    params/<path>/scale                     <->  <path>.weight                     batchnorm
    params/<path>/bias                      <->  <path>.bias
    batch_stats/<path>/mean | var           <->  <path>.running_mean | running_var
    batch_stats/<path>/num_batches_tracked  <->  <path>.num_batches_tracked (int32 <-> int64)
    params/<path>/<other name>              <->  <path>.<other name>           as is

The last rule carries parameters that torch stores under their own names and layouts
(`in_proj_weight` of `nn.MultiheadAttention`, class tokens, position embeddings, layer
scales, relative position bias tables): a Flax module keeps such a parameter in torch's
layout under torch's name, so conversion never reshapes it.

Buffers that the architecture fixes (Swin's `relative_position_index`, say) are not Flax
variables: the top-level Flax module lists them with a `torch_buffers()` method returning
{torch key: numpy array}; torch -> Flax checks that the checkpoint holds exactly those
values, Flax -> torch writes them.

Both directions consume every key and produce every leaf or raise one `ConversionError`
naming the missing, unexpected and mis-shaped keys.

torch is optional: state_dicts of numpy arrays and `.safetensors` files convert without it
(`to_numpy_state_dict`); `.pth` files, `to_torch_state_dict` and torch's key order need the
`torch` extra (`pip install flaxnets[torch]`).
"""
from __future__ import annotations

import dataclasses
import os
from collections import OrderedDict
from typing import Any, Mapping

import sys

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

_LEAF_TO_TORCH = {
    ("params", "kernel"): "weight",
    ("params", "scale"): "weight",
    ("params", "bias"): "bias",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
    ("batch_stats", "num_batches_tracked"): "num_batches_tracked",
}
COLLECTIONS = ("params", "batch_stats")
_MAX_LISTED = 12


class ConversionError(ValueError):
    """A state_dict / variables tree does not fit the model's layout."""

    def __init__(self, message: str, missing=(), unexpected=(), mismatched=()):
        super().__init__(message)
        self.missing, self.unexpected, self.mismatched = list(missing), list(unexpected), list(mismatched)


@dataclasses.dataclass(frozen=True)
class Leaf:
    collection: str
    path: tuple[str, ...]      # Flax path inside the collection
    flax_shape: tuple[int, ...]
    torch_shape: tuple[int, ...]
    dtype: Any

    def to_torch_layout(self, a: np.ndarray) -> np.ndarray:
        if self.path[-1] == "kernel" and a.ndim == 4:
            return a.transpose(3, 2, 0, 1)
        if self.path[-1] == "kernel" and a.ndim in (2, 3):  # linear; conv1d (k, I, O) -> (O, I, k)
            return a.T
        return a

    def to_flax_layout(self, a: np.ndarray) -> np.ndarray:
        if self.path[-1] == "kernel" and a.ndim == 4:
            return a.transpose(2, 3, 1, 0)
        if self.path[-1] == "kernel" and a.ndim in (2, 3):
            return a.T
        return a


def torch_key(collection: str, path: tuple[str, ...]) -> str:
    leaf = _LEAF_TO_TORCH.get((collection, path[-1]))
    if leaf is None:
        if collection != "params" or path[-1] in {"kernel", "scale", "mean", "var"}:
            raise ConversionError(
                f"no torch name for Flax leaf {collection}/{'/'.join(path)}")
        leaf = path[-1]  # a parameter kept under torch's own name and layout
    return ".".join(path[:-1] + (leaf,))


def derived_buffers(model) -> "OrderedDict[str, np.ndarray]":
    """The torch buffers `model`'s architecture fixes ({torch key: value}); see the docstring."""
    fn = getattr(type(model), "torch_buffers", None)
    return OrderedDict(fn(model)) if fn is not None else OrderedDict()


def _flatten(tree: Mapping, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = v
    return out


def _unflatten(flat: Mapping[tuple[str, ...], Any]) -> dict:
    out: dict = {}
    for path, v in flat.items():
        d = out
        for k in path[:-1]:
            d = d.setdefault(k, {})
        d[path[-1]] = v
    return out


def _torch_shape(path, shape) -> tuple[int, ...]:
    if path[-1] == "kernel" and len(shape) == 4:
        return (shape[3], shape[2], shape[0], shape[1])
    if path[-1] == "kernel" and len(shape) in (2, 3):
        return tuple(shape)[::-1]
    return tuple(shape)


def input_size(model) -> tuple[int, int]:
    """The (height, width) a model is defined at (for shape inference): its
    `default_input_size`, an int (square) or an (h, w) pair (models built for one input
    size, e.g. MaxViT's `input_size` knob); 224 if it has none."""
    s = getattr(model, "default_input_size", 224)
    return (int(s), int(s)) if np.ndim(s) == 0 else (int(s[0]), int(s[1]))


def input_shape(model) -> tuple[int, ...]:
    """A batch-1 NHWC input the model accepts (models with an `in_channels` knob use it);
    (1, L, C) for a model built with `spatial_dims=1` (L: the first of `input_size`)."""
    h, w = input_size(model)
    c = int(getattr(model, "in_channels", 3))
    return (1, h, c) if int(getattr(model, "spatial_dims", 2)) == 1 else (1, h, w, c)


def variable_shapes(model) -> dict:
    """`jax.eval_shape` of `model.init`: the variables' shapes and dtypes, nothing computed."""
    shape = input_shape(model)
    return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape, jnp.float32), train=False))


_LAYOUTS: dict = {}  # (name, builder, knobs, x64) -> layout: one init trace per model and knobs


def _layout_key(name: str, kwargs: dict):
    """The cache key of `layout(name, **kwargs)`, or None where a knob is unhashable (not cached).
    The builder is part of it: a name registered anew (a test's monkeypatch) is traced anew."""
    from flaxnets import MODELS

    builder = MODELS.get(name) if name in MODELS else None
    key = (name, builder, tuple(sorted(kwargs.items())), bool(jax.config.jax_enable_x64))
    try:
        hash(key)
    except TypeError:
        return None
    return key


def layout(name: str, **kwargs) -> "OrderedDict[str, Leaf]":
    """torch key -> Leaf for registered model `name` built with `kwargs` (Flax variables only;
    `derived_buffers` gives the rest of the torch state_dict).

    Cached per model and knobs (a fresh copy each call): the table comes from tracing the
    model's init (seconds for the larger models), and a conversion both ways needs it twice."""
    key = _layout_key(name, kwargs)
    table = _LAYOUTS.get(key) if key is not None else None
    if table is None:
        table = _build_layout(name, kwargs)
        if key is not None:
            _LAYOUTS[key] = table
    return OrderedDict(table)


def _build_layout(name: str, kwargs: dict) -> "OrderedDict[str, Leaf]":
    from flaxnets import create_model

    shapes = variable_shapes(create_model(name, **kwargs))
    table: OrderedDict[str, Leaf] = OrderedDict()
    for col in COLLECTIONS:
        for path, sds in _flatten(shapes.get(col, {})).items():
            table[torch_key(col, path)] = Leaf(col, path, tuple(sds.shape),
                                               _torch_shape(path, sds.shape), sds.dtype)
    extra = set(shapes) - set(COLLECTIONS)
    if extra:
        raise ConversionError(f"{name}: unsupported variable collections {sorted(extra)}")
    return table


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f", ... ({len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else "")


def _check(name: str, expected: Mapping[str, tuple], got: Mapping[str, tuple], what: str):
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    bad = [f"{k}: expected {expected[k]}, got {got[k]}"
           for k in expected if k in got and tuple(expected[k]) != tuple(got[k])]
    if missing or unexpected or bad:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} {what}: {_listing(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} {what}: {_listing(unexpected)}")
        if bad:
            parts.append(f"{len(bad)} shape mismatches: {_listing(bad)}")
        raise ConversionError(f"{name}: " + "; ".join(parts), missing, unexpected,
                              [k for k in expected if k in got and tuple(expected[k]) != tuple(got[k])])


def require_torch(what: str):
    """torch, or one clear ImportError naming the extra to install."""
    try:
        import torch
    except ImportError:
        raise ImportError(f"{what} needs PyTorch: pip install 'flaxnets[torch]'") from None
    return torch


def is_torch_tensor(v) -> bool:
    torch = sys.modules.get("torch")  # a torch tensor exists only if torch is imported
    return torch is not None and isinstance(v, torch.Tensor)


def tensor_to_numpy(t) -> np.ndarray:
    """A torch tensor (or anything array-like) as a numpy array; bfloat16 as ml_dtypes'."""
    if not is_torch_tensor(t):
        return np.asarray(t)
    import torch

    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: reinterpret the bits
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def numpy_to_tensor(a: np.ndarray):
    torch = require_torch("numpy_to_tensor")
    a = np.array(a, order="C", copy=True)  # (np.ascontiguousarray would make 0-d arrays 1-d)
    if a.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def _is_backbone(kwargs: Mapping) -> bool:
    return bool(kwargs.get("features_only")) or kwargs.get("num_classes") == 0


def _model_buffers(name: str, table: Mapping[str, Leaf], **kwargs) -> "OrderedDict[str, np.ndarray]":
    """`derived_buffers` of the model; for a backbone (features_only / num_classes=0) only
    those of the modules it computes (a buffer's module also owns a variable of `table`)."""
    from flaxnets import create_model

    fixed = derived_buffers(create_model(name, **kwargs))
    if not _is_backbone(kwargs):
        return fixed
    prefixes = {k.rsplit(".", 1)[0] for k in table}
    return OrderedDict((k, v) for k, v in fixed.items() if k.rsplit(".", 1)[0] in prefixes)


def classifier_keys(name: str, **kwargs) -> set[str]:
    """Every torch key of the full classifier `name` (auxiliary heads included, default
    `num_classes`) with the trunk knobs of `kwargs`: the keys a backbone may leave out."""
    import inspect

    from flaxnets import MODELS, create_model

    kw = {k: v for k, v in kwargs.items() if k not in ("features_only", "out_indices", "num_classes")}
    if "aux_logits" in inspect.signature(MODELS.get(name)).parameters:
        kw["aux_logits"] = True
    return set(layout(name, **kw)) | set(derived_buffers(create_model(name, **kw)))


def from_torch_state_dict(name: str, state_dict: Mapping[str, Any], *, return_left_out: bool = False,
                          **kwargs) -> dict:
    """torchvision state_dict -> {"params": ..., "batch_stats": ...} for flaxnets model `name`.

    Values may be torch tensors or numpy arrays (torch's layout). Every key must be consumed
    and every Flax leaf produced with the right shape. Tensors keep their dtype (float32 stays
    float32; float64 needs `jax_enable_x64`).

    Backbones (`features_only=True`, `out_indices`, or `num_classes=0`; see
    `flaxnets.features`) take a full classifier's checkpoint: the keys of the head (and of
    stages past the last `out_indices`) are left out, and only those: every key must still be
    one of the full model's, and every backbone key must be there with its shape. The keys
    left out are logged (logger "flaxnets") and, with `return_left_out=True`, returned:
    `(variables, left_out)`.
    """
    table = layout(name, **kwargs)
    fixed = _model_buffers(name, table, **kwargs)
    arrays = {k: tensor_to_numpy(v) for k, v in state_dict.items()}
    left_out: list[str] = []
    if _is_backbone(kwargs):
        full = classifier_keys(name, **kwargs)
        left_out = [k for k in arrays if k not in table and k not in fixed and k in full]
        arrays = {k: a for k, a in arrays.items() if k not in set(left_out)}
        if left_out:
            import logging

            logging.getLogger("flaxnets").info("%s backbone: left out %d checkpoint keys: %s",
                                               name, len(left_out), _listing(left_out))
    _check(name, {**{k: leaf.torch_shape for k, leaf in table.items()},
                  **{k: v.shape for k, v in fixed.items()}},
           {k: a.shape for k, a in arrays.items()}, "torch keys")
    wrong = [k for k, v in fixed.items() if not np.array_equal(arrays[k], v)]
    if wrong:
        raise ConversionError(f"{name}: buffers differ from the values the architecture fixes: "
                              f"{_listing(wrong)}", mismatched=wrong)
    flat: dict[str, dict] = {col: {} for col in COLLECTIONS}
    for key, leaf in table.items():
        a = leaf.to_flax_layout(arrays[key])
        if leaf.path[-1] == "num_batches_tracked":
            a = a.astype(np.int32)
        flat[leaf.collection][leaf.path] = jnp.asarray(a)
    variables = {col: _unflatten(f) for col, f in flat.items() if f}
    return (variables, left_out) if return_left_out else variables


def to_numpy_state_dict(name: str, variables: Mapping[str, Any], *, torch_order: bool | None = None,
                        **kwargs) -> "OrderedDict[str, np.ndarray]":
    """flaxnets variables -> torchvision state_dict as numpy arrays (strict, shapes checked;
    no torch needed). Keys in torchvision's order when torch is installed (`torch_order=None`),
    else in the Flax model's order."""
    table = layout(name, **kwargs)
    fixed = _model_buffers(name, table, **kwargs)
    unknown = sorted(set(variables) - set(COLLECTIONS))
    if unknown:
        raise ConversionError(f"{name}: unexpected variable collections {unknown}")
    got = {}
    for col in COLLECTIONS:
        for path, v in _flatten(variables.get(col, {})).items():
            got[torch_key(col, path)] = (path, v)
    _check(name, {k: leaf.flax_shape for k, leaf in table.items()},
           {k: tuple(np.shape(v)) for k, (_, v) in got.items()}, "Flax leaves")
    keys = [*table, *fixed]
    if torch_order is None:
        torch_order = _torch_available()
    if torch_order:
        keys = torch_key_order(name, keys, **kwargs)
    out: OrderedDict[str, np.ndarray] = OrderedDict()
    for key in keys:
        if key in fixed:
            out[key] = np.array(fixed[key])
            continue
        leaf = table[key]
        a = leaf.to_torch_layout(np.asarray(jax.device_get(got[key][1])))
        if leaf.path[-1] == "num_batches_tracked":
            a = a.astype(np.int64)
        out[key] = a
    return out


def to_torch_state_dict(name: str, variables: Mapping[str, Any], **kwargs) -> "OrderedDict[str, Any]":
    """flaxnets variables -> torchvision state_dict of torch tensors, in torchvision's key order
    (strict, shapes checked). Needs the `torch` extra."""
    require_torch("to_torch_state_dict")
    arrays = to_numpy_state_dict(name, variables, torch_order=True, **kwargs)
    return OrderedDict((k, numpy_to_tensor(a)) for k, a in arrays.items())


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def torch_key_order(name: str, table, **kwargs) -> list[str]:
    """The keys of `table` (an iterable of torch keys) in torchvision's state_dict order (from the torchref twin, built on
    the meta device: no memory, no init cost); the Flax order if there is no twin."""
    import inspect

    torch = require_torch("torchvision's key order")
    import torchref

    if name not in torchref.MODELS:
        return list(table)
    builder = torchref.MODELS.get(name)
    accepted = inspect.signature(builder).parameters
    if _is_backbone(kwargs):  # a backbone's keys in the full classifier's order
        kwargs = {k: v for k, v in kwargs.items() if k != "num_classes"}
    with torch.device("meta"):
        model = builder(**{k: v for k, v in kwargs.items() if k in accepted})
    keys = set(table)
    order = [k for k in model.state_dict() if k in keys]
    return order + [k for k in table if k not in set(order)]


# ----------------------------------------------------------------------------- files
def load_torch_checkpoint(path: str | os.PathLike) -> "OrderedDict[str, Any]":
    """Read a torchvision-style checkpoint: a plain state_dict `.pth`, a dict wrapping one
    under "state_dict" or "model", DataParallel's "module." prefix, or `.safetensors`.

    `.safetensors` files are read as numpy arrays without torch; `.pth` files need the
    `torch` extra and give torch tensors. Either converts with `from_torch_state_dict`."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    safetensors_file = path.endswith(".safetensors")
    torch = None if safetensors_file else require_torch(f"reading {path} (a .pth checkpoint)")
    try:
        if safetensors_file:
            from flaxnets.convert import safetensors_io
            obj = safetensors_io.load(path)
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, corrupt, or not a checkpoint at all
        raise ValueError(f"{path}: not a readable {'safetensors' if safetensors_file else 'torch'} "
                         f"checkpoint ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else 'no detail'})") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, Mapping) and wrapper in obj and isinstance(obj[wrapper], Mapping):
            obj = obj[wrapper]
            break
    tensor = np.ndarray if safetensors_file else torch.Tensor
    if not isinstance(obj, Mapping) or not all(isinstance(v, tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a state_dict of tensors (optionally under "
                         f"'state_dict' or 'model'), got {type(obj).__name__}")
    keys = list(obj)
    if keys and all(k.startswith("module.") for k in keys):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return OrderedDict(obj)


def save_checkpoint(path: str | os.PathLike, state_dict: Mapping[str, Any]) -> None:
    """Write a torch-layout state_dict (torch tensors or numpy arrays): `.safetensors` without
    torch, anything else with `torch.save` (the `torch` extra)."""
    path = os.fspath(path)
    if path.endswith(".safetensors"):
        from flaxnets.convert import safetensors_io
        safetensors_io.save(path, {k: tensor_to_numpy(v) for k, v in state_dict.items()})
        return
    torch = require_torch(f"writing {path} (a .pth checkpoint)")
    torch.save(OrderedDict((k, v if is_torch_tensor(v) else numpy_to_tensor(v))
                           for k, v in state_dict.items()), path)


def init_variables(name: str, rng=None, **kwargs) -> dict:
    """Freshly initialised variables for registered model `name`."""
    from flaxnets import create_model

    model = create_model(name, **kwargs)
    shape = input_shape(model)
    rng = jax.random.key(0) if rng is None else rng
    return jax.jit(lambda r: model.init(r, jnp.zeros(shape, jnp.float32), train=False))(rng)
