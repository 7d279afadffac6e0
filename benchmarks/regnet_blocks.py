"""Per-block train-mode forward+backward times of a RegNet, Flax (jax.jit) against torchref.

    python -m benchmarks.regnet_blocks [--model regnet_x_400mf] [--batch 32] [--repeats 7]

Where `python -m benchmarks.bench` says how far a whole RegNet train step is from torch, this
says which blocks make the difference: for the first block of every stage and one repeated
block, the time of one forward + backward (loss sum(y²), gradients for the parameters and the
input, BatchNorm in train mode) at the block's input size for a 224² image, Flax and torch
alternating in this one process (both with transparent huge pages: the process restarts once
with them, as `python -m train.main` does). Prints a markdown table: median milliseconds, the
torch/Flax ratio (above 1: Flax faster), and how many blocks of that kind the model has, so
the last line weighs them. A measurement, not a test.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def _median_ms(fn, repeats: int) -> float:
    fn(), fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.regnet_blocks",
                                description=__doc__.split("\n")[0])
    p.add_argument("--model", default="regnet_x_400mf")
    p.add_argument("--batch", type=_positive, default=32)
    p.add_argument("--size", type=_positive, default=224, help="image size the block inputs follow from")
    p.add_argument("--repeats", type=_positive, default=7)
    args = p.parse_args(argv)

    import jax
    import jax.numpy as jnp
    import torch

    from flaxnets import regnet as flax_regnet
    from torchref import regnet as torch_regnet

    if args.model not in flax_regnet.VARIANTS:
        p.error(f"--model {args.model!r}: not a RegNet; one of {', '.join(flax_regnet.VARIANTS)}")
    cfg = flax_regnet.VARIANTS[args.model]
    rows, width, size = [], 32, (args.size - 1) // 2 + 1  # the stem: 32 channels, stride 2
    for s, spec in enumerate(cfg.stages(), start=1):
        kinds = [(0, width, spec.stride, size, 1)]
        size = (size - 1) // spec.stride + 1
        if spec.depth > 1:
            kinds.append((1, spec.width, 1, size, spec.depth - 1))
        for i, w_in, stride, hw, count in kinds:
            args_ = (w_in, spec.width, stride, spec.group_width, spec.bottleneck_multiplier, cfg.se_ratio)
            fb = flax_regnet.ResBottleneckBlock(*args_)
            x = jnp.asarray(np.random.default_rng(0).standard_normal((args.batch, hw, hw, w_in)), jnp.float32)
            v = fb.init(jax.random.key(0), x, train=False)

            def loss(params, x, fb=fb, stats=v["batch_stats"]):
                y, upd = fb.apply({"params": params, "batch_stats": stats}, x, train=True,
                                  mutable=["batch_stats"])
                return jnp.sum(y * y), upd

            step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))
            tb = torch_regnet.ResBottleneckBlock(*args_).train()
            xt = torch.randn(args.batch, w_in, hw, hw, requires_grad=True)

            def torch_step(tb=tb, xt=xt):
                for q in tb.parameters():
                    q.grad = None
                xt.grad = None
                y = tb(xt)
                (y * y).sum().backward()

            def flax_step(step=step, params=v["params"], x=x):
                jax.block_until_ready(step(params, x))

            flax_ms, torch_ms = [], []
            for _ in range(3):  # alternate, three medians each, keep the middle one
                flax_ms.append(_median_ms(flax_step, args.repeats))
                torch_ms.append(_median_ms(torch_step, args.repeats))
            rows.append({"block": f"block{s}-{i}" + ("…" if count > 1 else ""), "in": f"{w_in}×{hw}²",
                         "width": spec.width,
                         "groups": int(spec.width * spec.bottleneck_multiplier) // spec.group_width,
                         "stride": stride, "count": count, "flax_ms": float(np.median(flax_ms)),
                         "torch_ms": float(np.median(torch_ms))})
            r = rows[-1]
            print(f"{r['block']} done: flax {r['flax_ms']:.1f} ms, torch {r['torch_ms']:.1f} ms", flush=True)
        width = spec.width

    print(f"\n{args.model}, batch {args.batch}, {args.size}² images, train-mode forward + backward "
          f"per block, median ms ({args.repeats} repeats x 3 alternations, one process)\n")
    print("| block | input | width | groups | stride | blocks like it | Flax ms | torch ms | torch / Flax |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['block']} | {r['in']} | {r['width']} | {r['groups']} | {r['stride']} | {r['count']} | "
              f"{r['flax_ms']:.1f} | {r['torch_ms']:.1f} | {r['torch_ms'] / r['flax_ms']:.2f} |")
    tf = sum(r["flax_ms"] * r["count"] for r in rows)
    tt = sum(r["torch_ms"] * r["count"] for r in rows)
    print(f"| all blocks, weighted by count | | | | | | {tf:.0f} | {tt:.0f} | {tt / tf:.2f} |")
    return rows


if __name__ == "__main__":
    from flaxnets import runtime

    runtime.reexec_with_thp()
    main()
