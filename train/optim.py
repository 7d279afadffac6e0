"""Optimisers, learning-rate schedule, loss and EMA for training (optax).

- SGD with torch.optim.SGD semantics: weight decay is added to the gradient (g + wd * p),
  then momentum (buf = m * buf + g, first buf = g), Nesterov (g + m * buf) optional, then
  p -= lr * update.
- AdamW (decoupled weight decay, torch.optim.AdamW's default betas/eps).
- Weight decay can exempt BatchNorm and bias parameters: every leaf with ndim <= 1.
- Schedule: linear warmup from lr/100 to lr, then cosine decay to 0 at the last step
  (torchvision's LinearLR(start_factor=0.01) + CosineAnnealingLR recipe, per step).
- Cross-entropy with torch's label smoothing: target = (1 - eps) * onehot + eps / K.
- EMA of params and float BatchNorm statistics (integer leaves such as
  `num_batches_tracked` are copied), decay warmed up as min(decay, (1 + t) / (10 + t)).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

WARMUP_START = 0.01


def lr_schedule(lr: float, total_steps: int, warmup_steps: int) -> optax.Schedule:
    """Linear warmup from lr * 0.01 over `warmup_steps`, then cosine to 0 at `total_steps`."""
    warmup_steps = max(0, min(int(warmup_steps), total_steps))
    cosine = optax.cosine_decay_schedule(lr, max(total_steps - warmup_steps, 1))
    if warmup_steps == 0:
        return cosine
    warmup = optax.linear_schedule(lr * WARMUP_START, lr, warmup_steps)
    return optax.join_schedules([warmup, cosine], [warmup_steps])


def decay_mask(params, wd_on_bn_bias: bool = True):
    """True for leaves that get weight decay (all, or only >= 2-d ones: kernels)."""
    return jax.tree.map(lambda p: bool(wd_on_bn_bias or jnp.ndim(p) > 1), params)


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
                   weight_decay: float = 0.0, wd_on_bn_bias: bool = True) -> optax.GradientTransformation:
    """The optimiser `name` ("sgd" | "adamw"); `learning_rate` is a float or an optax schedule."""
    mask = None if wd_on_bn_bias else (lambda params: decay_mask(params, False))
    if name == "sgd":
        return sgd(learning_rate, momentum, nesterov, weight_decay, mask)
    if name == "adamw":
        return optax.adamw(learning_rate, b1=momentum, b2=0.999, eps=1e-8, weight_decay=weight_decay, mask=mask)
    raise ValueError(f"unknown optimizer {name!r}: expected sgd or adamw")


def from_config(cfg, steps_per_epoch: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """(optimiser, schedule) for a `train.config.TrainConfig`."""
    total = max(cfg.epochs * steps_per_epoch, 1)
    schedule = lr_schedule(cfg.lr, total, round(cfg.warmup_epochs * steps_per_epoch))
    tx = make_optimizer(cfg.optimizer, schedule, momentum=cfg.momentum, nesterov=cfg.nesterov,
                        weight_decay=cfg.weight_decay, wd_on_bn_bias=cfg.wd_on_bn_bias)
    return tx, schedule


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


def ema_decay_at(decay: float, step):
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def ema_update(ema, new, decay):
    """decay * ema + (1 - decay) * new for float leaves; integer leaves take `new`."""
    def upd(e, n):
        if not jnp.issubdtype(e.dtype, jnp.floating):
            return n
        return (e * decay + n * (1 - decay)).astype(e.dtype)
    return jax.tree.map(upd, ema, new)
