"""Layer-by-layer numerical parity between flaxnets models and their torchref twins.

Protocol (torch is the reference): build the torchref model from a seed, randomise every
BatchNorm's affine parameters and running statistics and every bias (random init alone hides
BN bugs), convert its state_dict with `flaxnets.from_torch_state_dict`, then compare

- eval logits (float32) and the output of every module that exists on both sides, matched
  by torchvision module path (Flax module paths mirror torch's);
- train mode in float64: logits, the updated running_mean / running_var /
  num_batches_tracked, and the gradient of a scalar loss for every parameter.

Errors are relative: max |flax - torch| / max |torch|.

Sizes are spatial shapes: (h, w) for images, (length,) for 1-D builds (`spatial_dims=1`):
the random input is then (N, C, L) on the torch side and (N, L, C) on the Flax side, with C the
`in_channels` knob (3 by default).
"""
from __future__ import annotations

import dataclasses
import inspect
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch

import flaxnets
import torchref
from flaxnets.convert import from_torch_state_dict, tensor_to_numpy, to_torch_state_dict


def set_precision() -> None:
    jax.config.update("jax_default_matmul_precision", "highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")


def rel_err(got, ref) -> float:
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        raise AssertionError(f"shape mismatch: flax {got.shape} vs torch {ref.shape}")
    scale = np.max(np.abs(ref)) if ref.size else 0.0
    diff = np.max(np.abs(got - ref)) if ref.size else 0.0
    if scale == 0.0:
        return float(diff)
    return float(diff / scale)


def supported_kwargs(name: str, kwargs: dict) -> dict:
    """The subset of `kwargs` that both builders of `name` accept."""
    keep = set(kwargs)
    for side in (flaxnets.MODELS, torchref.MODELS):
        params = inspect.signature(side.get(name)).parameters
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            keep &= set(params)
    return {k: kwargs[k] for k in kwargs if k in keep}


SIZE_KNOB = "input_size"


def sized_kwargs(name: str, kwargs: dict, size) -> dict:
    """`kwargs` for comparing at `size` = (h, w): a model built for one input size (both
    builders take an `input_size` knob, e.g. MaxViT) is built at `size` unless `kwargs` fixes
    it; other models take every size as they are."""
    if SIZE_KNOB in kwargs or not supported_kwargs(name, {SIZE_KNOB: None}):
        return kwargs
    return {**kwargs, SIZE_KNOB: (int(size[0]), int(size[1]))}


def randomize_(model: torch.nn.Module, seed: int) -> None:
    """Random BN affine/statistics and biases, then every other floating parameter that is
    still constant (LayerNorm affines, class tokens, layer scales, logit scales, zero-initialised
    heads): a constant c becomes c + 0.2 * max(1, |c|) * N(0, 1). In place."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                if m.affine:
                    m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(n, generator=g) * 0.2)
                if m.track_running_stats:
                    m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                    m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                    m.num_batches_tracked.fill_(int(torch.randint(0, 1000, (1,), generator=g)))
            elif getattr(m, "bias", None) is not None and isinstance(m.bias, torch.nn.Parameter):
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
        for p in model.parameters():
            if p.is_floating_point() and p.numel() and bool((p == p.flatten()[0]).all()):
                c = float(p.flatten()[0])
                p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * (0.2 * max(1.0, abs(c))))


def _to_nhwc(t: torch.Tensor) -> np.ndarray:
    """An NCHW / NCL torch input as the NHWC / NLC Flax input."""
    a = tensor_to_numpy(t)
    return _channels_last(a) if a.ndim >= 3 else a


def _channels_last(a: np.ndarray) -> np.ndarray:
    """NCHW / NCL -> NHWC / NLC."""
    return a.transpose(0, *range(2, a.ndim), 1)


def owns_parameters(m: torch.nn.Module) -> bool:
    return any(True for _ in m.parameters(recurse=False))


def torch_forward(model, x_nchw, capture):
    """Logits and {module path: output (torch's layout, numpy)} in execution order.
    `capture`: True (every module), False (none) or a collection of module paths."""
    outs: dict[str, np.ndarray] = {}
    handles = []
    if capture:
        for path, m in model.named_modules():
            if not path or (capture is not True and path not in capture):
                continue

            def hook(mod, inp, out, path=path):
                if isinstance(out, torch.Tensor):
                    outs.pop(path, None)
                    outs[path] = tensor_to_numpy(out.detach().clone())
            handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            logits = model(x_nchw)
    finally:
        for h in handles:
            h.remove()
    return logits, outs


def _flatten_intermediates(tree, prefix=()) -> dict[str, Any]:
    out = {}
    for k, v in tree.items():
        if k == "__call__":
            if len(v) == 1 and isinstance(v[0], jax.Array):
                out[".".join(prefix)] = v[0]
        else:
            out.update(_flatten_intermediates(v, prefix + (k,)))
    return out


def flax_forward(model, variables, x_nhwc, capture):
    """Jitted: compiling the whole forward once costs less CPU than eager op-by-op dispatch,
    most of all with the depthwise fast path's many small ops (figures: docs/parity.md).
    `capture`: True (every module's output), False, or a collection of module paths."""
    if not capture:
        return jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x_nhwc), {}
    which = True if capture is True else (
        lambda mdl, method: method == "__call__" and ".".join(mdl.path) in capture)
    logits, state = jax.jit(lambda v, x: model.apply(v, x, train=False, capture_intermediates=which,
                                                     mutable=["intermediates"]))(variables, x_nhwc)
    return logits, _flatten_intermediates(state["intermediates"])


@dataclasses.dataclass
class LayerReport:
    compared: int
    worst_path: str
    worst_err: float
    first_bad: tuple[str, float] | None
    unmatched: list[str]  # torch modules owning parameters with no Flax output of that shape


def _as_flax_layout(ref: np.ndarray, shape: tuple) -> np.ndarray | None:
    """torch's output in the Flax layout: channels-first maps (NCHW, NCL) are moved to
    channels-last; outputs torch already keeps channels-last (token sequences, Swin's NHWC
    maps) compare as they are. None if neither fits `shape`."""
    if ref.ndim >= 3 and _channels_last(ref).shape == shape:
        return _channels_last(ref)
    return ref if ref.shape == shape else None


def compare_layers(torch_outs: dict, flax_outs: dict, tol: float,
                   must_match: frozenset = frozenset()) -> LayerReport:
    """Compare every torch module output that has a Flax output at the same module path.
    A path in `must_match` (modules owning parameters) without one is reported `unmatched`."""
    compared, worst, first_bad, unmatched = 0, ("", 0.0), None, []
    for path, ref in torch_outs.items():
        got = flax_outs.get(path)
        ref = None if got is None else _as_flax_layout(ref, tuple(got.shape))
        if ref is None:
            if path in must_match:
                unmatched.append(path)
            continue
        err = rel_err(got, ref)
        compared += 1
        if err > worst[1]:
            worst = (path, err)
        if first_bad is None and not err <= tol:
            first_bad = (path, err)
    return LayerReport(compared, worst[0], worst[1], first_bad, unmatched)


def compare_features(torch_outs: dict, flax_outs: dict, paths) -> float:
    """Worst relative error over the module outputs at `paths`; raises if one is missing."""
    worst = 0.0
    for p in sorted(paths):
        if p not in torch_outs or p not in flax_outs:
            raise AssertionError(f"feature path {p}: no {'torch' if p not in torch_outs else 'Flax'} output")
        ref = _as_flax_layout(torch_outs[p], tuple(flax_outs[p].shape))
        if ref is None:
            raise AssertionError(f"feature path {p}: torch {torch_outs[p].shape} vs Flax {flax_outs[p].shape}")
        worst = max(worst, rel_err(flax_outs[p], ref))
    return worst


def random_input(batch: int, h: int, w: int, dtype, seed: int) -> torch.Tensor:
    return random_input_nd(batch, (h, w), dtype, seed)


def random_input_nd(batch: int, size: tuple, dtype, seed: int, channels: int = 3) -> torch.Tensor:
    """(batch, channels, *size) standard normal: NCHW for (h, w), NCL for (length,)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, *size, generator=g, dtype=dtype)


def _size_name(size) -> str:
    return "x".join(str(int(s)) for s in size)


def build_pair(name: str, kwargs: dict, seed: int, dtype=torch.float32):
    torch.manual_seed(seed)
    tmodel = torchref.create_model(name, **kwargs).to(dtype)
    randomize_(tmodel, seed + 1)
    return tmodel, flaxnets.create_model(name, **kwargs)


def eval_parity(name: str, sizes, kwargs: dict, *, batch: int = 2, tol: float = 1e-5,
                seed: int = 0, layers_at_every_size: bool = False) -> dict:
    """float32 eval: bit-exact round trip, logits at each size, layers at the first size
    (`layers`; with layers_at_every_size, also `layers_at` {size: report} for every size).
    Sizes are (h, w) or, for `spatial_dims=1` builds, (length,); models built for one input
    size are built, converted and round-tripped per size."""
    kwargs = supported_kwargs(name, kwargs)
    result: dict[str, Any] = {"model": name, "roundtrip": "bit-exact", "logits": {}}
    channels = int(kwargs.get("in_channels", 3))
    built = None
    for i, size in enumerate(sizes):
        size = tuple(size)
        kw = sized_kwargs(name, kwargs, size)
        if built is None or built[0] != kw:  # models built for one input size: one per size
            built = (kw, *_converted_pair(name, kw, seed))
        _, tmodel, fmodel, variables = built
        x = random_input_nd(batch, size, torch.float32, seed + 2 + i, channels)
        paths = frozenset(d["module"] for d in flaxnets.feature_info(name, **kw))
        capture = True if i == 0 or layers_at_every_size else paths
        t_logits, t_outs = torch_forward(tmodel, x, capture)
        f_logits, f_outs = flax_forward(fmodel, variables, jnp.asarray(_to_nhwc(x)), capture)
        result["logits"][_size_name(size)] = rel_err(f_logits, tensor_to_numpy(t_logits))
        # the backbone's feature maps (flaxnets.feature_info): the outputs at those paths
        result.setdefault("features", {})[_size_name(size)] = compare_features(t_outs, f_outs, paths)
        if capture:
            owners = frozenset(p for p, m in tmodel.named_modules() if p and owns_parameters(m))
            rep = dataclasses.asdict(compare_layers(t_outs, f_outs, tol, owners))
            result.setdefault("layers", rep)
            if layers_at_every_size:
                result.setdefault("layers_at", {})[_size_name(size)] = rep
    return result


def _converted_pair(name: str, kwargs: dict, seed: int):
    """The eval-mode torchref model, its Flax twin and the converted variables, after checking
    the torch -> flax -> torch round trip is bit-exact in torch's key order."""
    tmodel, fmodel = build_pair(name, kwargs, seed)
    tmodel.eval()
    sd = tmodel.state_dict()
    variables = from_torch_state_dict(name, sd, **kwargs)
    back = to_torch_state_dict(name, variables, **kwargs)
    if list(back) != list(sd):  # torchvision's key order, reproduced exactly
        first = next(i for i, (a, b) in enumerate(zip(back, sd)) if a != b) if set(back) == set(sd) else None
        raise AssertionError(f"{name}: round trip keys differ from torch's "
                             + (f"in order at position {first}" if first is not None
                                else f"(missing {sorted(set(sd) - set(back))[:5]}, "
                                     f"extra {sorted(set(back) - set(sd))[:5]})"))
    for k, v in sd.items():
        if v.dtype != back[k].dtype or not torch.equal(v, back[k]):
            raise AssertionError(f"{name}: round trip torch->flax->torch changed {k}")
    return tmodel, fmodel, variables


def _loss_weights(shape, seed) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def train_parity(name: str, size, kwargs: dict, *, batch: int = 2, seed: int = 0) -> dict:
    """float64 train mode: logits, updated BN statistics and every parameter's gradient."""
    kwargs = sized_kwargs(name, supported_kwargs(name, kwargs), size)
    with jax.enable_x64(True):
        tmodel, fmodel = build_pair(name, kwargs, seed, torch.float64)
        tmodel.train()
        variables = from_torch_state_dict(name, tmodel.state_dict(), **kwargs)
        x = random_input_nd(batch, tuple(size), torch.float64, seed + 7,
                            int(kwargs.get("in_channels", 3)))
        t_out = tmodel(x)
        t_outs = t_out if isinstance(t_out, (tuple, list)) else (t_out,)
        weights = [_loss_weights(tuple(o.shape), seed + 11 + i) for i, o in enumerate(t_outs)]
        loss = sum((o * torch.from_numpy(wt)).sum() for o, wt in zip(t_outs, weights))
        loss.backward()
        t_grads = {k: tensor_to_numpy(p.grad) for k, p in tmodel.named_parameters()}
        t_state = {k: tensor_to_numpy(v).copy() for k, v in tmodel.state_dict().items()  # buffers only:
                   if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}  # views pin params
        t_logits = [tensor_to_numpy(o.detach()) for o in t_outs]
        del tmodel, t_out, t_outs, loss

        def loss_fn(params):
            out, upd = fmodel.apply({"params": params, "batch_stats": variables.get("batch_stats", {})},
                                    jnp.asarray(_to_nhwc(x)), train=True, mutable=["batch_stats"],
                                    rngs={"dropout": jax.random.key(0)})
            outs = out if isinstance(out, (tuple, list)) else (out,)
            total = sum(jnp.sum(o * jnp.asarray(wt)) for o, wt in zip(outs, weights))
            return total, (outs, upd.get("batch_stats", {}))

        grad_fn = jax.grad(loss_fn, has_aux=True)
        if os.environ.get("PARITY_TRAIN_JIT", "1") == "1":
            grad_fn = jax.jit(grad_fn)
        grads, (f_outs, f_stats) = grad_fn(variables["params"])
        # Memory: about four model-sized float64 copies at the peak, not six (the parameters are
        # dropped once the gradients exist), so regnet_y_128gf fits in 23 GB.
        variables = None  # noqa: F841 (loss_fn's closure held the parameters)
        f_sd = to_torch_state_dict(name, {"params": grads, "batch_stats": f_stats}, **kwargs)
        del grads
        res: dict[str, Any] = {"model": name, "size": _size_name(size)}
        res["logits"] = max(rel_err(f, t) for f, t in zip(f_outs, t_logits))
        res.update(_compare_train_state(name, t_grads, t_state, f_sd))
        return res


def _compare_train_state(name: str, t_grads: dict, t_state: dict, f_sd: dict) -> dict:
    """Worst gradient and BN running-statistic errors (Flax's `f_sd`, torch layout, against
    torch's); num_batches_tracked must be equal."""
    # A bias feeding a train-mode BN through a linear path (e.g. a projection BN followed
    # by the next conv + BN) has an analytically zero gradient: both sides return rounding
    # noise (~1e-17 of the largest gradient). Such tensors are measured against the
    # model's largest gradient, which still demands that Flax's value is ~0 too.
    g_scale = max(float(np.max(np.abs(g))) if g.size else 0.0 for g in t_grads.values())

    def grad_err(key, ref):
        got = tensor_to_numpy(f_sd[key])
        if ref.size and float(np.max(np.abs(ref))) <= 1e-12 * g_scale:
            return float(np.max(np.abs(got.astype(np.float64) - ref)) / g_scale)
        return rel_err(got, ref)

    grad_errs = {k: grad_err(k, g) for k, g in t_grads.items()}
    stat_keys = [k for k in t_state if k.endswith(("running_mean", "running_var"))]
    stat_errs = {k: rel_err(tensor_to_numpy(f_sd[k]), t_state[k]) for k in stat_keys}
    for k in t_state:
        if k.endswith("num_batches_tracked") and int(f_sd[k]) != int(t_state[k]):
            raise AssertionError(f"{name}: {k} flax {int(f_sd[k])} vs torch {int(t_state[k])}")
    worst_g = max(grad_errs.items(), key=lambda kv: kv[1])
    worst_s = max(stat_errs.items(), key=lambda kv: kv[1]) if stat_errs else ("", 0.0)
    return {"grads": worst_g[1], "grads_worst_key": worst_g[0],
            "running_stats": worst_s[1], "running_stats_worst_key": worst_s[0]}


# ----------------------------------------------------------------------------- backbones
def _torch_to_flax_layout(t, shape: tuple):
    """A torch module output (tensor, autograd kept) in the Flax layout `shape` (channels-first
    maps moved to channels-last; outputs already channels-last kept)."""
    if t.ndim >= 3 and tuple(t.permute(0, *range(2, t.ndim), 1).shape) == shape:
        return t.permute(0, *range(2, t.ndim), 1)
    if tuple(t.shape) != shape:
        raise AssertionError(f"torch output {tuple(t.shape)} does not fit the Flax shape {shape}")
    return t


def _hooked_forward(tmodel, x, paths):
    """Run `tmodel(x)` recording the outputs at `paths` (autograd kept)."""
    outs, modules = {}, dict(tmodel.named_modules())
    # (a clone: a later in-place op, e.g. DenseNet's F.relu(features, inplace=True) after norm5,
    # would rewrite the recorded tensor; clone keeps autograd)
    handles = [modules[p].register_forward_hook(lambda mod, inp, out, p=p: outs.__setitem__(p, out.clone()))
               for p in paths]
    try:
        tmodel(x)
    finally:
        for h in handles:
            h.remove()
    return outs


def _headless_forward(tmodel, x, head: str):
    """`tmodel(x)` with the module at `head` replaced by the identity (torch's reading of
    timm's `num_classes=0`)."""
    parent_path, _, attr = head.rpartition(".")
    parent = tmodel.get_submodule(parent_path) if parent_path else tmodel
    original = getattr(parent, attr)
    setattr(parent, attr, torch.nn.Identity())
    try:
        return tmodel(x)
    finally:
        setattr(parent, attr, original)


def _features_layout(fmodel, path: str, ref, x_nhwc, shape: tuple):
    """A torch module output (numpy or tensor) as the features model's map at `path`: ViT's
    token sequences (already (N, L, D) in torch) through the model's `feature_map`; maps
    moved to channels-last where torch keeps them channels-first."""
    if hasattr(fmodel, "feature_map"):
        return fmodel.feature_map(path, ref, x_nhwc)
    if isinstance(ref, torch.Tensor):
        return _torch_to_flax_layout(ref, shape)
    return _as_flax_layout(ref, shape)


def _flat_leaves(variables) -> dict:
    return {k: np.asarray(v) for k, v in jax.tree_util.tree_flatten_with_path(variables)[0]}


def features_eval_parity(name: str, sizes, kwargs: dict, *, batch: int = 2, seed: int = 0) -> dict:
    """float32 eval of the backbones: `create_model(name, features_only=True)` (every feature
    map) and `num_classes=0` (the pooled features), converted from the full torch checkpoint
    with `features_only=True` / `num_classes=0`, against the torch module outputs at the
    `feature_info` paths and the input of the classifier module."""
    kwargs = supported_kwargs(name, kwargs)
    res: dict[str, Any] = {"model": name, "features": {}, "pooled": {}}
    for i, size in enumerate(sizes):
        size = tuple(size)
        kw = sized_kwargs(name, kwargs, size)
        tmodel, _ = build_pair(name, kw, seed)
        tmodel.eval()
        sd = tmodel.state_dict()
        fmodel = flaxnets.create_model(name, features_only=True, **kw)
        pmodel = flaxnets.create_model(name, num_classes=0, **kw)
        fvars, left_out = from_torch_state_dict(name, sd, features_only=True, return_left_out=True, **kw)
        pvars = from_torch_state_dict(name, sd, num_classes=0, **kw)
        res["left_out"] = left_out
        # The features model's variables are the pooled model's, less what follows the last map:
        # one jit runs both on the same arrays (one trunk to compile).
        flat_f, flat_p = _flat_leaves(fvars), _flat_leaves(pvars)
        if not set(flat_f) <= set(flat_p) or any(not np.array_equal(flat_f[k], flat_p[k]) for k in flat_f):
            raise AssertionError(f"{name}: features_only variables are not a subset of num_classes=0's")
        x = random_input_nd(batch, size, torch.float32, seed + 2 + i, int(kw.get("in_channels", 3)))
        xf = jnp.asarray(_to_nhwc(x))
        feats, pooled = jax.jit(lambda v, x: (fmodel.apply(v, x, train=False),
                                              pmodel.apply(v, x, train=False)))(pvars, xf)
        with torch.no_grad():
            t = _hooked_forward(tmodel, x, fmodel.feature_paths)
            t_pooled = tensor_to_numpy(_headless_forward(tmodel, x, type(fmodel).classifier))
        errs = []
        for p, f in zip(fmodel.feature_paths, feats):
            ref = tensor_to_numpy(t[p])
            ref = _features_layout(fmodel, p, ref, xf, tuple(f.shape))
            if ref is None or tuple(ref.shape) != tuple(f.shape):
                raise AssertionError(f"{name}: feature {p}: torch {tuple(t[p].shape)} vs Flax {tuple(f.shape)}")
            errs.append(rel_err(f, ref))
        res["features"][_size_name(size)] = max(errs)
        if tuple(pooled.shape) != tuple(t_pooled.shape):
            raise AssertionError(f"{name}: pooled features torch {t_pooled.shape} vs Flax {pooled.shape}")
        res["pooled"][_size_name(size)] = rel_err(pooled, t_pooled)
    return res


def features_train_parity(name: str, size, kwargs: dict, *, batch: int = 2, seed: int = 0) -> dict:
    """float64 train mode of the features model (every feature map): the maps, the updated BN
    statistics and the gradient of a scalar loss on all maps for every backbone parameter."""
    kwargs = sized_kwargs(name, supported_kwargs(name, kwargs), size)
    if "aux_logits" in inspect.signature(torchref.MODELS.get(name)).parameters:
        kwargs["aux_logits"] = False  # (a train-mode torch forward would run the auxiliary heads)
    with jax.enable_x64(True):
        tmodel, _ = build_pair(name, kwargs, seed, torch.float64)
        tmodel.train()
        fmodel = flaxnets.create_model(name, features_only=True, **kwargs)
        variables = from_torch_state_dict(name, tmodel.state_dict(), features_only=True, **kwargs)
        x = random_input_nd(batch, tuple(size), torch.float64, seed + 7, int(kwargs.get("in_channels", 3)))
        xf = jnp.asarray(_to_nhwc(x))
        stats = variables.get("batch_stats", {})

        def forward(params):
            return fmodel.apply({"params": params, "batch_stats": stats}, xf, train=True,
                                mutable=["batch_stats"], rngs={"dropout": jax.random.key(0)})

        shapes = [tuple(o.shape) for o in jax.eval_shape(forward, variables["params"])[0]]
        weights = [_loss_weights(sh, seed + 11 + i) for i, sh in enumerate(shapes)]
        t = _hooked_forward(tmodel, x, fmodel.feature_paths)
        t_maps = [_features_layout(fmodel, p, t[p], xf, sh) for p, sh in zip(fmodel.feature_paths, shapes)]
        loss = sum((m * torch.from_numpy(w)).sum() for m, w in zip(t_maps, weights))
        loss.backward()
        t_grads = {k: tensor_to_numpy(p.grad) for k, p in tmodel.named_parameters() if p.grad is not None}
        t_state = {k: tensor_to_numpy(v).copy() for k, v in tmodel.state_dict().items()
                   if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
        t_maps = [tensor_to_numpy(m.detach()) for m in t_maps]
        del tmodel, t, loss

        def loss_fn(params):
            outs, upd = forward(params)
            return sum(jnp.sum(o * jnp.asarray(w)) for o, w in zip(outs, weights)), (outs, upd.get("batch_stats", {}))

        grads, (f_maps, f_stats) = jax.jit(jax.grad(loss_fn, has_aux=True))(variables["params"])
        f_sd = to_torch_state_dict(name, {"params": grads, "batch_stats": f_stats}, features_only=True, **kwargs)
        f_params = {k for k in f_sd if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
                    and k not in flaxnets.convert.derived_buffers(fmodel)}
        if set(t_grads) != f_params:
            raise AssertionError(f"{name}: backbone parameters with a torch gradient "
                                 f"{sorted(set(t_grads) - f_params)[:5]} vs Flax parameters without one "
                                 f"{sorted(f_params - set(t_grads))[:5]}")
        t_state = {k: v for k, v in t_state.items() if k in f_sd}  # (heads past the trunk: not in the backbone)
        res: dict[str, Any] = {"model": name, "size": _size_name(size), "maps": len(f_maps)}
        res["features"] = max(rel_err(f, r) for f, r in zip(f_maps, t_maps))
        res.update(_compare_train_state(name, t_grads, t_state, f_sd))
        return res
