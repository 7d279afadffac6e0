"""Pure train/eval steps and their sharded `jax.jit` wrappers.

`train_step(state, batch)` does one optimiser update on a global batch (gradient clipping and
weight decay live in the optax chain, train/optim.py), then the EMA update (torchvision's with
`StepConfig.tv_ema`, else the per-step one), optionally as
`grad_accum` sequential micro-batches (gradients averaged, BatchNorm statistics updated
once per micro-batch, as a torch loop with accumulation does). Dropout keys derive from
(seed, step, micro-batch), so a resumed run replays exactly. With `StepConfig.preprocess`
(`train.preprocess.DeviceFinish`) the step takes the input pipeline's raw uint8 batch and first
finishes it on the device: normalisation, RandomErasing, MixUp/CutMix over the global batch.

`compile_steps` jits both over a 1-D ("data",) mesh: batches split on "data", the state
replicated (and donated). Under jit, BatchNorm's batch statistics are global over devices
and processes, so N devices compute what 1 device computes for the same global batch.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from train import optim
from train.state import TrainState


@dataclasses.dataclass(frozen=True)
class StepConfig:
    label_smoothing: float = 0.0
    grad_accum: int = 1
    ema_decay: float = 0.0
    seed: int = 0
    tv_ema: optim.TvEma | None = None   # torchvision's EMA (--model-ema) instead of the per-step one
    train_mode: bool = True             # False (--freeze-backbone): the forward runs in eval mode
    preprocess: Callable | None = None  # raw batch -> model batch on the device (train.preprocess.DeviceFinish)


def _loss_and_updates(model, train_mode, params, batch_stats, images, labels, key, label_smoothing):
    variables = {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}
    logits, new = model.apply(variables, images, train=train_mode, mutable=["batch_stats"], rngs={"dropout": key})
    loss = optim.cross_entropy(logits, labels, label_smoothing).mean()
    hard = jnp.argmax(labels, -1) if labels.ndim == 2 else labels  # soft (mixed) labels: their argmax
    correct = jnp.sum(jnp.argmax(logits, -1) == hard)
    return loss, (correct, new.get("batch_stats", batch_stats))


def train_step(state: TrainState, batch: dict, *, model, tx: optax.GradientTransformation, cfg: StepConfig,
               micro_sharding: Any = None) -> tuple[TrainState, dict]:
    """One update. Returns the new state and {"loss": mean loss, "top1": accuracy} of the batch."""
    key = jax.random.fold_in(jax.random.key(cfg.seed), state.step)
    grad_fn = jax.value_and_grad(functools.partial(_loss_and_updates, model, cfg.train_mode), has_aux=True)
    if cfg.preprocess is not None:  # the global batch: MixUp's partner rows may live on other devices
        batch = cfg.preprocess(batch)
    images, labels = batch["image"], batch["label"]
    if cfg.grad_accum == 1:
        (loss, (correct, batch_stats)), grads = grad_fn(state.params, state.batch_stats, images, labels,
                                                        key, cfg.label_smoothing)
    else:
        a = cfg.grad_accum

        # Micro-batch i takes rows i, i + a, i + 2a, ...: each device keeps its own rows.
        def split(x):
            x = jnp.swapaxes(x.reshape((x.shape[0] // a, a) + x.shape[1:]), 0, 1)
            return x if micro_sharding is None else jax.lax.with_sharding_constraint(x, micro_sharding)

        def body(carry, xs):
            g_sum, bs = carry
            i, img, lab = xs
            (l, (c, bs)), g = grad_fn(state.params, bs, img, lab, jax.random.fold_in(key, i), cfg.label_smoothing)
            return (jax.tree.map(jnp.add, g_sum, g), bs), (l, c)

        zeros = jax.tree.map(jnp.zeros_like, state.params)
        (grads, batch_stats), (losses, corrects) = jax.lax.scan(
            body, (zeros, state.batch_stats), (jnp.arange(a), split(images), split(labels)))
        grads = jax.tree.map(lambda g: g / a, grads)
        loss, correct = losses.mean(), corrects.sum()
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema, ema_count = state.ema, state.ema_count
    if ema is not None and cfg.tv_ema is not None:
        ema, ema_count = cfg.tv_ema.update(ema, ema_count, {"params": params, "batch_stats": batch_stats},
                                           state.step)
    elif ema is not None:
        d = optim.ema_decay_at(cfg.ema_decay, state.step.astype(jnp.float32))
        ema = optim.ema_update(ema, {"params": params, "batch_stats": batch_stats}, d)
    new = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state, ema=ema,
                        ema_count=ema_count)
    return new, {"loss": loss, "top1": correct / labels.shape[0]}


def eval_step(variables: dict, batch: dict, *, model) -> dict:
    """Masked sums over the batch: loss, top-1 and top-5 hits, example count."""
    logits = model.apply(variables, batch["image"], train=False)
    labels, mask = batch["label"], batch["mask"]
    loss = optim.cross_entropy(logits, labels)
    k = min(5, logits.shape[-1])
    topk = jax.lax.top_k(logits.astype(jnp.float32), k)[1]
    hit1 = (topk[:, 0] == labels)
    hit5 = jnp.any(topk == labels[:, None], axis=-1)
    f32 = lambda x: jnp.sum(x.astype(jnp.float32) * mask)
    return {"loss": f32(loss), "top1": f32(hit1), "top5": f32(hit5), "count": jnp.sum(mask)}


# ----------------------------------------------------------------------------- sharding


def make_mesh(devices=None) -> Mesh:
    devices = jax.devices() if devices is None else devices
    return jax.make_mesh((len(devices),), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=devices)


def check_batch(global_batch: int, grad_accum: int, num_devices: int, process_count: int = 1) -> None:
    """Raises ValueError (before anything is compiled) if the batch cannot be split evenly."""
    if global_batch <= 0 or grad_accum <= 0:
        raise ValueError(f"--batch-size ({global_batch}) and --grad-accum ({grad_accum}) must be positive")
    if global_batch % grad_accum:
        raise ValueError(f"--batch-size {global_batch} is not divisible by --grad-accum {grad_accum}")
    micro = global_batch // grad_accum
    if micro % num_devices:
        what = f"micro-batch {micro} (--batch-size {global_batch} / --grad-accum {grad_accum})" \
            if grad_accum > 1 else f"--batch-size {global_batch}"
        raise ValueError(f"{what} is not divisible by the device count {num_devices}: use a multiple of "
                         f"{num_devices * grad_accum}")
    if global_batch % process_count:
        raise ValueError(f"--batch-size {global_batch} is not divisible by the process count {process_count}")


def abstract(tree, sharding):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def abstract_batch(mesh: Mesh, n: int, image_shape: tuple, with_mask: bool = False, soft_labels: int = 0) -> dict:
    """soft_labels=K: float32 (n, K) labels (MixUp/CutMix targets) instead of int32 (n,)."""
    label = jax.ShapeDtypeStruct((n, soft_labels), jnp.float32) if soft_labels else \
        jax.ShapeDtypeStruct((n,), jnp.int32)
    b = {"image": jax.ShapeDtypeStruct((n,) + tuple(image_shape), jnp.float32), "label": label}
    if with_mask:
        b["mask"] = jax.ShapeDtypeStruct((n,), jnp.float32)
    return abstract(b, NamedSharding(mesh, P("data")))


def abstract_spec(mesh: Mesh, spec: dict) -> dict:
    """Abstract batch sharded on "data" from {key: (shape, dtype)} (train.data.raw_batch_spec)."""
    return abstract({k: jax.ShapeDtypeStruct(shape, dtype) for k, (shape, dtype) in spec.items()},
                    NamedSharding(mesh, P("data")))


def lower_train(model, tx, cfg: StepConfig, mesh: Mesh, abstract_state: TrainState, batch: dict):
    """Traces the sharded, state-donating train step (`.compile()` it, possibly in a thread)."""
    repl, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    fn = functools.partial(train_step, model=model, tx=tx, cfg=cfg, micro_sharding=NamedSharding(mesh, P(None, "data")))
    jitted = jax.jit(fn, in_shardings=(repl, data), out_shardings=(repl, repl), donate_argnums=0)
    return jitted.lower(abstract(abstract_state, repl), batch)


def lower_eval(model, mesh: Mesh, abstract_variables: dict, batch: dict):
    repl, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    jitted = jax.jit(functools.partial(eval_step, model=model), in_shardings=(repl, data), out_shardings=repl)
    return jitted.lower(abstract(abstract_variables, repl), batch)


def compile_timed(lowered) -> tuple[Any, dict]:
    """(compiled, {"seconds": wall, "cpu_seconds": process CPU time while compiling})."""
    t, c = time.perf_counter(), time.process_time()
    out = lowered.compile()
    return out, {"seconds": time.perf_counter() - t, "cpu_seconds": time.process_time() - c}


@dataclasses.dataclass
class CompiledSteps:
    train: Callable            # (state, batch) -> (state, metrics); donates state
    eval: Callable             # (variables, batch) -> sums


def compile_steps(model, tx, cfg: StepConfig, mesh: Mesh, abstract_state: TrainState, image_shape: tuple,
                  global_batch: int, eval_batch: int) -> CompiledSteps:
    """Both steps, compiled one after the other."""
    train = lower_train(model, tx, cfg, mesh, abstract_state, abstract_batch(mesh, global_batch, image_shape))
    ev = lower_eval(model, mesh, abstract_state.variables(), abstract_batch(mesh, eval_batch, image_shape, True))
    return CompiledSteps(train.compile(), ev.compile())


def global_batch(local: dict, mesh: Mesh) -> dict:
    """Assembles each process's local rows into global arrays sharded on "data"."""
    data = NamedSharding(mesh, P("data"))
    return {k: jax.make_array_from_process_local_data(data, v) for k, v in local.items()}
