"""Training: the real CLI path (`train.main.main`) on digits32 and on mock TFDS data, the
optimiser/schedule/EMA pieces, gradient accumulation and CLI errors.

Tiny models keep this fast on a CPU: lenet5 (no BatchNorm) and resnet18 at 64x64.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tensorflow_datasets as tfds

import flaxnets
from train import checkpoint, main as train_main, optim, steps
from train.state import create_state

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def run_cli(args, capsys=None) -> tuple[int, str]:
    """train.main.main in-process; SGD, as these small runs were tuned for it (defaults are AdamW)."""
    rc = train_main.main(["--optimizer", "sgd", "--weight-decay", "5e-5"] + list(args) + ["--no-progress"])
    out = capsys.readouterr() if capsys is not None else None
    return rc, (out.out + out.err) if out else ""


def test_one_epoch_digits32(tmp_path, data_dir, capsys):
    work = tmp_path / "run"
    rc, out = run_cli(["--model", "lenet5", "--epochs", "1", "--batch-size", "50", "--lr", "0.05",
                       "--ema-decay", "0.9", "--data-dir", data_dir, "--workdir", str(work)], capsys)
    assert rc == 0, out
    summary = json.loads((work / "summary.json").read_text())
    print(out.splitlines()[-1])
    assert summary["model"] == "lenet5" and summary["dataset"] == "digits32"
    assert summary["steps"] == 30 and summary["num_eval"] == 297
    assert summary["test_top1"] > 0.2  # chance is 0.1; one epoch of lenet5 gets ~0.3-0.6
    assert 0 <= summary["ema_test_top1"] <= 1 and summary["img_per_s"] > 0
    assert "SUMMARY model=lenet5 dataset=digits32 epochs=1 test_top1=" in out
    assert os.listdir(work / "checkpoints") == ["30"]
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(work / "tb"))
    # Rerun: the workdir's checkpoint is complete, so it only evaluates, with the same result.
    rc, out = run_cli(["--model", "lenet5", "--epochs", "1", "--batch-size", "50", "--data-dir", data_dir,
                       "--ema-decay", "0.9", "--workdir", str(work)], capsys)
    assert rc == 0 and "resumed from" in out
    again = json.loads((work / "summary.json").read_text())
    assert again["test_top1"] == summary["test_top1"] and again["resumed_from_step"] == 30


def write_prepared_metadata(name: str, data_dir: str, sizes: dict[str, int]) -> None:
    """What a prepared ArrayRecord dataset has on disk, for tfds.testing.mock_data (as in test_data.py)."""
    builder = tfds.builder(name, data_dir=data_dir, try_gcs=False)
    builder.info.set_file_format(tfds.core.FileFormat.ARRAY_RECORD, override=True)
    builder.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(name=split, shard_lengths=[n], num_bytes=0, filename_template=tfds.core.ShardedFileTemplate(
            data_dir=builder.data_path, dataset_name=builder.name, split=split, filetype_suffix="array_record"))
        for split, n in sizes.items()]))
    builder.data_path.mkdir(parents=True)
    builder.info.write_to_directory(builder.data_path)


@pytest.mark.parametrize("name,eval_split,model,size,classes,extra", [
    ("cifar10", "test", "lenet5", 32, 10, ["--dtype", "bfloat16", "--grad-accum", "2"]),
    ("imagenet2012", "validation", "resnet18", 64, 1000, []),
])
def test_one_step_mock_tfds(tmp_path, capsys, name, eval_split, model, size, classes, extra):
    n = 8
    write_prepared_metadata(name, str(tmp_path / "tfds"), {"train": n, eval_split: n})
    with tfds.testing.mock_data(num_examples=n, policy=tfds.testing.MockPolicy.USE_FILES,
                                data_dir=str(tmp_path / "tfds")):
        rc, out = run_cli(["--model", model, "--dataset", name, "--data-dir", str(tmp_path / "tfds"),
                           "--image-size", str(size), "--epochs", "1", "--batch-size", str(n), "--lr", "0.01",
                           "--workdir", str(tmp_path / "run"), *extra], capsys)
    assert rc == 0, out
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["steps"] == 1 and s["dataset"] == name and s["num_eval"] == n
    assert np.isfinite(s["test_loss"]) and abs(s["test_loss"] - np.log(classes)) < 3
    assert f"{classes} classes, {size}x{size}" in out


# ----------------------------------------------------------------------------- CLI errors


def test_cli_errors_fast(tmp_path, data_dir, capsys, monkeypatch):
    """Bad arguments end before any model is built or compiled (no wall-clock bound here)."""
    import flaxnets
    def no_build(*a, **k):
        raise AssertionError("a model was built for a command that should fail first")
    monkeypatch.setattr(flaxnets.MODELS, "create", no_build)
    rc, out = run_cli(["--model", "regnet_x_400mg", "--data-dir", data_dir, "--workdir", str(tmp_path / "a")], capsys)
    assert rc == 2 and "unknown model 'regnet_x_400mg'" in out and "regnet_x_400mf" in out, out
    rc, out = run_cli(["--model", "lenet5", "--dataset", "cifar10", "--data-dir", str(tmp_path / "none"),
                       "--workdir", str(tmp_path / "b")], capsys)
    assert rc == 2 and "cifar10" in out and "not prepared" in out, out
    rc, out = run_cli(["--model", "lenet5", "--data-dir", data_dir, "--batch-size", "100", "--grad-accum", "3",
                       "--workdir", str(tmp_path / "c")], capsys)
    assert rc == 2 and "--batch-size 100" in out and "--grad-accum 3" in out, out
    rc, out = run_cli(["--model", "lenet5", "--data-dir", data_dir, "--init-from", str(tmp_path / "nope.pth"),
                       "--workdir", str(tmp_path / "d")], capsys)
    assert rc == 2 and "nope.pth" in out, out
    assert not (tmp_path / "a").exists() and not (tmp_path / "c" / "checkpoints").exists()


def test_batch_not_divisible_by_devices_fails_before_compiling(tmp_path, data_dir):
    env = {**os.environ, "PYTHONPATH": REPO, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
           "JAX_LOG_COMPILES": "1"}
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "train.main", "--model", "lenet5", "--batch-size", "100",
                        "--data-dir", data_dir, "--workdir", str(tmp_path / "w")],
                       env=env, capture_output=True, text=True, timeout=300)
    print(f"{time.perf_counter() - t:.1f}s: {p.stderr.strip().splitlines()[-1]}")
    assert p.returncode == 2
    assert "--batch-size 100 is not divisible by the device count 8" in p.stderr
    assert "Compiling" not in p.stderr and "Finished XLA compilation" not in p.stderr


# ----------------------------------------------------------------------------- pieces


def test_schedule_warmup_then_cosine():
    s = optim.lr_schedule(1.0, total_steps=100, warmup_steps=10)
    assert float(s(0)) == pytest.approx(0.01)
    assert float(s(5)) == pytest.approx(0.01 + 0.99 * 0.5)
    assert float(s(10)) == pytest.approx(1.0)
    assert float(s(55)) == pytest.approx(0.5, abs=1e-6)
    assert float(s(100)) == pytest.approx(0.0, abs=1e-7)
    assert float(optim.lr_schedule(1.0, 10, 0)(0)) == 1.0


def test_sgd_matches_torch_rule_and_exempts_bn_bias():
    params = {"conv": {"kernel": jnp.ones((1, 1, 2, 2))}, "bn": {"scale": jnp.ones(2), "bias": jnp.ones(2)}}
    grads = jax.tree.map(lambda p: 0.5 * p, params)
    for on in (True, False):
        tx = optim.make_optimizer("sgd", 0.1, momentum=0.9, nesterov=True, weight_decay=0.01, wd_on_bn_bias=on)
        p, st, buf = params, tx.init(params), None
        ref = jax.tree.map(np.asarray, params)
        for _ in range(3):
            upd, st = tx.update(grads, st, p)
            p = optax.apply_updates(p, upd)
            # torch.optim.SGD: d_p = g + wd * p; buf = m * buf + d_p; d_p += m * buf; p -= lr * d_p
            d = {k: {n: np.asarray(grads[k][n]) + (0.01 if on or ref[k][n].ndim > 1 else 0.0) * ref[k][n]
                     for n in ref[k]} for k in ref}
            buf = d if buf is None else {k: {n: 0.9 * buf[k][n] + d[k][n] for n in d[k]} for k in d}
            ref = {k: {n: ref[k][n] - 0.1 * (d[k][n] + 0.9 * buf[k][n]) for n in d[k]} for k in d}
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), p, ref)
    assert optim.decay_mask(params, False) == {"conv": {"kernel": True}, "bn": {"scale": False, "bias": False}}


def test_label_smoothing_is_torchs():
    import torch

    logits = np.random.default_rng(0).normal(size=(4, 7)).astype(np.float32)
    labels = np.array([0, 3, 6, 2])
    want = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(labels), label_smoothing=0.1,
                                             reduction="none").numpy()
    np.testing.assert_allclose(optim.cross_entropy(jnp.asarray(logits), jnp.asarray(labels), 0.1), want, rtol=1e-6)


def test_ema_skips_integer_leaves():
    ema = {"w": jnp.zeros(2), "num_batches_tracked": jnp.array(3, jnp.int32)}
    new = {"w": jnp.ones(2), "num_batches_tracked": jnp.array(7, jnp.int32)}
    out = optim.ema_update(ema, new, 0.9)
    np.testing.assert_allclose(out["w"], 0.1)
    assert out["num_batches_tracked"].dtype == jnp.int32 and int(out["num_batches_tracked"]) == 7
    assert float(optim.ema_decay_at(0.999, 0.0)) == pytest.approx(0.1)


def test_grad_accum_equals_full_batch_without_batchnorm():
    """lenet5 has no BatchNorm: 4 micro-batches average to the full-batch gradient."""
    model = flaxnets.create_model("lenet5")
    tx = optim.make_optimizer("sgd", 0.1, momentum=0.9, weight_decay=1e-3)
    mesh = steps.make_mesh(jax.devices()[:1])
    variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
    rng = np.random.default_rng(0)
    batch = {"image": rng.normal(size=(16, 32, 32, 3)).astype(np.float32),
             "label": rng.integers(0, 10, 16).astype(np.int32)}
    out = {}
    for accum in (1, 4):
        state = create_state(variables, tx, use_ema=False)
        c = steps.compile_steps(model, tx, steps.StepConfig(grad_accum=accum), mesh, jax.eval_shape(lambda: state),
                                (32, 32, 3), 16, 16)
        state = jax.tree.map(jnp.copy, state)
        for _ in range(2):
            state, m = c.train(state, steps.global_batch(batch, mesh))
        out[accum] = (jax.device_get(state.params), float(m["loss"]))
    err = max(jax.tree.leaves(jax.tree.map(lambda a, b: float(np.abs(a - b).max() / np.abs(b).max()),
                                           out[4][0], out[1][0])))
    print(f"grad-accum 4 vs 1: params rel err {err:.2e}, loss {out[4][1]:.6f} vs {out[1][1]:.6f}")
    assert err < 1e-5 and out[4][1] == pytest.approx(out[1][1], rel=1e-5)


def test_init_from_torch_and_msgpack_reinitialises_head(tmp_path, data_dir, capsys):
    import torch

    import torchref
    from flax import serialization

    tm = torchref.create_model("lenet5", num_classes=7)
    torch.save(tm.state_dict(), tmp_path / "lenet.pth")
    variables = flaxnets.from_torch_state_dict("lenet5", tm.state_dict(), num_classes=7)
    (tmp_path / "lenet.msgpack").write_bytes(serialization.msgpack_serialize(jax.tree.map(np.asarray, variables)))
    for f in ("lenet.pth", "lenet.msgpack"):
        rc, out = run_cli(["--model", "lenet5", "--data-dir", data_dir, "--init-from", str(tmp_path / f),
                           "--eval-only", "--batch-size", "99", "--workdir", str(tmp_path / f"run-{f}")], capsys)
        assert rc == 0, out
        head = "fc3.weight (7, 84) -> (10, 84)" if f.endswith(".pth") else "fc3/kernel (84, 7) -> (84, 10)"
        assert "re-initialised the classifier head" in out and head in out, out
        s = json.loads((tmp_path / f"run-{f}" / "summary.json").read_text())
        assert s["eval_only"] and s["num_eval"] == 297
    # Same head shape: loaded exactly, no message; eval-only writes no checkpoints.
    torch.save(torchref.create_model("lenet5").state_dict(), tmp_path / "l10.pth")
    rc, out = run_cli(["--model", "lenet5", "--data-dir", data_dir, "--init-from", str(tmp_path / "l10.pth"),
                       "--eval-only", "--batch-size", "99", "--workdir", str(tmp_path / "run10")], capsys)
    assert rc == 0 and "re-initialised" not in out
    assert checkpoint.tmp_dirs(str(tmp_path / "run10")) == []


def test_freeze_backbone_linear_probe(tmp_path, data_dir, capsys):
    """--init-from a torchvision-layout checkpoint + --freeze-backbone: only the classifier
    layer moves; every trunk parameter and BatchNorm statistic stays the checkpoint's."""
    import torch

    import torchref

    torch.manual_seed(0)
    tm = torchref.create_model("resnet18", num_classes=10)
    torch.save(tm.state_dict(), tmp_path / "r18.pth")
    init = flaxnets.from_torch_state_dict("resnet18", tm.state_dict(), num_classes=10)
    work = tmp_path / "probe"
    rc, out = run_cli(["--model", "resnet18", "--data-dir", data_dir, "--init-from", str(tmp_path / "r18.pth"),
                       "--freeze-backbone", "--epochs", "1", "--batch-size", "256", "--lr", "0.05",
                       "--workdir", str(work)], capsys)
    assert rc == 0, out
    s = json.loads((work / "summary.json").read_text())
    assert s["trained_params"]["trained_leaves"] == ["fc.bias", "fc.kernel"]
    assert s["trained_params"]["trained"] == 512 * 10 + 10
    assert "--freeze-backbone: training fc.bias, fc.kernel (5,130 of 11,181,642 parameters)" in out, out
    mngr = checkpoint.open_manager(str(work), 2)
    state = checkpoint.restore_local(mngr)
    mngr.close()
    final = {"params": state["params"], "batch_stats": state["batch_stats"]}
    flat_init = flax.traverse_util.flatten_dict(jax.device_get(init))
    flat_final = flax.traverse_util.flatten_dict(final)
    assert set(flat_init) == set(flat_final)
    moved = sorted(".".join(k[1:]) for k in flat_init if not np.array_equal(flat_init[k], np.asarray(flat_final[k])))
    assert moved == ["fc.bias", "fc.kernel"], moved
