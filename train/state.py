"""Training state: a pytree of arrays only (the model and optimiser stay outside it).

`TrainState` is what the train step maps to a new state and what checkpoints hold:
step, params, batch_stats, optimiser state and (optionally) the EMA variables and counter.
"""
from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
    step: jax.Array          # int32 scalar: optimiser updates done
    params: Any
    batch_stats: Any
    opt_state: Any
    ema: Any = None          # {"params", "batch_stats"} or None (EMA off)
    ema_count: Any = None    # int32 scalar: torchvision EMA's n_averaged (--model-ema), else None

    def variables(self, use_ema: bool = False) -> dict:
        src = self.ema if use_ema else {"params": self.params, "batch_stats": self.batch_stats}
        return {k: v for k, v in src.items() if v}


def create_state(variables: dict, tx: optax.GradientTransformation, use_ema: bool,
                 ema_count: bool = False) -> TrainState:
    """`ema_count`: keep torchvision's n_averaged counter (--model-ema)."""
    params = variables["params"]
    batch_stats = variables.get("batch_stats", {})
    ema = {"params": params, "batch_stats": batch_stats} if use_ema else None
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                      opt_state=tx.init(params), ema=ema,
                      ema_count=jnp.zeros((), jnp.int32) if use_ema and ema_count else None)
