"""Training across devices and processes, and resuming after SIGKILL.

- 8 CPU devices (XLA_FLAGS, in a subprocess) vs 1 device, same global batch of 16: same loss,
  params, BatchNorm statistics, EMA and eval sums, with and without gradient accumulation
  (resnet18 at 32x32; under jit BN statistics are global, so 1 example per device per
  micro-batch still normalises like 16). Compared in float64: in float32, layer4's BN over
  16 values per channel (1x1 maps) amplifies reduction-order noise to ~20% in some gradients.
- Two processes on 127.0.0.1 (`jax.distributed.initialize`, gloo) through the CLI vs one.
- SIGKILL mid-run, rerun with the same workdir: resumes and ends bit-identical to an
  uninterrupted run; no checkpoint directory is ever half-written.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

from train import checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": REPO}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("tfds"))
    from train import data

    data.get_dataset_info(data.DataConfig(data_dir=d))  # build digits32 once, before any subprocess
    return d


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = np.abs(b).max()
    return float(np.abs(a - b).max() / scale) if scale else float(np.abs(a - b).max())


def tree_rel_err(a, b) -> float:
    return max(rel_err(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def final_state(workdir) -> dict:
    mngr = checkpoint.open_manager(str(workdir), 1)
    try:
        return checkpoint.restore_local(mngr)
    finally:
        mngr.close()


def cli(workdir, data_dir, *extra) -> list[str]:
    return [sys.executable, "-m", "train.main", "--model", "lenet5", "--optimizer", "sgd", "--weight-decay", "5e-5",
            "--data-dir", data_dir, "--workdir", str(workdir), "--no-progress", *extra]


# ----------------------------------------------------------------------------- 8 devices

EIGHT_DEVICES = textwrap.dedent("""
    import json
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    import flaxnets
    from train import optim, steps
    from train.state import create_state

    assert jax.device_count() == 8 and jax.config.jax_enable_x64
    model = flaxnets.create_model("resnet18", num_classes=10)
    tx = optim.make_optimizer("sgd", 0.05, momentum=0.9, weight_decay=1e-4)
    variables = jax.jit(lambda k: model.init(k, jnp.zeros((1, 32, 32, 3)), train=False))(jax.random.key(0))
    variables = jax.tree.map(lambda a: a.astype(jnp.float64) if a.dtype == jnp.float32 else a, variables)
    rng = np.random.default_rng(0)
    batches = [{"image": rng.normal(size=(16, 32, 32, 3)).astype(np.float32),
                "label": rng.integers(0, 10, 16).astype(np.int32)} for _ in range(3)]
    ev = {**batches[0], "mask": (np.arange(16) < 13).astype(np.float32)}
    rel = lambda a, b: max(float(np.abs(np.asarray(x, np.float64) - y).max() / max(np.abs(y).max(), 1e-300))
                           for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    errs = {}
    for accum in (1, 2):
        out = {}
        for n in (1, 8):
            mesh = steps.make_mesh(jax.devices()[:n])
            state = create_state(variables, tx, use_ema=True)
            c = steps.compile_steps(model, tx, steps.StepConfig(ema_decay=0.9, grad_accum=accum), mesh,
                                    jax.eval_shape(lambda: state), (32, 32, 3), 16, 16)
            state = jax.device_put(jax.tree.map(jnp.copy, state), NamedSharding(mesh, P()))
            losses = []
            for b in batches:
                state, m = c.train(state, steps.global_batch(b, mesh))
                losses.append(float(m["loss"]))
            sums = c.eval(state.variables(), steps.global_batch(ev, mesh))
            out[n] = jax.device_get((losses, state.params, state.batch_stats, state.ema, sums))
        names = ("loss", "params", "batch_stats", "ema", "eval")
        errs[accum] = {k: rel(out[8][i], out[1][i]) for i, k in enumerate(names)}
        errs[accum]["int_leaves_equal"] = all(
            np.array_equal(x, y) for x, y in zip(jax.tree.leaves(out[8][2]), jax.tree.leaves(out[1][2]))
            if np.asarray(x).dtype.kind == "i")
        errs[accum]["params_dtype"] = str(jax.tree.leaves(out[8][1])[0].dtype)
    print("RESULT " + json.dumps(errs))
""")


@pytest.mark.large  # ~60-80 s; test_two_processes_match_one shards the same step by default
def test_eight_devices_match_one(tmp_path):
    env = {**ENV, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_ENABLE_X64": "1"}
    p = subprocess.run([sys.executable, "-c", EIGHT_DEVICES], env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    errs = json.loads(p.stdout.split("RESULT ", 1)[1])
    for accum, e in errs.items():
        print(f"8 vs 1 device, grad_accum={accum}, 3 SGD steps (float64), rel err: " +
              ", ".join(f"{k} {v:.2e}" if isinstance(v, float) else f"{k} {v}" for k, v in e.items()))
        assert e["int_leaves_equal"] and e["params_dtype"] == "float64"
        for k in ("loss", "params", "batch_stats", "ema"):
            assert e[k] <= 1e-10, k
        assert e["eval"] <= 1e-6  # eval sums are accumulated in float32


# ----------------------------------------------------------------------------- 2 processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(tmp_path, data_dir):
    args = ["--epochs", "1", "--batch-size", "100", "--lr", "0.05", "--ema-decay", "0.9"]
    port = free_port()
    procs = [subprocess.Popen(cli(tmp_path / "two", data_dir, *args, "--coordinator-address", f"127.0.0.1:{port}",
                                  "--num-processes", "2", "--process-id", str(i)),
                              env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    one = subprocess.Popen(cli(tmp_path / "one", data_dir, *args), env=ENV, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    outs = []
    try:
        for p in procs + [one]:
            outs.append(p.communicate(timeout=600)[0])
    finally:
        for p in procs + [one]:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs + [one]] == [0, 0, 0], "\n-----\n".join(o[-2000:] for o in outs)
    assert "2 devices, 2 processes" in outs[0] and "SUMMARY" in outs[0]
    assert "SUMMARY" not in outs[1]  # only process 0 prints and writes logs
    assert not os.path.exists(tmp_path / "two" / "tb" / "proc1")
    two, ref = final_state(tmp_path / "two"), final_state(tmp_path / "one")
    e_params, e_ema = tree_rel_err(two["params"], ref["params"]), tree_rel_err(two["ema"], ref["ema"])
    s2 = json.loads((tmp_path / "two" / "summary.json").read_text())
    s1 = json.loads((tmp_path / "one" / "summary.json").read_text())
    print(f"2 processes vs 1, 15 steps: params rel err {e_params:.2e}, EMA {e_ema:.2e}; "
          f"test loss {s2['test_loss']:.6f} vs {s1['test_loss']:.6f}")
    assert int(two["step"]) == int(ref["step"]) == 15
    assert e_params < 1e-4 and e_ema < 1e-4
    assert s2["test_loss"] == pytest.approx(s1["test_loss"], rel=1e-4)


# ----------------------------------------------------------------------------- SIGKILL + resume


def test_sigkill_then_resume_matches_uninterrupted(tmp_path, data_dir):
    args = ["--epochs", "3", "--batch-size", "50", "--lr", "0.05", "--ema-decay", "0.9", "--label-smoothing", "0.1",
            "--checkpoint-every", "4", "--keep-checkpoints", "2"]
    ref = subprocess.Popen(cli(tmp_path / "ref", data_dir, *args), env=ENV, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    run = tmp_path / "killed"
    victim = subprocess.Popen(cli(run, data_dir, *args), env=ENV, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    ckpts = run / "checkpoints"
    seen_tmp, deadline = False, time.time() + 600
    try:
        # Kill while a checkpoint is being written if we catch one, else once step >= 16 exists.
        while victim.poll() is None and time.time() < deadline:
            names = os.listdir(ckpts) if ckpts.is_dir() else []
            seen_tmp = any(checkpoint.TMP_MARKER in n for n in names)
            done = [int(n) for n in names if n.isdigit()]
            if (seen_tmp and done) or any(s >= 16 for s in done):
                break
            time.sleep(0.005)
        assert victim.poll() is None, "run finished before it could be killed"
        victim.send_signal(signal.SIGKILL)
        victim.wait()
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
    names = sorted(os.listdir(ckpts))
    steps_done = sorted(int(n) for n in names if n.isdigit())
    print(f"killed with checkpoints {names} (tmp dir seen: {seen_tmp})")
    assert steps_done and steps_done[-1] < 90
    # Every finalised step directory is complete (readable); tmp dirs are not steps.
    mngr = checkpoint.open_manager(str(run), 2)
    assert mngr.all_steps() == steps_done
    assert int(checkpoint.restore_local(mngr)["step"]) == steps_done[-1]
    mngr.close()
    assert checkpoint.tmp_dirs(str(run)) == []  # opening the manager removed leftovers

    rerun = subprocess.run(cli(run, data_dir, *args), env=ENV, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert f"resumed from {ckpts}/{steps_done[-1]}" in rerun.stdout
    assert ref.wait(timeout=600) == 0, ref.stdout.read()[-2000:]
    a, b = final_state(run), final_state(tmp_path / "ref")
    assert int(a["step"]) == int(b["step"]) == 90
    for name in ("params", "opt_state", "ema"):
        jax.tree.map(np.testing.assert_array_equal, a[name], b[name])
    sa = json.loads((run / "summary.json").read_text())
    sb = json.loads((tmp_path / "ref" / "summary.json").read_text())
    assert sa["resumed_from_step"] == steps_done[-1] and sa["test_top1"] == sb["test_top1"]
    assert checkpoint.tmp_dirs(str(run)) == [] and checkpoint.tmp_dirs(str(tmp_path / "ref")) == []
    # keep 2 latest + the best by top-1
    kept = sorted(int(n) for n in os.listdir(ckpts))
    assert kept[-2:] == [88, 90] and len(kept) <= 3
