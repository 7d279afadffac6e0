"""Train (or evaluate) a flaxnets classifier: `python -m train.main --model regnet_x_400mf`.

With defaults it trains on the bundled digits32 dataset and writes checkpoints, TensorBoard
logs and `summary.json` to `runs/<model>-<dataset>`. Rerunning with the same workdir resumes
from the latest checkpoint; data order and dropout keys are functions of (seed, step), so a
resumed run ends where an uninterrupted one would. `python -m train.main --help` lists the
options (see train/config.py).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import sys
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization, traverse_util
from jax.sharding import NamedSharding, PartitionSpec as P

import flaxnets
from flaxnets import conv_ops, runtime
from train import checkpoint, data, optim, steps
from train.config import TrainConfig, parse_args
from train.tb_logging import Logger
from train.state import create_state


class SetupError(Exception):
    """A bad option or a missing input, reported as one line before anything is compiled."""


def init_distributed(cfg: TrainConfig) -> None:
    if cfg.coordinator_address is None and (cfg.num_processes or 1) <= 1:
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(cfg.coordinator_address, cfg.num_processes, cfg.process_id,
                               initialization_timeout=120)


# ----------------------------------------------------------------------------- initial weights


def _adapt_head(loaded: dict, fresh: dict, out_axis: int) -> tuple[dict, list[str]]:
    """Replaces leaves whose shape differs from `fresh` only along `out_axis` (a classifier
    head with another number of classes) by the fresh ones."""
    out, notes = dict(loaded), []
    for k, v in loaded.items():
        a, b = list(np.shape(v)), list(np.shape(fresh.get(k, v)))
        if a == b or len(a) != len(b):
            continue
        ax = out_axis % len(a)
        if a[:ax] + a[ax + 1:] == b[:ax] + b[ax + 1:]:
            out[k] = fresh[k]
            notes.append(f"{'/'.join(k) if isinstance(k, tuple) else k} {tuple(a)} -> {tuple(b)}")
    return out, notes


def load_init(cfg: TrainConfig, fresh: dict, log: Logger) -> dict:
    """Host variables from `cfg.init_from` (torch .pth/.safetensors or Flax .msgpack), with a
    classifier head of another shape re-initialised from `fresh`. Anything else must match."""
    path, fresh = cfg.init_from, jax.device_get(fresh)
    if path.endswith(".msgpack"):
        with open(path, "rb") as f:
            try:
                tree = serialization.msgpack_restore(f.read())
            except Exception as e:
                raise ValueError(f"--init-from {path}: not a readable Flax msgpack file ({e})") from None
        want = traverse_util.flatten_dict(fresh)
        got, notes = _adapt_head(traverse_util.flatten_dict(tree), want, -1)
        bad = sorted("/".join(k) for k in set(got) ^ set(want)) + sorted(
            f"{'/'.join(k)} {np.shape(got[k])} != {np.shape(want[k])}"
            for k in set(got) & set(want) if np.shape(got[k]) != np.shape(want[k]))
        if bad:
            raise ValueError(f"--init-from {path} does not fit {cfg.model}: {'; '.join(bad[:8])}"
                             + (f" ... ({len(bad)} in all)" if len(bad) > 8 else ""))
        variables = traverse_util.unflatten_dict({k: np.asarray(v, np.asarray(want[k]).dtype) for k, v in got.items()})
    else:
        kwargs = {"num_classes": cfg.num_classes}
        sd = flaxnets.load_torch_checkpoint(path)
        fresh_sd = flaxnets.to_torch_state_dict(cfg.model, fresh, **kwargs)
        sd, notes = _adapt_head(dict(sd), dict(fresh_sd), 0)
        variables = flaxnets.from_torch_state_dict(cfg.model, sd, **kwargs)
    if notes:
        log.print(f"init-from {path}: re-initialised the classifier head (shape differs): {'; '.join(notes)}")
    log.print(f"init-from {path}: loaded {len(traverse_util.flatten_dict(variables))} arrays")
    return jax.tree.map(np.asarray, variables)


def replicate(tree, mesh):
    """Host arrays (identical on every process) -> global arrays replicated over `mesh`."""
    s = NamedSharding(mesh, P())
    return jax.tree.map(lambda a: jax.make_array_from_callback(np.shape(a), s, lambda idx: np.asarray(a)[idx]), tree)


# ----------------------------------------------------------------------------- evaluation


def evaluate(eval_fn, variables, dcfg, info, batch_size, mesh) -> dict:
    sums, skipped = None, 0
    for local in data.eval_batches(dcfg, info, global_batch_size=batch_size, process_index=jax.process_index(),
                                   process_count=jax.process_count()):
        skipped += int(local.pop("skipped", 0))
        s = eval_fn(variables, steps.global_batch(local, mesh))
        sums = s if sums is None else jax.tree.map(jnp.add, sums, s)
    s = {k: float(v) for k, v in jax.device_get(sums).items()}
    n = max(s["count"], 1.0)
    return {"loss": s["loss"] / n, "top1": s["top1"] / n, "top5": s["top5"] / n, "count": int(s["count"]),
            "skipped_count": skipped}


def _write_json(path: str, obj: dict) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- run


def trained_params(model, params, freeze_backbone: bool) -> dict:
    """Which parameters the run trains: counts, and the trained leaves' torch names when the
    backbone is frozen."""
    from flaxnets.convert import _flatten

    flat = _flatten(jax.tree.map(lambda p: int(np.prod(p.shape)), params))
    mask = _flatten(optim.head_mask(model, params)) if freeze_backbone else {k: True for k in flat}
    names = [".".join(k) for k, m in mask.items() if m]
    return {"trained": sum(flat[k] for k, m in mask.items() if m), "total": sum(flat.values()),
            "frozen_backbone": freeze_backbone, "trained_leaves": names if freeze_backbone else "all"}


def setup(cfg: TrainConfig):
    """Everything that can fail on a bad option or missing input, cheap and before compiling."""
    flaxnets.MODELS.get(cfg.model)  # unknown names: ValueError listing close names
    if cfg.init_from and not os.path.isfile(cfg.init_from):
        raise FileNotFoundError(f"--init-from {cfg.init_from}: no such file")
    if cfg.eval_only and not cfg.init_from and not os.path.isdir(os.path.join(cfg.resolved_workdir(), "checkpoints")):
        raise ValueError("--eval-only needs --init-from CHECKPOINT or a workdir with checkpoints")
    for name in ("epochs", "keep_checkpoints", "log_every"):
        if getattr(cfg, name) < (0 if name == "epochs" else 1):
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(cfg, name)}")
    check_optimisation(cfg)
    dcfg = cfg.data_config()
    info = data.get_dataset_info(dcfg)
    steps.check_batch(cfg.batch_size, cfg.grad_accum, jax.device_count(), jax.process_count())
    spe = data.steps_per_epoch(info, cfg.batch_size)
    return dcfg, info, spe


def check_optimisation(cfg: TrainConfig) -> None:
    """ValueError for optimisation options that do not fit together."""
    if cfg.ema_decay > 0 and cfg.model_ema:
        raise ValueError("--ema-decay (per-step EMA) and --model-ema (torchvision's) exclude each other")
    if cfg.lr_scheduler != "cosine_per_step" and not float(cfg.lr_warmup_epochs).is_integer():
        raise ValueError(f"--lr-scheduler {cfg.lr_scheduler} steps per epoch: --lr-warmup-epochs must be a whole "
                         f"number, got {cfg.lr_warmup_epochs}")
    if cfg.lr_warmup_epochs < 0 or cfg.lr_warmup_decay <= 0:
        raise ValueError("--lr-warmup-epochs must be >= 0 and --lr-warmup-decay > 0")
    if cfg.lr_scheduler == "steplr" and cfg.lr_step_size < 1:
        raise ValueError(f"--lr-step-size must be >= 1, got {cfg.lr_step_size}")
    if cfg.lr_scheduler == "multisteplr" and (not cfg.lr_milestones or min(cfg.lr_milestones) < 1):
        raise ValueError("--lr-scheduler multisteplr needs --lr-milestones E1 E2 ... (epochs >= 1 after the warmup)")
    if cfg.model_ema and cfg.model_ema_steps < 1:
        raise ValueError(f"--model-ema-steps must be >= 1, got {cfg.model_ema_steps}")
    if cfg.clip_grad_norm is not None and cfg.clip_grad_norm <= 0:
        raise ValueError(f"--clip-grad-norm must be positive, got {cfg.clip_grad_norm}")


def tv_ema(cfg: TrainConfig, steps_per_epoch: int) -> optim.TvEma | None:
    """torchvision's EMA settings for --model-ema (None without)."""
    if not cfg.model_ema:
        return None
    decay = optim.tv_ema_decay(cfg.model_ema_decay, cfg.batch_size, cfg.model_ema_steps, max(cfg.epochs, 1))
    return optim.TvEma(decay, cfg.model_ema_steps, steps_per_epoch, cfg.lr_warmup_epochs)


def config_changes(cfg: TrainConfig) -> str:
    """The fields that differ from TrainConfig's defaults, as k=v."""
    base = TrainConfig()
    return ", ".join(f"{f.name}={getattr(cfg, f.name)!r}" for f in dataclasses.fields(cfg)
                     if getattr(cfg, f.name) != getattr(base, f.name)) or "defaults"


def run(cfg: TrainConfig) -> dict:
    t_start, cpu_start = time.perf_counter(), time.process_time()
    init_distributed(cfg)
    try:
        dcfg, info, spe = setup(cfg)
    except (ValueError, FileNotFoundError, TypeError) as e:
        raise SetupError(str(e)) from e
    num_classes = cfg.num_classes or info.num_classes
    workdir = cfg.resolved_workdir()
    is_main = jax.process_index() == 0
    if is_main:
        os.makedirs(workdir, exist_ok=True)
    log = Logger(workdir, progress=cfg.progress)
    mesh = steps.make_mesh()
    dtype = jnp.bfloat16 if cfg.dtype == "bfloat16" else None
    model = flaxnets.create_model(cfg.model, num_classes=num_classes, dtype=dtype)
    tx, schedule = optim.from_config(cfg, spe)
    if cfg.freeze_backbone:  # linear probe: only the classifier layer moves
        tx = optim.freeze_all_but(tx, lambda params: optim.head_mask(model, params))
    ema_cfg = tv_ema(cfg, spe)
    use_ema = cfg.ema_decay > 0 or ema_cfg is not None
    size = info.image_size
    log.print(f"{cfg.model} on {info.name} ({info.num_train} train / {info.num_eval} {info.eval_split}, "
              f"{num_classes} classes, {size}x{size}); {jax.device_count()} devices, {jax.process_count()} "
              f"processes; global batch {cfg.batch_size} x {spe} steps/epoch; workdir {workdir}; "
              f"runtime settings: {', '.join(runtime.applied()) or 'none'}")
    log.print(f"config{f' (recipe {cfg.recipe})' if cfg.recipe else ''}: {config_changes(cfg)}"
              + (f"; EMA decay {ema_cfg.decay:.6g} every {ema_cfg.every} steps" if ema_cfg else ""))
    if info.bad_files:
        log.print(f"--skip-bad-images: left out {len(info.bad_files)} unreadable file(s): "
                  + ", ".join(info.bad_files[:5]) + (" ..." if len(info.bad_files) > 5 else ""))

    repl = NamedSharding(mesh, P())
    x0 = jnp.zeros((1, size, size, 3), jnp.float32)

    def init_fn(key):
        with conv_ops.use_impl("plain"):
            return model.init(key, x0, train=False)

    total = cfg.epochs * spe
    abstract_state = jax.eval_shape(lambda k: create_state(init_fn(k), tx, use_ema, ema_cfg is not None),
                                    jax.random.key(0))
    if cfg.freeze_backbone:
        tp = trained_params(model, abstract_state.params, True)
        log.print(f"--freeze-backbone: training {', '.join(tp['trained_leaves'])} ({tp['trained']:,} of "
                  f"{tp['total']:,} parameters); the forward runs in eval mode")
    mngr = checkpoint.open_manager(workdir, cfg.keep_checkpoints)
    latest = None if cfg.eval_only and cfg.init_from else mngr.latest_step()
    compile_seconds, pool, train_future = {}, concurrent.futures.ThreadPoolExecutor(1), None
    if not cfg.eval_only and (latest or 0) < total:
        # Traced here, compiled in a thread while the state is initialised and eval compiles.
        # Batches arrive as uint8 + augmentation draws; normalise/erase/MixUp-CutMix run in the step.
        scfg = steps.StepConfig(cfg.label_smoothing, cfg.grad_accum, cfg.ema_decay, cfg.seed, tv_ema=ema_cfg,
                                train_mode=not cfg.freeze_backbone, preprocess=data.finish_for(dcfg, info))
        lowered = steps.lower_train(model, tx, scfg, mesh, abstract_state,
                                    steps.abstract_spec(mesh, data.raw_batch_spec(dcfg, info, cfg.batch_size)))
        train_future = pool.submit(steps.compile_timed, lowered)
    t = time.perf_counter()
    if latest is not None:
        state = checkpoint.restore(mngr, steps.abstract(abstract_state, repl), latest)
        log.print(f"resumed from {mngr.directory}/{latest}" +
                  (f" (ignoring --init-from {cfg.init_from})" if cfg.init_from else ""))
    else:
        fresh = jax.jit(init_fn, out_shardings=repl)(jax.random.key(cfg.seed))
        if cfg.init_from:
            try:
                fresh = replicate(load_init(dataclasses.replace(cfg, num_classes=num_classes), fresh, log), mesh)
            except (ValueError, FileNotFoundError) as e:
                raise SetupError(str(e)) from e
        state = jax.jit(lambda v: create_state(v, tx, use_ema, ema_cfg is not None), out_shardings=repl)(fresh)
    jax.block_until_ready(state)
    init_seconds = time.perf_counter() - t
    lowered_eval = steps.lower_eval(model, mesh, abstract_state.variables(),
                                    steps.abstract_batch(mesh, cfg.batch_size, (info.eval_size, info.eval_size, 3),
                                                         with_mask=True))
    eval_fn, compile_seconds["eval"] = steps.compile_timed(lowered_eval)
    train_fn = None
    if train_future is not None:
        train_fn, compile_seconds["train"] = train_future.result()
    pool.shutdown()
    start_step = int(state.step)
    setup_seconds, setup_cpu = time.perf_counter() - t_start, time.process_time() - cpu_start
    log.print(f"ready after {setup_seconds:.1f}s ({setup_cpu:.1f}s CPU): init/restore {init_seconds:.1f}s; compiled "
              + ", ".join(f"{k} step in {v['seconds']:.1f}s" for k, v in compile_seconds.items()))

    def eval_all(state) -> dict:
        res = {f"test_{k}": v for k, v in evaluate(eval_fn, state.variables(), dcfg, info, cfg.batch_size,
                                                   mesh).items()}
        if state.ema is not None:
            res.update({f"ema_test_{k}": v for k, v in evaluate(eval_fn, state.variables(use_ema=True), dcfg,
                                                                info, cfg.batch_size, mesh).items()})
        return res

    train_images, train_seconds, train_skipped = 0, 0.0, 0
    results = None
    if not cfg.eval_only:
        it = data.train_batches(dcfg, info, global_batch_size=cfg.batch_size, seed=cfg.seed, start_step=start_step,
                                process_index=jax.process_index(), process_count=jax.process_count(), raw=True)
        step = start_step
        try:
            while step < total:
                epoch, epoch_end = step // spe + 1, (step // spe + 1) * spe
                log.start_epoch(epoch, cfg.epochs, spe, initial=step - (epoch - 1) * spe)
                t0, n0 = time.perf_counter(), 0
                while step < epoch_end:
                    local = next(it)
                    train_skipped += int(local.pop("skipped", 0))
                    state, metrics = train_fn(state, steps.global_batch(local, mesh))
                    step += 1
                    n0 += cfg.batch_size
                    if step % cfg.log_every == 0 or step == epoch_end:
                        loss = float(metrics["loss"])  # waits for the step
                        ips = n0 / (time.perf_counter() - t0)
                        log.scalars(step, {"loss": loss, "top1": float(metrics["top1"]),
                                           "lr": float(schedule(step - 1)), "img_per_s": ips}, "train/")
                        log.advance(1, loss=loss, img_s=round(ips, 1))
                    else:
                        log.advance(1)
                    if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step != epoch_end:
                        checkpoint.save(mngr, state)
                jax.block_until_ready(state.step)
                epoch_seconds = time.perf_counter() - t0
                train_seconds += epoch_seconds
                train_images += n0
                log.end_epoch()
                results = eval_all(state)
                log.scalars(step, {k[5:]: v for k, v in results.items() if k.startswith("test_")}, "eval/")
                log.scalars(step, {k[9:]: v for k, v in results.items() if k.startswith("ema_test_")}, "eval_ema/")
                log.print(f"epoch {epoch}/{cfg.epochs} step {step}: test top-1 {results['test_top1']:.2%} "
                          f"top-5 {results['test_top5']:.2%} loss {results['test_loss']:.4f}"
                          + (f"; EMA top-1 {results['ema_test_top1']:.2%}" if "ema_test_top1" in results else "")
                          + f"; {n0 / epoch_seconds:.1f} img/s")
                checkpoint.save(mngr, state, {"top1": results["test_top1"]})
        finally:
            it.close()
            mngr.wait_until_finished()
    if results is None:
        results = eval_all(state)
    mngr.wait_until_finished()
    best = mngr.best_step()
    summary = {
        "model": cfg.model, "dataset": info.name, "eval_split": info.eval_split, "epochs": cfg.epochs,
        "steps": int(state.step), "resumed_from_step": start_step or None, "eval_only": cfg.eval_only,
        **{k: v for k, v in results.items() if not k.endswith("count")},
        "num_eval": results["test_count"],
        "eval_weights": cfg.eval_weights,
        # folder: datasets with --skip-bad-images (this process's reads): files left out when the dataset was
        # opened, train reads of undecodable files replaced by the next readable one, eval images masked out
        "bad_images": {"left_out": len(info.bad_files), "left_out_files": list(info.bad_files[:20]),
                       "train_reads_replaced": train_skipped, "eval_masked": results["test_skipped_count"]},
        "best_step": best, "best_test_top1": (mngr.metrics(best) or {}).get("top1") if best is not None else None,
        "img_per_s": train_images / train_seconds if train_seconds else None,
        "train_seconds": train_seconds, "compile_seconds": {k: v["seconds"] for k, v in compile_seconds.items()},
        "init_seconds": init_seconds, "setup_seconds": setup_seconds, "setup_cpu_seconds": setup_cpu,
        "wall_seconds": time.perf_counter() - t_start, "cpu_seconds": time.process_time() - cpu_start,
        "devices": jax.device_count(), "runtime_settings": list(runtime.applied()),
        "processes": jax.process_count(), "batch_size": cfg.batch_size, "dtype": cfg.dtype, "workdir": workdir,
        "recipe": cfg.recipe, "config": dataclasses.asdict(cfg),
        "trained_params": trained_params(model, abstract_state.params, cfg.freeze_backbone),
    }
    mngr.close()
    log.close()
    if is_main:
        _write_json(os.path.join(workdir, "summary.json"), summary)
    ips = f"{summary['img_per_s']:.1f}" if summary["img_per_s"] else "n/a"
    log.print(f"SUMMARY model={cfg.model} dataset={info.name} epochs={cfg.epochs} "
              f"test_top1={results['test_top1']:.2%} img/s={ips} wall={summary['wall_seconds']:.0f}s")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    try:
        run(cfg)
    except (SetupError, data.BadImageError) as e:  # BadImageError: an undecodable file met during training
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    runtime.reexec_with_thp()  # transparent huge pages: see flaxnets/runtime.py
    sys.exit(main())
