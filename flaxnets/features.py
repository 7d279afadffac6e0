"""Backbones: every registered model as a multi-scale feature extractor, or as a model of its
pooled pre-logit features.

    model = flaxnets.create_model("resnet50", features_only=True, out_indices=(1, 2, 3))
    feats = model.apply(variables, x)                # [NHWC map, ...], high to low resolution
    flaxnets.feature_info("resnet50")                # [{"module": "layer1", "num_chs": 256, "reduction": 4}, ...]
    pooled = flaxnets.create_model("resnet50", num_classes=0)   # (N, 2048), no head parameters

The interface is timm's (`features_only`, `out_indices`, `feature_info` with timm's key names,
`num_classes=0`); the feature maps are the outputs of torchvision's (or timm's) modules at the
paths `feature_info` names, the paths torchvision's `create_feature_extractor` takes.

How it works, for every family at once: a Flax model's module names are the reference's
module paths, so a feature is "the output of the module at path P". A features model is the
family's own model class (same fields, same variables at the same paths, so checkpoints
convert unchanged) whose `__call__` runs the classifier's forward under a method interceptor
that records the outputs at the chosen paths and stops the forward once the last one is
computed: modules past it (the head; later stages when `out_indices` stops early) are never
called, so they own no variables. A pooled model (`num_classes=0`) calls the forward with the
classifier module replaced by the identity, so it returns that module's input.

Each family's model class declares, as class attributes:
  `feature_modules`: patterns of candidate module paths, matched component by component with
      fnmatch ("features.*": every child of `features`; "stage*": stage2, stage3, ...);
  `classifier`: the path of the final classifier module (its input is the pooled feature);
  `feature_rule` (optional): "last_per_reduction" (default) keeps, for every resolution the
      candidates reach, the last candidate at that resolution (one map per stage output);
      "all" keeps every candidate (ViT: every encoder block);
  `feature_map(self, path, out, x)` (optional): turns a module output into a map (ViT: the
      token sequence without the class token, as an (N, H/p, W/p, D) map).
Reductions are measured: the candidates' output shapes from one `jax.eval_shape` trace at the
model's input size (a model built for one size) or 448 (`_PROBE`), reduction = input / output
size when that divides exactly, else the nearest power of two (valid-padded stems, e.g.
Inception's 299 -> 35 is reduction 8).
"""
from __future__ import annotations

import fnmatch
import functools
import inspect
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

_PROBE = 448


class _Done(Exception):
    """Raised by the interceptor once the last requested feature is computed."""


def _matches(pattern: str, path: str) -> bool:
    """`pattern` matches `path` component by component (fnmatch: "*" within one component)."""
    pp, qq = pattern.split("."), path.split(".")
    return len(pp) == len(qq) and all(fnmatch.fnmatchcase(q, p) for p, q in zip(pp, qq))


def _module_path(module: nn.Module) -> str:
    return ".".join(module.path)


def _spatial_shape(shape: Sequence[int], spatial_dims: int) -> tuple[int, ...]:
    return tuple(shape[1:1 + spatial_dims])


def _run(module: nn.Module, base: type, x, train: bool, *, record=None, stop_after=None,
         identity: str | None = None):
    """`base.__call__(module, x, train)` under an interceptor: `record(path, out)` for every
    module call; stop once every path of `stop_after` has been recorded; `identity`: the path
    whose module returns its input uncalled."""
    seen: set[str] = set()

    def interceptor(next_fun, args, kwargs, ctx):
        if ctx.method_name != "__call__" or ctx.module is module:
            return next_fun(*args, **kwargs)
        path = _module_path(ctx.module)
        if identity is not None and path == identity:
            return args[0]
        out = next_fun(*args, **kwargs)
        if record is not None:
            record(path, out)
        if stop_after is not None and path in stop_after:
            seen.add(path)
            if len(seen) == len(stop_after):
                raise _Done
        return out

    with nn.intercept_methods(interceptor):
        try:
            return base.__call__(module, x, train=train)
        except _Done:
            return None


def _feature_map(module: nn.Module, path: str, out, x):
    fn = getattr(module, "feature_map", None)
    return out if fn is None else fn(path, out, x)


@functools.lru_cache(maxsize=None)
def _features_class(base: type) -> type:
    """`base` (a family's model class) returning its feature maps at `feature_paths`."""

    def __call__(self, x, train: bool = False):
        outs: dict[str, Any] = {}
        wanted = frozenset(self.feature_paths)

        def record(path, out):
            if path in wanted and path not in outs:
                outs[path] = out

        _run(self, base, x, train, record=record, stop_after=wanted)
        missing = [p for p in self.feature_paths if p not in outs]
        if missing:
            raise ValueError(f"{base.__name__}: no module output at {missing} "
                             f"(feature paths {list(self.feature_paths)})")
        return [_feature_map(self, p, outs[p], x) for p in self.feature_paths]

    ns = {"__annotations__": {"feature_paths": "tuple"}, "feature_paths": (),
          "__call__": __call__, "__module__": base.__module__,
          "__qualname__": f"{base.__qualname__}Features",
          "__doc__": f"{base.__name__} as a feature extractor (flaxnets.features)."}
    return type(f"{base.__name__}Features", (base,), ns)


@functools.lru_cache(maxsize=None)
def _pooled_class(base: type) -> type:
    """`base` returning the input of its classifier module (`num_classes=0`)."""

    def __call__(self, x, train: bool = False):
        return _run(self, base, x, train, identity=base.classifier)

    ns = {"__call__": __call__, "__module__": base.__module__,
          "__qualname__": f"{base.__qualname__}Pooled",
          "__doc__": f"{base.__name__} returning its pooled pre-logit features (flaxnets.features)."}
    return type(f"{base.__name__}Pooled", (base,), ns)


def _fields(model: nn.Module) -> dict:
    import dataclasses

    return {f.name: getattr(model, f.name) for f in dataclasses.fields(model)
            if f.init and f.name not in ("parent", "name")}


def _require(model: nn.Module, attr: str, name: str):
    if not hasattr(type(model), attr):
        raise NotImplementedError(f"{name}: {type(model).__name__} declares no `{attr}` "
                                  "(flaxnets.features)")
    return getattr(type(model), attr)


def _probe_input(model: nn.Module) -> tuple[int, ...]:
    from flaxnets.convert import input_shape

    shape = input_shape(model)
    if getattr(model, "default_input_size", None) is None:  # any size: probe at _PROBE
        shape = (shape[0],) + (_PROBE,) * (len(shape) - 2) + (shape[-1],)
    return shape


def _reduction(size_in: int, size_out: int) -> int:
    if size_in % size_out == 0:
        return size_in // size_out
    return 2 ** max(0, round(math.log2(size_in / size_out)))


def _candidates(name: str, model: nn.Module) -> list[dict]:
    """Every candidate feature of `model` in forward order: module, num_chs, reduction."""
    patterns = _require(model, "feature_modules", name)
    shape = _probe_input(model)
    spatial_dims = len(shape) - 2
    found: dict[str, Any] = {}

    def record(path, out):
        if path not in found and isinstance(out, jax.Array) and any(_matches(p, path) for p in patterns):
            found[path] = out

    base = type(model)

    def fn(m, x):
        _run(m, base, x, False, record=record)
        return [_feature_map(m, p, v, x) for p, v in found.items()]  # (a list: forward order)

    # init_with_output runs `fn` on fresh variables; under eval_shape nothing is computed
    maps = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x, method=fn)[0],
                          jax.ShapeDtypeStruct(shape, jnp.float32))
    out = []
    for path, m in zip(found, maps):
        red = _reduction(shape[1], _spatial_shape(m.shape, spatial_dims)[0])
        out.append({"module": path, "num_chs": int(m.shape[-1]), "reduction": red})
    return out


def _select(model: nn.Module, cands: list[dict]) -> list[dict]:
    rule = getattr(type(model), "feature_rule", "last_per_reduction")
    if rule == "all":
        return cands
    if rule != "last_per_reduction":
        raise ValueError(f"unknown feature_rule {rule!r}")
    last: dict[int, dict] = {}
    for c in cands:
        last.pop(c["reduction"], None)
        last[c["reduction"]] = c
    return sorted(last.values(), key=lambda c: cands.index(c))


def _freeze(kwargs: dict):
    return tuple(sorted((k, repr(v)) for k, v in kwargs.items()))


_INFO: dict = {}  # (name, knobs) -> feature list: one trace per model and knobs


def _classifier_kwargs(name: str, kwargs: dict) -> dict:
    """The builder knobs of the classifier a features/pooled model is cut from: auxiliary
    heads off (they are not part of the trunk), `num_classes` left at its default."""
    from flaxnets import MODELS

    kw = {k: v for k, v in kwargs.items() if k != "num_classes"}
    params = inspect.signature(MODELS.get(name)).parameters
    if "aux_logits" in params:
        if kw.get("aux_logits"):
            raise ValueError(f"{name}: aux_logits=True cannot be combined with features_only=True "
                             "or num_classes=0 (the auxiliary heads are classifiers)")
        kw["aux_logits"] = False
    return kw


def feature_info(name: str, **kwargs) -> list[dict]:
    """For each feature `create_model(name, features_only=True, **kwargs)` can return, in order
    (highest resolution first): {"module": reference module path, "num_chs": channels,
    "reduction": stride w.r.t. the input}. kwargs: the builder's knobs (not `out_indices`)."""
    kwargs.pop("features_only", None)
    if "out_indices" in kwargs:
        raise TypeError("feature_info lists every feature; out_indices selects among them in create_model")
    key = (name, _freeze(kwargs))
    if key not in _INFO:
        from flaxnets import MODELS

        model = MODELS.create(name, **_classifier_kwargs(name, kwargs))
        _INFO[key] = tuple(_select(model, _candidates(name, model)))
    return [dict(d) for d in _INFO[key]]


def resolve_out_indices(name: str, n: int, out_indices) -> tuple[int, ...]:
    """`out_indices` (None: all; negative counts from the end) as sorted indices in [0, n)."""
    if out_indices is None:
        return tuple(range(n))
    if isinstance(out_indices, int):
        raise TypeError(f"{name}: out_indices must be a sequence of ints, got {out_indices!r}")
    idx = []
    for i in out_indices:
        if not isinstance(i, (int, np.integer)) or not -n <= int(i) < n:
            raise ValueError(f"{name}: out_indices entry {i!r} is not in [-{n}, {n}) "
                             f"({n} features: flaxnets.feature_info({name!r}))")
        idx.append(int(i) % n)
    if len(set(idx)) != len(idx):
        raise ValueError(f"{name}: out_indices {tuple(out_indices)} name a feature twice")
    if not idx:
        raise ValueError(f"{name}: out_indices is empty")
    return tuple(sorted(idx))


def features_model(name: str, out_indices=None, **kwargs) -> nn.Module:
    """`create_model(name, features_only=True, out_indices=..., **kwargs)`."""
    from flaxnets import MODELS

    info = feature_info(name, **kwargs)
    idx = resolve_out_indices(name, len(info), out_indices)
    model = MODELS.create(name, **_classifier_kwargs(name, kwargs))
    return _features_class(type(model))(**_fields(model), feature_paths=tuple(info[i]["module"] for i in idx))


def pooled_model(name: str, **kwargs) -> nn.Module:
    """`create_model(name, num_classes=0, **kwargs)`: returns (N, C) pre-logit features."""
    from flaxnets import MODELS

    model = MODELS.create(name, **_classifier_kwargs(name, kwargs))
    _require(model, "classifier", name)
    return _pooled_class(type(model))(**_fields(model))


def is_features_model(model: nn.Module) -> bool:
    return hasattr(model, "feature_paths")


def slice_variables(variables, name: str, *, features_only: bool = False, out_indices=None,
                    **kwargs) -> dict:
    """A full classifier's variables cut to those of the features model
    (`features_only=True, out_indices=...`) or pooled model (`num_classes=0`) of `name` with
    the same knobs: the same arrays, without the head (and stages past the last index)."""
    from flaxnets import create_model
    from flaxnets.convert import _flatten, _unflatten, variable_shapes

    model = create_model(name, features_only=features_only, out_indices=out_indices, **kwargs)
    want = {col: _flatten(tree) for col, tree in variable_shapes(model).items()}
    out = {}
    for col, leaves in want.items():
        have = _flatten(variables.get(col, {}))
        missing = [p for p in leaves if p not in have]
        if missing:
            raise ValueError(f"{name}: variables lack {col}/{'/'.join(missing[0])} "
                             f"({len(missing)} leaves missing)")
        bad = [p for p in leaves if tuple(np.shape(have[p])) != tuple(leaves[p].shape)]
        if bad:
            raise ValueError(f"{name}: {col}/{'/'.join(bad[0])} has shape {np.shape(have[bad[0]])}, "
                             f"the features model expects {tuple(leaves[bad[0]].shape)}")
        out[col] = _unflatten({p: have[p] for p in leaves})
    return out
