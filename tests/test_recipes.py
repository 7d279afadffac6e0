"""torchvision's reference-recipe optimisation in the trainer, checked against torch itself:
optimiser updates (torch.optim SGD/RMSprop/AdamW as torchvision builds them), lr schedulers with
warmup (torch.optim.lr_scheduler as torchvision chains them), weight-decay groups (torchvision's
`set_weight_decay` on the torchref twin), EMA (torch's AveragedModel as torchvision's
ExponentialMovingAverage uses it), gradient clipping (clip_grad_norm_), the `--recipe` presets and a
tiny recipe run.

torchvision's reference scripts are not a package: `set_weight_decay`, `ExponentialMovingAverage` and
the scheduler construction are re-implemented here from references/classification/{train,utils}.py
(torch only; torchvision is not importable in CI).
"""
from __future__ import annotations

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import flaxnets
from flaxnets.convert import _flatten, _unflatten
import torchref
from flaxnets import convert
from train import main as train_main, optim, recipes
from train.config import TrainConfig, parse_args

TOL = 1e-12


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


# ----------------------------------------------------------------------------- optimisers

SHAPES = {"conv": {"kernel": (3, 3, 4, 6), "bias": (6,)}, "bn": {"scale": (6,), "bias": (6,)},
          "head": {"kernel": (6, 5), "bias": (5,)}, "class_token": (1, 1, 6)}


def _flat(tree):
    return _flatten(tree).items()


_tree = _unflatten


def _torch_optimizer(name, groups, lr, momentum):
    """references/classification/train.py's construction (parameters = set_weight_decay groups)."""
    if name.startswith("sgd"):
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=0.0, nesterov="nesterov" in name)
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, momentum=momentum, weight_decay=0.0, eps=0.0316, alpha=0.9)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=0.0)


@pytest.mark.parametrize("name,clip", [("sgd", None), ("sgd_nesterov", 0.5), ("rmsprop", 0.5), ("adamw", 0.5),
                                       ("adamw", None)])
def test_optimizer_updates_equal_torch(name, clip):
    """6 steps, float64, per-group weight decay (norm 0, bias 0.3x, embeddings 0), a per-epoch lr
    that changes every 2 steps, clipping where given: every parameter equals torch's."""
    rng = np.random.default_rng(0)
    flat = {p: rng.normal(size=s) for p, s in _flat(SHAPES)}
    grads = [{p: rng.normal(size=s) * 3 for p, s in _flat(SHAPES)} for _ in range(6)]
    wd, groups_kw = 0.05, dict(norm_weight_decay=0.0, bias_weight_decay=0.015, transformer_embedding_decay=0.0)
    table = optim.epoch_lrs(0.1, 3, "steplr", step_size=1, gamma=0.5, warmup_epochs=1, warmup_method="linear",
                            warmup_decay=0.1)
    with jax.enable_x64(True):
        params = jax.tree.map(jnp.asarray, _tree(flat))
        wd_tree = dict(_flat(optim.weight_decay_tree(params, wd, **groups_kw)))
        assert wd_tree[("bn", "scale")] == 0.0 and wd_tree[("conv", "bias")] == 0.015
        assert wd_tree[("head", "kernel")] == 0.05 and wd_tree[("class_token",)] == 0.0
        tx = optim.make_optimizer(name, optim.per_epoch_schedule(table, 2), momentum=0.9, weight_decay=wd,
                                  clip_grad_norm_max=clip, **groups_kw)
        state = tx.init(params)
        tparams = {p: torch.tensor(v, dtype=torch.float64, requires_grad=True) for p, v in flat.items()}
        by_wd: dict = {}
        for p, t in tparams.items():
            by_wd.setdefault(wd_tree[p], []).append(t)
        topt = _torch_optimizer(name, [{"params": v, "weight_decay": w} for w, v in by_wd.items()], table[0], 0.9)
        for step, g in enumerate(grads):
            upd, state = jax.jit(tx.update)(jax.tree.map(jnp.asarray, _tree(g)), state, params)
            params = optax.apply_updates(params, upd)
            for p, t in tparams.items():
                t.grad = torch.tensor(g[p], dtype=torch.float64)
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(list(tparams.values()), clip)
            for group in topt.param_groups:
                group["lr"] = table[step // 2]
            topt.step()
        got = dict(_flat(jax.device_get(params)))
    errs = {p: rel_err(got[p], t.detach().numpy()) for p, t in tparams.items()}
    print(f"{name} clip={clip}: max rel err vs torch.optim over 6 steps {max(errs.values()):.1e}")
    assert max(errs.values()) <= TOL, errs


def test_default_adamw_path_is_unchanged():
    """The default run (README's `python -m train.main --model regnet_x_400mf`) builds the same
    optimiser and schedule as before the recipe options: bit-identical updates to optax.adamw with
    the old warmup + cosine."""
    cfg, spe = TrainConfig(), 7
    tx, schedule = optim.from_config(cfg, spe)
    old_sched = optim.lr_schedule(0.02, 25 * spe, round(2.0 * spe))
    old = optax.adamw(old_sched, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.05)
    rng = np.random.default_rng(1)
    p = {"a": {"kernel": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32), "bias": jnp.ones(4)}}
    s_new, s_old, p_new, p_old = tx.init(p), old.init(p), p, p
    for _ in range(4):
        g = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), p)
        u, s_new = tx.update(g, s_new, p_new)
        p_new = optax.apply_updates(p_new, u)
        u, s_old = old.update(g, s_old, p_old)
        p_old = optax.apply_updates(p_old, u)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), p_new, p_old)
    for step in (0, 5, 14, 60, 174):
        assert float(schedule(step)) == float(old_sched(step))


# ----------------------------------------------------------------------------- schedules


def _torch_lrs(lr, epochs, scheduler, warmup_epochs, warmup_method, warmup_decay, **kw):
    """train.py's scheduler construction; the lr of each epoch (scheduler stepped after each)."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    if scheduler == "steplr":
        main = torch.optim.lr_scheduler.StepLR(opt, step_size=kw["step_size"], gamma=kw["gamma"])
    elif scheduler == "multisteplr":
        main = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=kw["milestones"], gamma=kw["gamma"])
    elif scheduler == "cosineannealinglr":
        main = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs - warmup_epochs, eta_min=kw["lr_min"])
    else:
        main = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=kw["gamma"])
    sched = main
    if warmup_epochs > 0:
        if warmup_method == "linear":
            warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=warmup_decay, total_iters=warmup_epochs)
        else:
            warm = torch.optim.lr_scheduler.ConstantLR(opt, factor=warmup_decay, total_iters=warmup_epochs)
        sched = torch.optim.lr_scheduler.SequentialLR(opt, schedulers=[warm, main], milestones=[warmup_epochs])
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("scheduler", ["steplr", "multisteplr", "cosineannealinglr", "exponentiallr"])
def test_epoch_schedules_equal_torch(scheduler):
    kw = dict(step_size=3, gamma=0.7, milestones=[2, 5, 5, 9], lr_min=1e-3)
    worst = 0.0
    for epochs, warmup, method, decay in [(20, 0, "linear", 0.01), (20, 5, "linear", 0.033), (20, 5, "constant", 0.1),
                                          (600, 5, "linear", 0.01), (300, 30, "linear", 0.033), (3, 5, "linear", 0.01)]:
        want = _torch_lrs(0.5, epochs, scheduler, warmup, method, decay, **kw)
        got = optim.epoch_lrs(0.5, epochs, scheduler, warmup_epochs=warmup, warmup_method=method,
                              warmup_decay=decay, **kw)
        err = max(abs(a - b) / abs(b) for a, b in zip(got, want))
        worst = max(worst, err)
        assert len(got) == epochs and err <= TOL, (epochs, warmup, method, err)
    print(f"{scheduler}: max rel err of the per-epoch lr vs torch.optim.lr_scheduler {worst:.1e}")


def test_schedule_from_config_is_per_epoch():
    cfg = dataclasses.replace(TrainConfig(), lr=0.5, epochs=6, lr_scheduler="cosineannealinglr",
                              lr_warmup_epochs=2, lr_warmup_method="linear", lr_warmup_decay=0.1)
    table = optim.epoch_lrs(0.5, 6, "cosineannealinglr", warmup_epochs=2, warmup_method="linear", warmup_decay=0.1)
    sched = optim.schedule_from_config(cfg, 4)
    with jax.enable_x64(True):
        got = [float(sched(s)) for s in range(6 * 4 + 3)]
    assert got == [table[min(s // 4, 5)] for s in range(6 * 4 + 3)]  # constant within an epoch
    assert got[0] == pytest.approx(0.05) and got[8] == pytest.approx(0.5)


# ----------------------------------------------------------------------------- weight-decay groups

NORM_CLASSES = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm, torch.nn.GroupNorm,
                torch.nn.modules.instancenorm._InstanceNorm, torch.nn.LocalResponseNorm)


def tv_set_weight_decay(model, weight_decay, norm_weight_decay=None, custom_keys_weight_decay=None) -> dict:
    """references/classification/utils.py set_weight_decay, returning {param name: weight decay}."""
    params, params_wd, custom_keys = {"other": [], "norm": []}, {"other": weight_decay, "norm": norm_weight_decay}, []
    for key, wd in custom_keys_weight_decay or []:
        params[key], params_wd[key] = [], wd
        custom_keys.append(key)

    def add(module, prefix=""):
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            full = f"{prefix}.{name}" if prefix else name
            for key in custom_keys:
                target_name = f"{prefix}.{name}" if prefix != "" and "." in key else name
                if key == target_name:
                    params[key].append(full)
                    break
            else:
                if norm_weight_decay is not None and isinstance(module, NORM_CLASSES):
                    params["norm"].append(full)
                else:
                    params["other"].append(full)
        for child_name, child in module.named_children():
            add(child, f"{prefix}.{child_name}" if prefix != "" else child_name)

    add(model)
    return {n: params_wd[k] for k in params for n in params[k]}


@pytest.mark.parametrize("model_name", ["resnet18", "vit_b_16", "swin_t", "convnext_tiny", "mobilenet_v3_large"])
def test_weight_decay_groups_match_torchvision(model_name):
    with torch.device("meta"):
        ref = torchref.create_model(model_name)
    flax_paths = {k: leaf.path for k, leaf in convert.layout(model_name).items() if leaf.collection == "params"}
    shapes = convert.variable_shapes(flaxnets.create_model(model_name))["params"]
    for norm, bias, emb in [(2.0, 3.0, 4.0), (2.0, None, None), (None, 3.0, None), (None, None, 4.0), (0.0, 0.0, 0.0)]:
        custom = ([("bias", bias)] if bias is not None else []) + (
            [(k, emb) for k in ("class_token", "position_embedding", "relative_position_bias_table")]
            if emb is not None else [])
        want = tv_set_weight_decay(ref, 1.0, norm, custom)
        got = dict(_flat(optim.weight_decay_tree(shapes, 1.0, norm, bias, emb)))
        assert set(want) == set(flax_paths)
        bad = [(n, want[n], got[flax_paths[n]]) for n in want if got[flax_paths[n]] != want[n]]
        assert not bad, bad[:5]
    groups = {v: sum(1 for x in want.values() if x == v) for v in set(want.values())}
    print(f"{model_name}: {len(want)} parameters, groups as torchvision's set_weight_decay")
    assert groups


def test_vit_pos_embedding_is_not_a_torchvision_embedding_key():
    """torchvision's list says position_embedding; ViT's parameter is encoder.pos_embedding, so
    --transformer-embedding-decay leaves it at the base decay (the class token is on the list)."""
    shapes = convert.variable_shapes(flaxnets.create_model("vit_b_16"))["params"]
    wd = optim.weight_decay_tree(shapes, 0.3, None, None, 0.0)
    assert wd["encoder"]["pos_embedding"] == 0.3 and wd["class_token"] == 0.0


# ----------------------------------------------------------------------------- clipping


@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_equals_clip_grad_norm_(max_norm):
    rng = np.random.default_rng(2)
    flat = {p: rng.normal(size=s) for p, s in _flat(SHAPES)}
    ts = [torch.tensor(v, requires_grad=True) for v in flat.values()]
    for t, v in zip(ts, flat.values()):
        t.grad = torch.tensor(v)
    total = torch.nn.utils.clip_grad_norm_(ts, max_norm)
    with jax.enable_x64(True):
        out, _ = optim.clip_grad_norm(max_norm).update(jax.tree.map(jnp.asarray, _tree(flat)), optax.EmptyState())
        out = dict(_flat(jax.device_get(out)))
    err = max(rel_err(out[p], t.grad.numpy()) for p, t in zip(flat, ts))
    print(f"clip max_norm={max_norm} (total norm {float(total):.3f}): max rel err vs clip_grad_norm_ {err:.1e}")
    assert err <= TOL


# ----------------------------------------------------------------------------- EMA


class TvExponentialMovingAverage(torch.optim.swa_utils.AveragedModel):
    """references/classification/utils.py ExponentialMovingAverage."""

    def __init__(self, model, decay, device="cpu"):
        def ema_avg(avg_model_param, model_param, num_averaged):
            return decay * avg_model_param + (1 - decay) * model_param

        super().__init__(model, device, ema_avg, use_buffers=True)


def test_ema_equals_torchvision():
    """5 epochs of 7 steps, --model-ema-steps 3 (so the per-epoch index matters), 2 warmup epochs:
    torchvision's decay adjustment, update period, warmup reset and AveragedModel arithmetic (params,
    BN running stats and the integer num_batches_tracked) step by step."""
    epochs, spe, every, warmup, global_batch, decay0 = 5, 7, 3, 2, 64, 0.99
    # train.py: adjust = world_size * batch_size * model_ema_steps / epochs; alpha = min(1, (1 - decay) * adjust)
    alpha = min(1.0, (1.0 - decay0) * (global_batch * every / epochs))
    decay = optim.tv_ema_decay(decay0, global_batch, every, epochs)
    assert decay == 1.0 - alpha
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)).double()
    ema_t = TvExponentialMovingAverage(model, decay)
    tv = optim.TvEma(decay, every, spe, warmup)

    def flax_vars(m):
        sd = {k: v.detach().numpy().copy() for k, v in m.state_dict().items()}
        return {"params": {"0": {"kernel": sd["0.weight"].T, "bias": sd["0.bias"]},
                           "1": {"scale": sd["1.weight"], "bias": sd["1.bias"]}},
                "batch_stats": {"1": {"mean": sd["1.running_mean"], "var": sd["1.running_var"],
                                      "num_batches_tracked": sd["1.num_batches_tracked"].astype(np.int32)}}}

    worst = 0.0
    with jax.enable_x64(True):
        ema, n = jax.tree.map(jnp.asarray, flax_vars(model)), jnp.zeros((), jnp.int32)
        update = jax.jit(tv.update)
        step = 0
        for epoch in range(epochs):
            for i in range(spe):
                with torch.no_grad():  # a "training step": new params and BN statistics
                    for p in model.parameters():
                        p.add_(torch.randn_like(p))
                    model[1].running_mean.add_(torch.randn(4, dtype=torch.float64))
                    model[1].running_var.mul_(1.1)
                    model[1].num_batches_tracked.add_(7)
                # train.py train_one_epoch:
                if i % every == 0:
                    ema_t.update_parameters(model)
                    if epoch < warmup:
                        ema_t.n_averaged.fill_(0)
                ema, n = update(ema, n, jax.tree.map(jnp.asarray, flax_vars(model)), step)
                step += 1
                want = dict(_flat(flax_vars(ema_t.module)))
                assert int(n) == int(ema_t.n_averaged)
                got = dict(_flat(jax.device_get(ema)))
                assert set(got) == set(want)
                for path, b in want.items():
                    a = got[path]
                    if path[-1] == "num_batches_tracked":
                        assert int(a) == int(b), (step, int(a), int(b))
                    else:
                        worst = max(worst, rel_err(a, b))
    print(f"EMA vs torchvision's ExponentialMovingAverage, 35 steps: max rel err {worst:.1e}; "
          f"num_batches_tracked exact; n_averaged {int(n)}")
    assert worst <= TOL


# ----------------------------------------------------------------------------- presets and CLI


def test_presets_are_trainconfig_fields_and_models():
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    assert {"resnet50", "mobilenet_v3_large", "efficientnet_v2_s", "regnet_y_400mf", "convnext_tiny", "vit_b_16",
            "swin_t"} <= set(recipes.names())
    for name in recipes.names():
        preset = recipes.get(name)
        assert set(preset) <= set(fields), set(preset) - set(fields)
        assert preset["model"] in flaxnets.list_models()
        cfg = parse_args(["--recipe", name])
        assert cfg.recipe == name and all(getattr(cfg, k) == v for k, v in preset.items()), name
        assert cfg.opt in optim.OPTIMIZERS and cfg.lr_scheduler in optim.LR_SCHEDULERS
    swin = parse_args(["--recipe", "swin_t"])
    assert (swin.batch_size, swin.lr_warmup_epochs, swin.clip_grad_norm, swin.lr_min) == (1024, 20, 5.0, 1e-5)
    assert (swin.norm_weight_decay, swin.bias_weight_decay, swin.transformer_embedding_decay) == (0.0, 0.0, 0.0)
    assert parse_args(["--recipe", "mobilenet_v3_large"]).lr_scheduler == "steplr"  # torchvision's default


def test_explicit_options_override_the_preset():
    cfg = parse_args(["--recipe", "resnet50", "--model", "lenet5", "--epochs", "25", "--wd", "0.5", "--optimizer",
                      "AdamW", "--no-model-ema", "--lr-warmup-epochs", "0", "--interpolation", "bicubic"])
    # --epochs 25 is TrainConfig's default value: still explicit, so it wins over the preset's 600
    assert (cfg.model, cfg.epochs, cfg.weight_decay, cfg.opt, cfg.model_ema) == ("lenet5", 25, 0.5, "adamw", False)
    assert (cfg.lr_warmup_epochs, cfg.interpolation) == (0, "bicubic")
    assert (cfg.lr, cfg.lr_scheduler, cfg.norm_weight_decay, cfg.ra_reps) == (0.5, "cosineannealinglr", 0.0, 4)
    assert parse_args(["--model", "resnet18"]) == dataclasses.replace(TrainConfig(), model="resnet18")


def test_unknown_recipe_lists_the_names(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--recipe", "resnet5"])
    err = capsys.readouterr().err
    assert "unknown recipe 'resnet5' (did you mean resnet50?)" in err and "swin_t" in err and "vit_b_16" in err


def test_recipe_run_on_digits32(tmp_path, capsys):
    """resnet50's recipe (SGD, per-epoch cosine after warmup, norm decay 0, --model-ema) trains lenet5
    for one epoch; explicit options shrink it to seconds."""
    work = tmp_path / "run"
    rc = train_main.main(["--recipe", "resnet50", "--model", "lenet5", "--epochs", "1", "--batch-size", "50",
                          "--train-crop-size", "32", "--val-resize-size", "32", "--val-crop-size", "32",
                          "--model-ema-steps", "4", "--data-dir", str(tmp_path / "tfds"), "--workdir", str(work),
                          "--no-progress"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    summary = json.loads((work / "summary.json").read_text())
    # the recipe's --ra-sampler: torchvision's RASampler epoch of num_train // 256 * 256 = 1280 examples
    assert summary["config"]["ra_sampler"] and summary["config"]["ra_reps"] == 4
    assert summary["recipe"] == "resnet50" and summary["config"]["opt"] == "sgd" and summary["steps"] == 1280 // 50
    assert summary["config"]["lr_scheduler"] == "cosineannealinglr" and summary["config"]["model_ema"]
    assert 0 <= summary["ema_test_top1"] <= 1 and 0 <= summary["test_top1"] <= 1
    assert "config (recipe resnet50): model='lenet5'" in out.out and "EMA decay" in out.out
    assert math.isfinite(summary["test_loss"])
