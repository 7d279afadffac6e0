"""GPU train-step benchmark, one prepared run for a lent GPU (an H200, typically for minutes):
flaxnets (jax.jit) against torchref in torch channels_last + AMP, float32/TF32 and bfloat16.

    python -m benchmarks.gpu [--models resnet50,convnext_tiny,...] [--batch 128] [--size 224] \
        [--repeats 10] [--steps 5] [--budget-s 420] [--md OUT/gpu.md] [--json OUT/gpu.json]

Fails at once, saying why, unless jax's default backend is a GPU and torch sees CUDA
(``--allow-cpu`` exists only for the CPU smoke test). Both frameworks run in this process:
jax takes at most ``XLA_PYTHON_CLIENT_MEM_FRACTION`` (0.45 unless set) of the device memory,
torch the rest; torch.compile stays off.

Per model (default: one per family, ``ORDER``, the most asked-for first) and dtype:

- ``float32``: TF32 on both sides (jax ``jax_default_matmul_precision="tensorfloat32"``;
  torch ``allow_tf32`` for matmuls and cuDNN), float32 parameters and data;
- ``bfloat16``: Flax ``dtype=jnp.bfloat16`` (float32 parameters and BatchNorm statistics),
  torch ``torch.autocast("cuda", torch.bfloat16)``;

the train step (forward, cross-entropy, gradients, SGD with momentum, BatchNorm update; Flax:
one jitted function with the state donated; torch eager with ``cudnn.benchmark``) in NCHW and
channels_last (``torch-cl``, the reference), after ``--warmup`` steps: ``--repeats`` rounds,
interleaved, each timing ``--steps`` steps ending with a device synchronisation; the median
step time gives img/s. FLOPs per step come from XLA's cost analysis of the Flax step (traced
with plain convolutions, before optimisation; used for both frameworks); "% peak" divides the
achieved FLOP/s by the H100/H200 SXM dense bfloat16 peak (989 TFLOP/s, ``--peak-tflops``) and
the table also gives an 8192³ bf16 matmul measured in the same run. Device memory: XLA's
buffer assignment of the compiled step (Flax), ``torch.cuda.max_memory_allocated`` over a
step (torch).

The run starts no new model/dtype after ``--budget-s`` seconds (the first always runs) and marks
the rest skipped; the markdown and JSON are rewritten after every model, so a run cut short
still leaves its rows.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

ORDER = ("resnet50", "convnext_tiny", "vit_b_16", "swin_t", "maxvit_t", "mobilenet_v3_large", "efficientnet_b0",
         "regnet_x_400mf", "mobilenet_v2", "shufflenet_v2_x1_0", "mnasnet1_0", "densenet121", "resnext50_32x4d",
         "inception_v3", "googlenet", "vgg11_bn", "squeezenet1_1", "alexnet", "mobilenet_v1", "darknet53",
         "ese_vovnet19b_dw", "mobilenetv1_100", "semnasnet_100")
PEAK_TFLOPS = 989.0  # H100/H200 SXM, dense bfloat16 (NVIDIA's datasheets: 1979 with sparsity)


def log(msg: str) -> None:
    print(f"[gpu {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def check_gpu(allow_cpu: bool = False) -> str:
    """"cuda", or SystemExit with what is missing (before any model is built)."""
    import jax
    import torch

    backend = jax.default_backend()
    problems = []
    if backend != "gpu":
        problems.append(f"jax's default backend is {backend!r}, not 'gpu' (devices: {jax.devices()}; "
                        "install a CUDA jax, e.g. pip install 'jax[cuda13]')")
    if not torch.cuda.is_available():
        problems.append(f"torch {torch.__version__} sees no CUDA device (a CPU-only torch build, or no driver)")
    if not problems:
        return "cuda"
    if allow_cpu:
        log("no GPU (" + "; ".join(problems) + "): --allow-cpu, running on the CPU (smoke test only)")
        return "cpu"
    raise SystemExit("benchmarks.gpu: no GPU to benchmark on: " + "; ".join(problems))


def _time(step, n: int, sync) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    sync()
    return (time.perf_counter() - t0) / n


def bench_one(name: str, dtype: str, args, device: str) -> list[dict]:
    import jax
    import torch

    from benchmarks import bench

    flax_vs, classes = bench.flax_variants(name, args.batch, args.size, dtype, train=True, infer=False)
    torch_vs = bench.torch_variants(name, args.batch, args.size, dtype, classes, channels_last=True,
                                    train=True, infer=False, device=device)
    variants = flax_vs + torch_vs
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    flops = flax_vs[0].flops
    for v in variants:
        for _ in range(args.warmup):
            v.step()
    sync()
    times, mem = {v.name: [] for v in variants}, {}
    for r in range(args.repeats):
        for v in variants:
            if device == "cuda" and v.framework != "flax":
                torch.cuda.reset_peak_memory_stats()
            times[v.name].append(_time(v.step, args.steps, sync))
            if device == "cuda" and v.framework != "flax":
                mem[v.name] = torch.cuda.max_memory_allocated() / 2**20
        log(f"{name} {dtype}: round {r + 1}/{args.repeats}: "
            + ", ".join(f"{k} {1e3 * t[-1]:.1f} ms" for k, t in times.items()))
    med = {k: statistics.median(t) for k, t in times.items()}
    rows = []
    for v in variants:
        t = med[v.name]
        rows.append({
            "model": name, "dtype": dtype, "variant": v.name, "img_s": args.batch / t,
            "img_s_min": args.batch / max(times[v.name]), "img_s_max": args.batch / min(times[v.name]),
            "vs_torch_cl": med["torch-cl train"] / t, "vs_torch": med["torch train"] / t,
            "step_ms": 1e3 * t, "compile_s": v.compile_s, "flops_per_step": flops,
            "tflop_s": flops / t / 1e12 if flops else None,
            "pct_peak": 100 * flops / t / 1e12 / args.peak_tflops if flops else None,
            "device_mb": (v.xla_bytes / 2**20 if v.xla_bytes else None) if v.framework == "flax" else mem.get(v.name),
        })
    del variants, flax_vs, torch_vs
    jax.clear_caches()
    if device == "cuda":
        torch.cuda.empty_cache()
    return rows


def _f(v, spec):
    return "–" if v is None else format(v, spec)


def markdown(res: dict) -> str:
    m = res["meta"]
    mm = res.get("matmul_tflop_s") or {}
    lines = [
        f"`{res['command']}`", "",
        f"{m['gpu']} (host: {m['cpu']}, {m['cores']} cores); jax {m['jax']}, flax {m['flax']}, torch {m['torch']}; "
        f"batch {res['batch']}, {res['size']}², train step, median of {res['repeats']} interleaved rounds of "
        f"{res['steps']} steps after {res['warmup']} warm-up. float32 = TF32 on both sides; bfloat16 = Flax "
        f"`dtype=jnp.bfloat16` vs torch autocast. torch: eager (torch.compile off), `cudnn.benchmark`; "
        f"`torch-cl` = channels_last (the reference). % peak: achieved TFLOP/s (XLA cost analysis of the Flax "
        f"step, for both) / {res['peak_tflops']:.0f} TFLOP/s dense bf16; 8192³ bf16 matmul measured here: "
        f"jax {_f(mm.get('flax'), '.0f')}, torch {_f(mm.get('torch'), '.0f')} TFLOP/s.", "",
        "| model | dtype | variant | img/s median [min, max] | vs torch-cl | vs torch | step ms | compile s "
        "| TFLOP/s | % bf16 peak | device MB |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        if "error" in r or "skipped" in r:
            lines.append(f"| {r['model']} | {r['dtype']} | {r.get('error') or r['skipped']} | | | | | | | | |")
            continue
        lines.append(f"| {r['model']} | {r['dtype']} | {r['variant']} | {r['img_s']:.0f} [{r['img_s_min']:.0f}, "
                     f"{r['img_s_max']:.0f}] | {r['vs_torch_cl']:.2f}× | {r['vs_torch']:.2f}× | {r['step_ms']:.1f} | "
                     f"{_f(r['compile_s'], '.1f')} | {_f(r['tflop_s'], '.1f')} | {_f(r['pct_peak'], '.1f')} | "
                     f"{_f(r['device_mb'], '.0f')} |")
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n")[0])
    p.add_argument("--models", default=",".join(ORDER))
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--steps", type=int, default=5, help="steps per timed round")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--budget-s", type=float, default=420, help="start no new model after this many seconds (the first always runs)")
    p.add_argument("--peak-tflops", type=float, default=PEAK_TFLOPS)
    p.add_argument("--md", help="markdown output (rewritten after every model)")
    p.add_argument("--json")
    p.add_argument("--allow-cpu", action="store_true", help=argparse.SUPPRESS)  # the CPU smoke test
    return p


def main(argv=None) -> dict:
    t_start = time.perf_counter()
    p = parser()
    args = p.parse_args(argv)
    dtypes = [d for d in args.dtypes.split(",") if d]
    if not set(dtypes) <= {"float32", "bfloat16"} or not dtypes:
        p.error(f"--dtypes: float32 and/or bfloat16, got {args.dtypes!r}")
    for opt in ("batch", "size", "repeats", "steps"):
        if getattr(args, opt) < 1:
            p.error(f"--{opt} must be >= 1")
    os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")
    import flaxnets  # (before jax starts its backend: flaxnets' XLA flags)

    device = check_gpu(args.allow_cpu)  # before any model is built

    import jax
    import torch

    from benchmarks import bench

    names = [m for m in args.models.split(",") if m]
    unknown = [m for m in names if m not in flaxnets.list_models()]
    if unknown:
        p.error(f"--models: unknown model name(s) {', '.join(map(repr, unknown))}")
    jax.config.update("jax_default_matmul_precision", "tensorfloat32")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    meta = bench.machine_info(device)
    meta["gpu"] = meta.get("gpu") or f"no GPU ({device})"
    command = "python -m benchmarks.gpu " + " ".join(argv if argv is not None else sys.argv[1:])
    res = {"command": command.strip(), "batch": args.batch, "size": args.size, "repeats": args.repeats,
           "steps": args.steps, "warmup": args.warmup, "peak_tflops": args.peak_tflops, "meta": meta, "rows": []}
    if device == "cuda":
        peak = bench.matmul_peak("bfloat16", 8192, device=device)
        res["matmul_tflop_s"] = {k: v / 1e3 for k, v in peak.items()}
        log(f"bf16 matmul TFLOP/s: {res['matmul_tflop_s']}")
    for name in names:
        for dtype in dtypes:
            if res["rows"] and time.perf_counter() - t_start > args.budget_s:
                res["rows"].append({"model": name, "dtype": dtype, "skipped": f"skipped (--budget-s {args.budget_s:.0f})"})
                continue
            try:
                res["rows"] += bench_one(name, dtype, args, device)
            except Exception as e:  # out of memory etc.: the other models still run
                log(f"{name} {dtype}: FAILED: {type(e).__name__}: {str(e)[:300]}")
                res["rows"].append({"model": name, "dtype": dtype, "error": f"failed: {type(e).__name__}: {str(e)[:120]}"})
                jax.clear_caches()
        meta["loadavg_end"] = os.getloadavg()
        _write(res, args)
    text = markdown(res)
    print(text)
    return res


def _write(res: dict, args) -> None:
    if args.md:
        with open(args.md, "w") as f:
            f.write(markdown(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
