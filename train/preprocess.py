"""The on-device end of the train input pipeline: normalisation, RandomErasing and MixUp/CutMix.

``train.data.train_batches(..., raw=True)`` stops before torchvision's ``ToDtype(float32,
scale=True)`` + ``Normalize``: its batches carry the augmented uint8 images (a quarter of the
bytes a float32 batch has to cross from grain's worker processes and to the device) with the
draws of what follows (RandomErasing boxes, the step's MixUp/CutMix choice and weights).
``DeviceFinish`` applies those steps inside the jitted train step, on the global batch, and
gives exactly (bit for bit) the float32 batch that ``raw=False`` builds on the host with
numpy, on every backend:

- normalisation is a lookup in a 256 x 3 table made on the host by the host's own
  ``augment.normalize`` (XLA is free to rewrite ``(x / 255 - mean) / std`` arithmetic, e.g.
  a division by a constant into a multiplication by its reciprocal, and did: 1 ulp off);
- RandomErasing (value 0, after normalisation, as torchvision's preset) and CutMix are
  selections;
- MixUp's ``rolled * (1 - lam) + images * lam`` keeps the rounding of each product (as numpy
  and torch's separate kernels have it): a NaN-select between product and sum keeps LLVM from
  contracting them into an FMA, which it does otherwise (measured on XLA:CPU). The weights
  ``float32(lam)``, ``float32(1 - lam)`` are computed on the host in float64 as numpy does.

The partner of row 0 is the last row of the *global* batch (``jnp.roll`` over the sharded
batch axis), so no process reads an extra example.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from train import augment

MIXUP, CUTMIX = 1, 2


def normalize_table(mean, std) -> np.ndarray:
    """(256, 3) float32: ``augment.normalize`` of every uint8 value in each channel."""
    return augment.normalize(np.repeat(np.arange(256, dtype=np.uint8)[:, None], len(mean), 1), mean, std)


def raw_extras(n: int, erase: bool, mix: bool) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shapes and dtypes of a raw batch's keys besides "image" and "label" (each row-major, n rows)."""
    out = {}
    if erase:
        out["erase"] = ((n, 4), np.int32)      # (top, left, height, width); height 0: not erased
    if mix:
        out["mix_kind"] = ((n,), np.int32)     # MIXUP or CUTMIX (the same in every row: the step's draw)
        out["mix_w"] = ((n, 2), np.float32)    # (float32(lam), float32(1 - lam))
        out["mix_box"] = ((n, 4), np.int32)    # CutMix's (x1, y1, x2, y2)
    return out


def _box_mask(h: int, w: int, top, left, height, width):
    rows = jnp.arange(h)[:, None]
    cols = jnp.arange(w)[None, :]
    return (rows >= top) & (rows < top + height) & (cols >= left) & (cols < left + width)


def _rounded(p):
    # A select between the product and its add: LLVM may not contract a*w + c into an FMA across it (it
    # could only drop the select knowing p is never NaN, which fast-math's no-NaNs would allow; XLA runs
    # without it). optimization_barrier and reduce_precision do not survive XLA:CPU's fusion: measured.
    return jnp.where(jnp.isnan(p), jnp.zeros((), p.dtype), p)


def _weighted_sum(a, wa, b, wb):
    """a * wa + b * wb with each product rounded (never an FMA), as numpy and torch compute it."""
    return _rounded(a * wa) + _rounded(b * wb)


@dataclasses.dataclass(frozen=True)
class DeviceFinish:
    """Turns a raw batch (see module docstring) into the model's float32 batch; a pure jax function."""
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int = 0     # soft labels' width (MixUp/CutMix)
    erase: bool = False
    mix: bool = False

    def __call__(self, batch: dict) -> dict:
        u8 = batch["image"]
        if u8.dtype != jnp.uint8:
            raise TypeError(f"DeviceFinish expects the uint8 images of train_batches(raw=True), got {u8.dtype}")
        table = jnp.asarray(normalize_table(self.mean, self.std))
        x = table[u8.astype(jnp.int32), jnp.arange(u8.shape[-1])]
        h, w = x.shape[1:3]
        out = {k: v for k, v in batch.items() if k not in ("image", "erase", "mix_kind", "mix_w", "mix_box")}
        if self.erase:
            e = batch["erase"]
            m = jax.vmap(lambda b: _box_mask(h, w, b[0], b[1], b[2], b[3]))(e)
            x = jnp.where(m[..., None], jnp.zeros((), x.dtype), x)
        labels = batch["label"]
        if self.mix:
            wl, w1 = batch["mix_w"][0, 0], batch["mix_w"][0, 1]
            rolled = jnp.roll(x, 1, axis=0)
            x1, y1, x2, y2 = (batch["mix_box"][0, i] for i in range(4))
            cut = jnp.where(_box_mask(h, w, y1, x1, y2 - y1, x2 - x1)[None, :, :, None], rolled, x)
            x = jnp.where(batch["mix_kind"][0] == MIXUP, _weighted_sum(rolled, w1, x, wl), cut)
            y = labels.astype(jnp.float32) if labels.ndim == 2 else jax.nn.one_hot(labels, self.num_classes,
                                                                                   dtype=jnp.float32)
            labels = _weighted_sum(jnp.roll(y, 1, axis=0), w1, y, wl)
        out["image"], out["label"] = x, labels
        return out
