"""Op-level profile of one model's train step (or inference), Flax against torch, side by side.

    python -m benchmarks.profile_step --model convnext_tiny [--batch 32] [--size 224] \
        [--mode train|infer] [--steps 3] [--top 25] [--dtype float32|bfloat16] [--channels-last] \
        [--json out.json]

Flax: the jitted step of ``benchmarks.bench`` (same model, optimiser, donation) traced with
``jax.profiler`` for ``--steps`` steps after warm-up; every XLA:CPU thunk's time (the trace's
events named after the HLO instructions of the compiled step) is attributed, through the
instruction's ``op_name`` metadata, to the model's module path, and through that path to the
class of the torchref module at the same path (Flax paths mirror torch's), split into forward
and backward (``transpose(jvp(...))``). Depthwise and grouped ``Conv2d`` get their own rows
(``Conv2d[dw]``, ``Conv2d[g]``), as do kernel sizes (``Conv2d[dw 7x7]``).

torch: the same step of ``benchmarks.bench`` (torchref eager, NCHW or ``--channels-last``) under ``torch.profiler``;
self CPU time per aten operator.

Both tables give ms per step and the share of the profiled step time; the header gives the
step's wall time with and without the profiler. Threads: XLA:CPU runs a thunk's work on its
thread pool inside the thunk's span, so thunk spans on the executing thread add up to the
step; torch's self CPU time counts the calling thread's time in each operator (its intra-op
threads work inside it). A measurement, not a test; run it on a quiet machine.
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import statistics
import sys
import tempfile
import time

from benchmarks import bench
from benchmarks.common import cpu_model

_SKIP = {"parameter", "constant", "get-tuple-element", "tuple", "bitcast"}


def hlo_instructions(text: str) -> dict[str, tuple[str, str]]:
    """{instruction name: (opcode, op_name metadata)} over every computation of an HLO module's text."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"\s*(?:ROOT )?%(\S+) = .*? ([a-z][\w-]*)\(", line)
        if m and m.group(2) not in _SKIP:
            o = re.search(r'op_name="([^"]*)"', line)
            out[m.group(1)] = (m.group(2), o.group(1) if o else "")
    return out


def module_path(op_name: str) -> tuple[str, bool]:
    """("features.1.0.block.0", backward?) from e.g. 'jit(train_step)/transpose(jvp(ConvNeXt))/features/1/0/
    block/0/conv_general_dilated' (the last component is the primitive)."""
    backward = "transpose(" in op_name
    parts = [p for p in op_name.split("/")[1:-1] if "(" not in p and "." not in p]
    return ".".join(parts), backward


def torch_module_kinds(model) -> dict[str, str]:
    """{module path: class name}, Conv2d split into dense / grouped / depthwise and kernel size."""
    import torch

    kinds = {}
    for name, m in model.named_modules():
        k = type(m).__name__
        if isinstance(m, torch.nn.Conv2d):
            kh, kw = m.kernel_size
            tag = "dw " if m.groups == m.in_channels and m.groups > 1 else "g " if m.groups > 1 else ""
            k = f"Conv2d[{tag}{kh}x{kw}]"
        kinds[name] = k
    return kinds


def kind_of(path: str, kinds: dict[str, str]) -> str:
    """The class of the deepest torch module on ``path`` ("(top)" for ops outside any module)."""
    parts = path.split(".") if path else []
    best = (0, "(top)")
    for skip in (0, 1):  # outside a transform the op_name starts with the model class ("ConvNeXt/...")
        for n in range(len(parts), skip, -1):
            k = kinds.get(".".join(parts[skip:n]))
            if k is not None:
                best = max(best, (n - skip, k))
                break
    return best[1]


def profile_flax(v, steps: int) -> tuple[list[dict], float]:
    """Per-thunk ms per step (instruction, opcode, op_name) and the traced steps' wall ms per step."""
    import jax

    insts = hlo_instructions(v.compiled.as_text())
    d = tempfile.mkdtemp(prefix="flaxnets-prof-")
    jax.profiler.start_trace(d, create_perfetto_trace=True)
    t0 = time.perf_counter()
    for _ in range(steps):
        v.step()
    wall = (time.perf_counter() - t0) / steps * 1e3
    jax.profiler.stop_trace()
    [path] = glob.glob(os.path.join(d, "**", "perfetto_trace.json.gz"), recursive=True)
    with gzip.open(path) as f:
        events = json.load(f)["traceEvents"]
    ms = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and e.get("name") in insts:
            ms[e["name"]] += e["dur"] / 1e3 / steps
    rows = [{"inst": n, "opcode": insts[n][0], "op_name": insts[n][1], "ms": t} for n, t in ms.items()]
    return sorted(rows, key=lambda r: -r["ms"]), wall


def profile_torch(v, steps: int) -> tuple[list[dict], float]:
    import torch

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            v.step()
        wall = (time.perf_counter() - t0) / steps * 1e3
    rows = [{"op": a.key, "ms": a.self_cpu_time_total / 1e3 / steps, "calls": a.count / steps}
            for a in prof.key_averages()]
    return sorted(rows, key=lambda r: -r["ms"]), wall


def _timed(step, n: int) -> float:
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        step()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


def run(args) -> dict:
    import torch

    import torchref

    train, infer = args.mode == "train", args.mode == "infer"
    fv, classes = bench.flax_variants(args.model, args.batch, args.size, args.dtype, train=train, infer=infer)
    tvs = bench.torch_variants(args.model, args.batch, args.size, args.dtype, classes,
                               channels_last=args.channels_last, train=train, infer=infer)
    tv = tvs[-1]  # with --channels-last: [NCHW, channels_last]
    [fv] = fv
    for v in (fv, tv):
        for _ in range(2):
            v.step()
    plain = {"flax": _timed(fv.step, args.steps), "torch": _timed(tv.step, args.steps)}
    frows, fwall = profile_flax(fv, args.steps)
    trows, twall = profile_torch(tv, args.steps)
    kinds = torch_module_kinds(torchref.create_model(args.model))
    by_kind = collections.defaultdict(float)
    for r in frows:
        path, bwd = module_path(r["op_name"])
        r["path"], r["backward"], r["kind"] = path, bwd, kind_of(path, kinds)
        by_kind[(r["kind"], "bwd" if bwd else "fwd")] += r["ms"]
    return {"model": args.model, "batch": args.batch, "size": args.size, "mode": args.mode, "dtype": args.dtype,
            "torch_layout": "channels_last" if args.channels_last else "NCHW",
            "cpu": cpu_model(), "torch": torch.__version__, "loadavg": os.getloadavg(),
            "step_ms": plain, "profiled_step_ms": {"flax": fwall, "torch": twall},
            "flax_ops": frows, "flax_by_kind": [{"kind": k, "pass": p, "ms": t} for (k, p), t in
                                                sorted(by_kind.items(), key=lambda kv: -kv[1])],
            "torch_ops": trows}


def report(res: dict, top: int) -> str:
    import jax

    fsum = sum(r["ms"] for r in res["flax_ops"])
    tsum = sum(r["ms"] for r in res["torch_ops"])
    lines = [f"{res['model']} {res['mode']} batch {res['batch']} {res['size']}² {res['dtype']}; {res['cpu']}; "
             f"jax {jax.__version__}, torch {res['torch']} ({res.get('torch_layout', 'NCHW')}); load {res['loadavg'][0]:.1f}",
             f"step ms (median, unprofiled): flax {res['step_ms']['flax']:.0f}, torch {res['step_ms']['torch']:.0f} "
             f"(flax/torch time {res['step_ms']['flax'] / res['step_ms']['torch']:.2f}); profiled: flax "
             f"{res['profiled_step_ms']['flax']:.0f} (thunks {fsum:.0f}), torch {res['profiled_step_ms']['torch']:.0f} "
             f"(self CPU {tsum:.0f})", "",
             "Flax by torch module class and pass:", "", "| module class | pass | ms/step | share |",
             "|---|---|---:|---:|"]
    for r in res["flax_by_kind"][:top]:
        lines.append(f"| {r['kind']} | {r['pass']} | {r['ms']:.1f} | {r['ms'] / fsum:.1%} |")
    lines += ["", "Flax thunks:", "", "| instruction | opcode | module path | pass | ms/step | share |",
              "|---|---|---|---|---:|---:|"]
    for r in res["flax_ops"][:top]:
        lines.append(f"| {r['inst']} | {r['opcode']} | {r['path']} ({r['kind']}) | "
                     f"{'bwd' if r['backward'] else 'fwd'} | {r['ms']:.1f} | {r['ms'] / fsum:.1%} |")
    lines += ["", "torch operators (self CPU):", "", "| operator | calls/step | ms/step | share |",
              "|---|---:|---:|---:|"]
    for r in res["torch_ops"][:top]:
        lines.append(f"| {r['op']} | {r['calls']:.0f} | {r['ms']:.1f} | {r['ms'] / tsum:.1%} |")
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile_step", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--mode", choices=("train", "infer"), default="train")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--channels-last", action="store_true", help="torch in channels_last (default: eager NCHW)")
    p.add_argument("--json")
    return p


def main(argv=None) -> dict:
    args = parser().parse_args(argv)
    import flaxnets

    if args.model not in flaxnets.list_models():
        parser().error(f"--model {args.model!r}: not a registered model (flaxnets.list_models())")
    res = run(args)
    print(report(res, args.top))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return res


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
