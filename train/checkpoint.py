"""Orbax checkpoints of the `TrainState` in `<workdir>/checkpoints/<step>`.

- Keeps the latest `keep` checkpoints plus the best one by eval top-1 (metrics saved with
  end-of-epoch checkpoints).
- Writes are atomic: orbax writes into `<step>.orbax-checkpoint-tmp-*` and renames it only
  once complete; leftover tmp dirs of a killed run are removed when the manager opens, and
  never count as checkpoints.
- Every process calls `save`/`restore` (collective); orbax has each array written once and
  synchronises the processes.
"""
from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp

from train.state import TrainState

TMP_MARKER = ".orbax-checkpoint-tmp"


def _top1(metrics) -> float:
    return float(metrics["top1"])


def open_manager(workdir: str, keep: int) -> ocp.CheckpointManager:
    policy = ocp.checkpoint_managers.AnyPreservationPolicy([
        ocp.checkpoint_managers.LatestN(n=max(keep, 1)),
        ocp.checkpoint_managers.BestN(get_metric_fn=_top1, n=1, keep_checkpoints_without_metrics=False),
    ])
    options = ocp.CheckpointManagerOptions(
        best_fn=_top1, best_mode="max", preservation_policy=policy, cleanup_tmp_directories=True,
        enable_async_checkpointing=True, create=True)
    return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")), options=options)


def save(mngr: ocp.CheckpointManager, state: TrainState, metrics: dict | None = None) -> None:
    """Starts an (async) save of `state` at its step; `metrics` (e.g. {"top1": ...}) rank it."""
    step = int(jax.device_get(state.step))
    if step in mngr.all_steps():
        return
    mngr.save(step, args=ocp.args.StandardSave(state), metrics=metrics, force=True)


def restore(mngr: ocp.CheckpointManager, abstract_state: TrainState, step: int | None = None) -> TrainState | None:
    """The checkpoint at `step` (default: latest) with `abstract_state`'s structure and shardings,
    or None if there is none."""
    step = mngr.latest_step() if step is None else step
    if step is None:
        return None
    return mngr.restore(step, args=ocp.args.StandardRestore(abstract_state))


def restore_local(mngr: ocp.CheckpointManager, step: int | None = None) -> dict:
    """A checkpoint as nested dicts of arrays on this process's first device, whatever the
    device/process topology that wrote it (for inspection and export)."""
    step = mngr.latest_step() if step is None else step
    meta = ocp.StandardCheckpointHandler().metadata(mngr.directory / str(step) / "default")
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), meta)
    return mngr.restore(step, args=ocp.args.StandardRestore(target))


def tmp_dirs(workdir: str) -> list[str]:
    d = os.path.join(workdir, "checkpoints")
    return sorted(n for n in os.listdir(d) if TMP_MARKER in n) if os.path.isdir(d) else []
