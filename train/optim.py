"""Optimisers, learning-rate schedules, weight-decay groups, gradient clipping, loss and EMA
for training (optax), with the semantics of torch.optim and of torchvision's
references/classification/train.py (the `--recipe` presets of train/recipes.py use them).

- Optimisers (`--opt`): "sgd" / "sgd_nesterov" (torch.optim.SGD: weight decay added to the
  gradient, g + wd * p; momentum buf = m * buf + g with the first buf = g; Nesterov g + m * buf;
  p -= lr * update), "rmsprop" as torchvision builds it (torch.optim.RMSprop(alpha=0.9,
  eps=0.0316, momentum, weight_decay): eps added OUTSIDE the square root, square average
  starting at 0, no centering), "adamw" (torch.optim.AdamW's betas (momentum, 0.999), eps 1e-8,
  decoupled decay).
- Weight decay per parameter (`weight_decay_tree`): torchvision's `set_weight_decay`
  (references/classification/utils.py) on Flax paths: parameters whose own name is "bias"
  get `bias_weight_decay`, those named "class_token", "position_embedding" or
  "relative_position_bias_table" get `transformer_embedding_decay` (torchvision's list: ViT's
  `pos_embedding` is not on it, so it keeps the base decay there too), parameters of
  normalisation layers get `norm_weight_decay`, the rest `weight_decay`; a None value means
  "the base decay". A Flax module is a norm layer when it owns a `scale` leaf: flaxnets names
  only norm weights `scale` (torch `weight` of BatchNorm/LayerNorm; flaxnets.convert).
- Gradient clipping by global norm as torch.nn.utils.clip_grad_norm_: g *= min(1, max_norm /
  (||g|| + 1e-6)), on the raw gradients, before weight decay (torchvision clips before
  `optimizer.step()`).
- Schedules: torchvision's (`epoch_lrs`): StepLR / MultiStepLR / CosineAnnealingLR(T_max =
  epochs - warmup, eta_min = lr_min) / ExponentialLR after a LinearLR or ConstantLR warmup of
  `lr_warmup_epochs` in a SequentialLR, stepped once per EPOCH (the lr is constant within an
  epoch), with torch's own recursive (chainable) formulas. "cosine_per_step" (the default)
  is this trainer's earlier schedule: warmup from lr * lr_warmup_decay, then cosine to lr_min,
  updated every optimiser step.
- Cross-entropy with torch's label smoothing: target = (1 - eps) * onehot + eps / K.
- EMA: torchvision's ExponentialMovingAverage (`tv_ema_update`: AveragedModel(use_buffers=True),
  every `model_ema_steps` steps, decay adjusted by `tv_ema_decay`), or this trainer's earlier
  per-step EMA (`--ema-decay`; `ema_update`, decay warmed up as min(decay, (1 + t) / (10 + t))).
"""
from __future__ import annotations

import math
from bisect import bisect_right
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

WARMUP_START = 0.01
OPTIMIZERS = ("sgd", "sgd_nesterov", "rmsprop", "adamw")
LR_SCHEDULERS = ("cosine_per_step", "steplr", "multisteplr", "cosineannealinglr", "exponentiallr")
WARMUP_METHODS = ("linear", "constant")
# torchvision train.py: custom_keys_weight_decay for --transformer-embedding-decay
EMBEDDING_KEYS = ("class_token", "position_embedding", "relative_position_bias_table")
RMSPROP_ALPHA, RMSPROP_EPS = 0.9, 0.0316  # torchvision train.py's torch.optim.RMSprop arguments


# ----------------------------------------------------------------------------- schedules


def lr_schedule(lr: float, total_steps: int, warmup_steps: int, warmup_decay: float = WARMUP_START,
                lr_min: float = 0.0, warmup_method: str = "linear") -> optax.Schedule:
    """Per step: warmup over `warmup_steps` (linear from lr * warmup_decay, or constant at it),
    then cosine from lr to lr_min at `total_steps`."""
    warmup_steps = max(0, min(int(warmup_steps), total_steps))
    cosine = optax.cosine_decay_schedule(lr, max(total_steps - warmup_steps, 1),
                                         alpha=(lr_min / lr) if lr else 0.0)
    if warmup_steps == 0:
        return cosine
    if warmup_method == "constant":
        warmup = optax.constant_schedule(lr * warmup_decay)
    else:
        warmup = optax.linear_schedule(lr * warmup_decay, lr, warmup_steps)
    return optax.join_schedules([warmup, cosine], [warmup_steps])


def epoch_lrs(lr: float, epochs: int, scheduler: str, *, step_size: int = 30, gamma: float = 0.1,
              milestones: Sequence[int] = (), lr_min: float = 0.0, warmup_epochs: int = 0,
              warmup_method: str = "constant", warmup_decay: float = 0.01) -> list[float]:
    """The lr of epochs 0 .. epochs-1 as torchvision's train.py sets them: `scheduler` (a
    torch.optim.lr_scheduler class name, lower case) after a LinearLR(start_factor=warmup_decay)
    or ConstantLR(factor=warmup_decay) warmup of `warmup_epochs` in a SequentialLR, stepped
    once per epoch; torch's chainable get_lr formulas in float64, step by step (so the values
    are torch's to the last bit or nearly: tests/test_recipes.py measures it)."""
    w, f = int(warmup_epochs), float(warmup_decay)
    t_max = epochs - w
    counts = {m: list(milestones).count(m) for m in milestones}
    out, cur = [], float(lr)
    for e in range(epochs):
        if e < w:  # the warmup scheduler's step e
            if e == 0:
                cur = lr * f
            elif warmup_method == "linear":
                cur = cur * (1.0 + (1.0 - f) / (w * f + (e - 1) * (1.0 - f)))
        elif e == w:  # the main scheduler: constructed (w == 0) or SequentialLR's step(0), closed form
            if w == 0 or scheduler in ("steplr", "exponentiallr"):
                cur = float(lr)
            elif scheduler == "multisteplr":
                cur = lr * gamma ** bisect_right(sorted(milestones), 0)
            else:  # cosineannealinglr
                cur = lr_min + (lr - lr_min) * (1 + math.cos(math.pi * 0 / t_max)) / 2
        else:
            t = e - w
            if scheduler == "steplr":
                if t % step_size == 0:
                    cur = cur * gamma
            elif scheduler == "multisteplr":
                if t in counts:
                    cur = cur * gamma ** counts[t]
            elif scheduler == "exponentiallr":
                cur = cur * gamma
            elif scheduler == "cosineannealinglr":
                if (t - 1 - t_max) % (2 * t_max) == 0:
                    cur = cur + (lr - lr_min) * (1 - math.cos(math.pi / t_max)) / 2
                else:
                    cur = ((1 + math.cos(math.pi * t / t_max)) / (1 + math.cos(math.pi * (t - 1) / t_max))
                           * (cur - lr_min) + lr_min)
            else:
                raise ValueError(f"unknown lr scheduler {scheduler!r}: expected one of {LR_SCHEDULERS}")
        out.append(cur)
    return out


def per_epoch_schedule(table: Sequence[float], steps_per_epoch: int) -> optax.Schedule:
    """Step schedule holding table[epoch] for every step of that epoch (the last value after)."""
    values = np.asarray(table, np.float64)
    spe = max(int(steps_per_epoch), 1)

    def schedule(count):
        v = jnp.asarray(values)
        return v[jnp.clip(jnp.asarray(count) // spe, 0, len(values) - 1)]
    return schedule


# ----------------------------------------------------------------------------- weight decay groups


def _path_names(path) -> tuple[str, ...]:
    return tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def weight_decay_tree(params, weight_decay: float, norm_weight_decay: float | None = None,
                      bias_weight_decay: float | None = None, transformer_embedding_decay: float | None = None,
                      wd_on_bn_bias: bool = True):
    """A pytree like `params` of each leaf's weight decay (floats): torchvision's set_weight_decay
    with custom keys [("bias", bias_weight_decay)] + [(k, transformer_embedding_decay) for k in
    EMBEDDING_KEYS] (only those not None) and norm_weight_decay for norm layers; then
    `wd_on_bn_bias=False` (this trainer's older switch) sets every 0/1-d leaf to 0."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    names = [_path_names(p) for p, _ in flat]
    norm_modules = {n[:-1] for n in names if n[-1] == "scale"}
    custom = []
    if bias_weight_decay is not None:
        custom.append(("bias", bias_weight_decay))
    if transformer_embedding_decay is not None:
        custom += [(k, transformer_embedding_decay) for k in EMBEDDING_KEYS]
    out = []
    for n, (_, leaf) in zip(names, flat):
        wd = next((v for k, v in custom if k == n[-1]), None)
        if wd is None:
            wd = norm_weight_decay if norm_weight_decay is not None and n[:-1] in norm_modules else weight_decay
        if not wd_on_bn_bias and np.ndim(leaf) <= 1:
            wd = 0.0
        out.append(float(wd))
    return jax.tree_util.tree_unflatten(treedef, out)


def decay_mask(params, wd_on_bn_bias: bool = True):
    """True for leaves that get weight decay (all, or only >= 2-d ones: kernels)."""
    return jax.tree.map(lambda p: bool(wd_on_bn_bias or jnp.ndim(p) > 1), params)


def add_decayed_weights_tree(wd_fn) -> optax.GradientTransformation:
    """updates + wd * params with a per-leaf wd: `wd_fn(params)` -> pytree of floats (0: none)."""
    def update(updates, state, params=None):
        wd = wd_fn(params)
        return jax.tree.map(lambda g, p, w: g + w * p if w else g, updates, params, wd), state
    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def clip_grad_norm(max_norm: float) -> optax.GradientTransformation:
    """torch.nn.utils.clip_grad_norm_(params, max_norm): g *= clamp(max_norm / (||g||_2 + 1e-6), max=1),
    ||g||_2 the norm of the per-tensor norms."""
    def update(updates, state, params=None):
        leaves = jax.tree.leaves(updates)
        total = jnp.linalg.norm(jnp.stack([jnp.linalg.norm(g.ravel()) for g in leaves]))
        coef = jnp.minimum(max_norm / (total + 1e-6), 1.0)
        return jax.tree.map(lambda g: (g * coef).astype(g.dtype), updates), state
    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


# ----------------------------------------------------------------------------- optimisers


def sgd(learning_rate, momentum: float = 0.9, nesterov: bool = False, weight_decay: float = 0.0,
        mask=None) -> optax.GradientTransformation:
    """torch.optim.SGD(lr, momentum, nesterov=nesterov, weight_decay, dampening=0)."""
    parts = []
    if weight_decay:
        parts.append(optax.add_decayed_weights(weight_decay, mask))
    if momentum:
        parts.append(optax.trace(decay=momentum, nesterov=nesterov))
    parts.append(optax.scale_by_learning_rate(learning_rate))
    return optax.chain(*parts)


def make_optimizer(name: str, learning_rate, *, momentum: float = 0.9, nesterov: bool = False,
                   weight_decay: float = 0.0, wd_on_bn_bias: bool = True, norm_weight_decay: float | None = None,
                   bias_weight_decay: float | None = None, transformer_embedding_decay: float | None = None,
                   clip_grad_norm_max: float | None = None) -> optax.GradientTransformation:
    """The optimiser `name` (OPTIMIZERS, torchvision's `--opt`: "sgd*" is SGD, Nesterov if the name
    says so); `learning_rate` a float or an optax schedule; per-group decay as `weight_decay_tree`."""
    name = name.lower()
    groups = (norm_weight_decay, bias_weight_decay, transformer_embedding_decay)
    if all(g is None for g in groups):
        # One decay value (or none on 0/1-d leaves): the plain optax pieces, as before.
        mask = None if wd_on_bn_bias else (lambda params: decay_mask(params, False))
        decay = [optax.add_decayed_weights(weight_decay, mask)] if weight_decay else []
    else:
        decay = [add_decayed_weights_tree(lambda params: weight_decay_tree(
            params, weight_decay, norm_weight_decay, bias_weight_decay, transformer_embedding_decay,
            wd_on_bn_bias))]
    clip = [clip_grad_norm(clip_grad_norm_max)] if clip_grad_norm_max is not None else []
    if name.startswith("sgd"):
        parts = decay + ([optax.trace(decay=momentum, nesterov=nesterov or "nesterov" in name)] if momentum else [])
    elif name == "rmsprop":
        parts = decay + [optax.scale_by_rms(decay=RMSPROP_ALPHA, eps=RMSPROP_EPS, initial_scale=0.0,
                                            eps_in_sqrt=False)]
        if momentum:
            parts.append(optax.trace(decay=momentum))
    elif name == "adamw":  # optax.adamw's chain (its add_decayed_weights even at 0)
        parts = [optax.scale_by_adam(b1=momentum, b2=0.999, eps=1e-8)] + (
            decay or [optax.add_decayed_weights(0.0, None)])
    else:
        raise ValueError(f"unknown optimizer {name!r}: expected one of {', '.join(OPTIMIZERS)}")
    return optax.chain(*clip, *parts, optax.scale_by_learning_rate(learning_rate))


def schedule_from_config(cfg, steps_per_epoch: int) -> optax.Schedule:
    total = max(cfg.epochs * steps_per_epoch, 1)
    if cfg.lr_scheduler == "cosine_per_step":
        return lr_schedule(cfg.lr, total, round(cfg.lr_warmup_epochs * steps_per_epoch), cfg.lr_warmup_decay,
                           cfg.lr_min, cfg.lr_warmup_method)
    table = epoch_lrs(cfg.lr, max(cfg.epochs, 1), cfg.lr_scheduler, step_size=cfg.lr_step_size,
                      gamma=cfg.lr_gamma, milestones=cfg.lr_milestones, lr_min=cfg.lr_min,
                      warmup_epochs=int(cfg.lr_warmup_epochs), warmup_method=cfg.lr_warmup_method,
                      warmup_decay=cfg.lr_warmup_decay)
    return per_epoch_schedule(table, steps_per_epoch)


def from_config(cfg, steps_per_epoch: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """(optimiser, schedule) for a `train.config.TrainConfig`."""
    schedule = schedule_from_config(cfg, steps_per_epoch)
    tx = make_optimizer(cfg.opt, schedule, momentum=cfg.momentum, nesterov=cfg.nesterov,
                        weight_decay=cfg.weight_decay, wd_on_bn_bias=cfg.wd_on_bn_bias,
                        norm_weight_decay=cfg.norm_weight_decay, bias_weight_decay=cfg.bias_weight_decay,
                        transformer_embedding_decay=cfg.transformer_embedding_decay,
                        clip_grad_norm_max=cfg.clip_grad_norm)
    return tx, schedule


# ----------------------------------------------------------------------------- loss


def cross_entropy(logits, labels, label_smoothing: float = 0.0):
    """Per-example torch.nn.functional.cross_entropy(logits, labels, label_smoothing=...), in float32+.

    ``labels``: class indices (B,), or class probabilities (B, K) (MixUp/CutMix soft targets), which torch
    smooths the same way: (1 - eps) * target + eps / K."""
    logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
    if labels.ndim == logits.ndim:
        targets = labels.astype(logits.dtype)
    else:
        targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    if label_smoothing:
        targets = optax.smooth_labels(targets, label_smoothing)
    return optax.softmax_cross_entropy(logits, targets)


# ----------------------------------------------------------------------------- EMA


def ema_decay_at(decay: float, step):
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def ema_update(ema, new, decay):
    """decay * ema + (1 - decay) * new for float leaves; integer leaves take `new`."""
    def upd(e, n):
        if not jnp.issubdtype(e.dtype, jnp.floating):
            return n
        return (e * decay + n * (1 - decay)).astype(e.dtype)
    return jax.tree.map(upd, ema, new)


def tv_ema_decay(model_ema_decay: float, global_batch: int, model_ema_steps: int, epochs: int) -> float:
    """torchvision train.py's adjusted decay: adjust = world_size * batch_size * model_ema_steps /
    epochs (world_size * batch_size is the global batch); alpha = min(1, (1 - decay) * adjust);
    decay = 1 - alpha."""
    adjust = global_batch * model_ema_steps / epochs
    alpha = min(1.0, (1.0 - model_ema_decay) * adjust)
    return 1.0 - alpha


class TvEma(NamedTuple):
    """What torchvision's train loop does with its ExponentialMovingAverage after optimizer step
    `step` (0-based, global), as a function of the static settings."""
    decay: float            # adjusted (tv_ema_decay)
    every: int              # model_ema_steps
    steps_per_epoch: int
    warmup_epochs: int      # lr_warmup_epochs: during these epochs the average is reset after each update

    def update(self, ema, n_averaged, new, step):
        """(ema, n_averaged) after step `step`: `i % every == 0` (i: the step's index in its
        epoch) -> AveragedModel.update_parameters (copy if n_averaged == 0, else decay * ema +
        (1 - decay) * new on params and buffers), n_averaged += 1, and n_averaged = 0 while
        epoch < warmup_epochs."""
        i, epoch = step % self.steps_per_epoch, step // self.steps_per_epoch
        due = (i % self.every) == 0
        averaged = tv_ema_update(ema, new, n_averaged, self.decay)
        ema = jax.tree.map(lambda a, e: jnp.where(due, a, e), averaged, ema)
        n = jnp.where(due, jnp.where(epoch < self.warmup_epochs, 0, n_averaged + 1), n_averaged)
        return ema, n.astype(jnp.int32)


def tv_ema_update(ema, new, n_averaged, decay: float):
    """torch.optim.swa_utils.AveragedModel.update_parameters with torchvision's ema_avg
    (use_buffers=True): n_averaged == 0 copies `new`; else decay * ema + (1 - decay) * new,
    written back in the leaf's dtype (integer buffers such as num_batches_tracked: computed in
    float32, as torch promotes int64 * float, and truncated by the copy into the integer
    tensor)."""
    def upd(e, n):
        if jnp.issubdtype(e.dtype, jnp.floating):
            avg = decay * e + (1 - decay) * n.astype(e.dtype)
        else:
            avg = jnp.trunc(decay * e.astype(jnp.float32) + (1 - decay) * n.astype(jnp.float32))
        return jnp.where(n_averaged == 0, n.astype(e.dtype), avg.astype(e.dtype))
    return jax.tree.map(upd, ema, new)


def head_mask(model, params):
    """True for the leaves of `model`'s final classifier module (its class's `classifier` path,
    see flaxnets.features), False elsewhere."""
    prefix = tuple(type(model).classifier.split("."))

    def is_head(path, _):
        names = _path_names(path)
        return names[:len(prefix)] == prefix
    return jax.tree_util.tree_map_with_path(is_head, params)


def freeze_all_but(tx: optax.GradientTransformation, trainable) -> optax.GradientTransformation:
    """`tx` with every update outside `trainable` (a bool tree, or a function of params) set
    to 0: frozen parameters never move (weight decay and momentum included)."""
    frozen = (lambda p: jax.tree.map(lambda t: not t, trainable(p))) if callable(trainable) else \
        jax.tree.map(lambda t: not t, trainable)
    return optax.chain(tx, optax.masked(optax.set_to_zero(), frozen))
