"""Training parity with PyTorch: K steps of `train.steps.train_step` with the project's SGD
(`train.optim.make_optimizer`: momentum, no Nesterov, weight decay, warmup+cosine schedule)
against torch.optim.SGD on the torchref twin, same batches, same converted start weights.

float64 on both sides must agree to 1e-10 (relative, max over params and BN buffers);
the float32 figure is printed, not asserted tightly. Model: regnet_x_400mf at 64x64, batch 8,
randomised BatchNorm statistics, peak lr 0.01. (At 32x32 the last stage's BatchNorm sees 8
values per channel (1x1 maps): its backward pass is so ill-conditioned that 1e-12 differences
after the first step grow to 1e-6 by the third, on either side alone.) Convolutions use XLA's
own grouped convolution (conv_ops.use_impl("plain")): the same numbers as conv_ops' CPU fast
path, compiled much faster. The torch side uses the schedule's values as optax computes them
(float32, from an int32 step count).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import torch

import flaxnets
from flaxnets import conv_ops
import torchref
from flaxnets.convert import tensor_to_numpy
from parity_tests.harness import randomize_, rel_err
from train import optim, steps
from train.state import create_state

NAME, K, BATCH, SIZE, CLASSES = "regnet_x_400mf", 3, 8, 64, 10
LR, MOMENTUM, WD, TOTAL, WARMUP = 0.01, 0.9, 1e-3, 10, 2


def run_both(torch_dtype) -> list[dict]:
    """K interleaved torch/JAX steps; after each, the worst relative errors of params and BN buffers."""
    torch.manual_seed(0)
    tmodel = torchref.create_model(NAME, num_classes=CLASSES).to(torch_dtype)
    randomize_(tmodel, 1)
    # Cloned: torch updates its tensors in place, and host memory may be shared with JAX arrays.
    variables = flaxnets.from_torch_state_dict(NAME, {k: v.clone() for k, v in tmodel.state_dict().items()},
                                               num_classes=CLASSES)
    w0 = tensor_to_numpy(tmodel.state_dict()["fc.weight"]).copy()
    model = flaxnets.create_model(NAME, num_classes=CLASSES)
    schedule = optim.lr_schedule(LR, TOTAL, WARMUP)
    tx = optim.make_optimizer("sgd", schedule, momentum=MOMENTUM, nesterov=False, weight_decay=WD)
    topt = torch.optim.SGD(tmodel.parameters(), lr=LR, momentum=MOMENTUM, nesterov=False, weight_decay=WD)
    step = jax.jit(functools.partial(steps.train_step, model=model, tx=tx, cfg=steps.StepConfig()))
    state = create_state(variables, tx, use_ema=False)
    params = {k for k, _ in tmodel.named_parameters()}
    g = torch.Generator().manual_seed(2)
    tmodel.train()
    out = []
    for k in range(K):
        x = torch.randn(BATCH, 3, SIZE, SIZE, generator=g, dtype=torch_dtype)
        y = torch.randint(0, CLASSES, (BATCH,), generator=g)
        for group in topt.param_groups:  # the value optax uses: the schedule at an int32 count
            group["lr"] = float(schedule(jnp.asarray(k, jnp.int32)))
        topt.zero_grad()
        torch.nn.functional.cross_entropy(tmodel(x), y).backward()
        topt.step()
        state, _ = step(state, {"image": jnp.asarray(tensor_to_numpy(x).transpose(0, 2, 3, 1)),
                                "label": jnp.asarray(y.numpy().astype(np.int32))})
        got = flaxnets.to_torch_state_dict(NAME, {"params": state.params, "batch_stats": state.batch_stats},
                                           num_classes=CLASSES)
        want = tmodel.state_dict()
        assert tensor_to_numpy(got["fc.weight"]).dtype == tensor_to_numpy(want["fc.weight"]).dtype
        errs = {k: rel_err(tensor_to_numpy(got[k]), tensor_to_numpy(v)) for k, v in want.items()}
        for key, v in want.items():
            if key.endswith("num_batches_tracked"):
                assert int(got[key]) == int(v), key
        out.append({"params": max(errs[k] for k in params), "buffers": max(v for k, v in errs.items() if k not in params),
                    "worst": max(errs, key=errs.get), "moved": rel_err(tensor_to_numpy(want["fc.weight"]), w0)})
    return out


def report(dtype: str, errs: list[dict]) -> None:
    for k, r in enumerate(errs, start=1):
        print(f"{dtype}, SGD step {k}/{K} on {NAME}: params rel err {r['params']:.2e}, BN buffers {r['buffers']:.2e} "
              f"(worst {r['worst']}); fc.weight moved by {r['moved']:.2e}")


def test_sgd_steps_match_torch_float64():
    with jax.enable_x64(True), conv_ops.use_impl("plain"):
        errs = run_both(torch.float64)
    report("float64", errs)
    assert errs[-1]["moved"] > 1e-2  # the steps did change the weights
    for r in errs:
        assert r["params"] <= 1e-10 and r["buffers"] <= 1e-10


def test_sgd_steps_match_torch_float32():
    """Printed, checked loosely: float32 rounding (1e-7) is amplified ~500x by one backward pass
    through 22 blocks of batch-8 BatchNorm, and compounds over the steps (see float64 above)."""
    with conv_ops.use_impl("plain"):
        errs = run_both(torch.float32)
    report("float32", errs)
    assert errs[0]["params"] < 1e-3 and errs[0]["buffers"] < 1e-3
    assert all(np.isfinite(r["params"]) for r in errs)
