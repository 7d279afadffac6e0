"""The XLA:CPU convolution flag `import flaxnets` sets: Flax train step and inference with and
without it, interleaved in two worker processes (XLA reads XLA_FLAGS once per process).

    python -m benchmarks.xla_flag [--models resnet50,mobilenet_v2] [--batch 32] [--size 224] [--repeats 5]
        [--against FLAGS]

Prints a markdown table: median ms per step with the flag (flaxnets' default) and without it
(`FLAXNETS_NO_XLA_FLAGS=1`: YNNPACK convolutions), and the speed-up. ``--against FLAGS`` runs
the second worker with ``FLAXNETS_NO_XLA_FLAGS=1`` and these XLA flags instead of none (a
candidate setting against the default, e.g.
``--against=--xla_cpu_experimental_ynn_fusion_type=-individual_convolution,-dot``).
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import statistics
import time


def _worker(conn, no_flag: bool, name: str, batch: int, size: int, against: str = ""):
    if no_flag:  # (a parent that imported flaxnets passes its flag down in XLA_FLAGS)
        os.environ["FLAXNETS_NO_XLA_FLAGS"] = "1"
        os.environ["XLA_FLAGS"] = " ".join([f for f in os.environ.get("XLA_FLAGS", "").split()
                                            if not f.startswith("--xla_cpu_experimental_ynn_fusion_type")]
                                           + against.split())
    import jax

    from benchmarks.bench import flax_variants
    variants, _ = flax_variants(name, batch, size, "float32")
    conn.send(os.environ.get("XLA_FLAGS", ""))
    steps = {v.name: v.step for v in variants}
    for v in steps.values():
        v()
    while True:
        which = conn.recv()
        if which is None:
            return
        t = time.perf_counter()
        steps[which]()
        conn.send(time.perf_counter() - t)
    del jax


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.xla_flag", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="resnet50,mobilenet_v2")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--against", default="", metavar="FLAGS",
                   help="XLA flags of the second worker (default: none, i.e. without flaxnets' flag)")
    a = p.parse_args(argv)
    ctx = multiprocessing.get_context("spawn")
    rows, flags = [], {}
    for name in a.models.split(","):
        pipes, procs = {}, []
        for no_flag in (False, True):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, no_flag, name, a.batch, a.size, a.against), daemon=True)
            proc.start()
            pipes[no_flag] = parent
            flags[no_flag] = parent.recv()
            procs.append(proc)
        for mode in ("flax train", "flax infer"):
            times = {False: [], True: []}
            for _ in range(a.repeats):
                for no_flag in (False, True):
                    pipes[no_flag].send(mode)
                    times[no_flag].append(pipes[no_flag].recv())
            on, off = statistics.median(times[False]), statistics.median(times[True])
            rows.append({"model": name, "mode": mode, "with_flag_ms": on * 1e3, "without_ms": off * 1e3,
                         "speedup": off / on})
        for no_flag in (False, True):
            pipes[no_flag].send(None)
        for proc in procs:
            proc.join(60)
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    print(f"{cpu}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; batch {a.batch}, {a.size}², "
          f"float32, median of {a.repeats} interleaved steps; XLA_FLAGS with: `{flags.get(False, '')}`, "
          f"{'against' if a.against else 'without'}: `{flags.get(True, '')}`")
    other = "against (ms)" if a.against else "without (ms)"
    print(f"| model | step | with the flag (ms) | {other} | speed-up |\n|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['mode']} | {r['with_flag_ms']:.0f} | {r['without_ms']:.0f} | {r['speedup']:.2f}x |")
    return rows


if __name__ == "__main__":
    main()
