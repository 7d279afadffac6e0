"""Throughput benchmark: flaxnets (jax.jit) against torchref (PyTorch eager) on this machine.

    python -m benchmarks.bench --models regnet_x_400mf,resnet50 --batch 32 --size 224 \
        [--repeats 5] [--torch-compile] [--dtype float32|bfloat16] \
        [--out docs/benchmarks.md --tag fp32] [--json out.json]
    python -m benchmarks.bench --convs [--repeats 5] [--out ... --tag convs]
    python -m benchmarks.bench --families [FAMILY,...] | --all-models | --models ... \
        [--what train,latency,infer,bf16,compile] [--latency-repeats 20] [--out ... --tag ...]

The suite (``--what``; ``--families`` and ``--all-models`` imply all of it): per model, up to
three runs of the measurement below, float32 at ``--batch`` (train and/or infer), float32 at
batch 1 (inference latency) and bfloat16 at ``--batch`` (train and infer), then summary tables:
train step and batch inference img/s against torch eager NCHW and channels_last; batch-1
latency (median ms of ``--latency-repeats`` rounds) and, for the mobile families
(``MOBILE_PREFIXES``), the MnasNet paper's objective ACC·(LAT/T)^w (w = -0.07, T = 80 ms, ACC
= the published top-1 of the model's default weights from ``flaxnets.weights_info``, LAT = the
measured latency) for Flax and torch; bfloat16 (Flax ``dtype=jnp.bfloat16`` with float32
parameters against ``torch.autocast("cpu", torch.bfloat16)``); compile seconds of the jitted
train step and XLA's buffer assignment of it (``memory_analysis()``: temporaries, arguments,
outputs) next to both frameworks' peak RSS, each running its train step alone in a fresh
worker process (`fresh_process_memory`; also with ``--same-process``; CPU only).
``--max-params M`` keeps the chosen models of at most M million parameters (the compile goal's
"up to ~30M"). ``--families`` without a value takes ``REPRESENTATIVES`` (one model per family
of ``netspecs.FAMILIES`` but the 32x32 LeNet-5); the header line gives the CPU's bfloat16 units
(AMX-BF16 / AVX512-BF16 flags of /proc/cpuinfo). Per-variant details of every run follow the
summary tables.

For each model the Flax variants run in one worker process and the torch variants in another
(as a user trains with one framework per process; ``--same-process`` puts all in this one,
which is what happens on a GPU), both started by this command. Variants are warmed up and then
timed interleaved: per round, each variant runs `--settle` untimed steps (default 1) and then
one timed step; `--repeats` rounds. Why both matter on this kind of machine (2-core VM): the
first step of one framework after the other's has to page its buffers back in (a resnet50
Flax step: 8 s of system time instead of 0.6), which no user running one framework sees; and
in one process the two frameworks slowed each other further (torch's regnet_x_400mf train
step: 34 img/s next to Flax, 60 alone). docs/benchmarks.md has the measurements.

``--thp flax`` (default): the Flax worker runs with transparent huge pages for glibc's
allocations (``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``, which ``python -m train.main`` sets for
itself, `flaxnets.runtime.reexec_with_thp`), torch in its default environment; ``--thp both``
gives torch the same, ``--thp none`` neither.

- ``flax train``: jitted step = forward, softmax cross-entropy, grads, optax SGD+momentum,
  BatchNorm batch_stats update; the train state is donated. ``flax infer``: jitted eval forward.
- ``torch train`` / ``torch infer``: torchref eager in NCHW, and again in channels_last
  (``torch-cl``); ``--torch-compile`` adds torch.compile variants. torch uses as many threads as
  this process may run on (XLA:CPU does the same).

``--dtype bfloat16``: bf16 compute with fp32 parameters and BatchNorm statistics (Flax: the
models' ``dtype`` knob; torch: ``torch.autocast(device, torch.bfloat16)``, i.e. AMP in bf16).

On a GPU (jax's default backend is ``gpu`` and torch sees CUDA) both frameworks run there:
torch with ``cudnn.benchmark`` on (XLA autotunes its convolutions too), every step ends with a
device synchronisation, jax is limited to ``XLA_PYTHON_CLIENT_MEM_FRACTION=0.45`` of the
device (unless set) so torch has room in the same process, and the table reports device
memory (torch: ``max_memory_allocated`` during a step; Flax: XLA's buffer assignment) instead
of host RSS and page faults, plus the ratio to torch channels_last.

Reported per variant: median img/s with min/max, ratio to torch eager NCHW, jit compile time
(lower + compile), peak RSS growth during a step (sampled every 2 ms), minor page faults per
step, achieved GFLOP/s and its fraction of the matmul peak measured in the same run (same
framework, same dtype). FLOPs per step come from XLA's cost analysis of the compiled Flax
step (or forward), traced with plain convolutions before optimisation, and are used for both
frameworks. Progress goes to stderr.

``--convs`` instead times `flaxnets.conv_ops.conv2d` on the models' typical grouped, depthwise
and dense shapes (batch 32), ``plain`` (XLA's own convolution) against ``fast`` (the CPU fast
paths): forward and forward+backward GFLOP/s (useful FLOPs: 2 * MACs, x3 with the backward).
"""
from __future__ import annotations

import argparse
import copy
import functools
import json
import math
import os
import platform
import resource
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import flaxnets.runtime  # noqa: F401
import flaxnets  # first: applies flaxnets' XLA:CPU flags before jax starts its backend

# On a GPU jax would otherwise preallocate 75% of the device, leaving torch little room.
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")
import jax
import jax.numpy as jnp
import optax

from benchmarks.common import bf16_units, cpu_count, cpu_flags, cpu_model, write_markdown  # noqa: F401


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PeakRss:
    """Samples this process's RSS every `period` s while active; `.growth` = peak - start."""

    def __init__(self, period: float = 0.002):
        self.period, self.growth = period, 0

    def __enter__(self):
        self._start = self._peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(self.period):
            self._peak = max(self._peak, _rss_bytes())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, _rss_bytes())
        self.growth = self._peak - self._start


@dataclass
class Variant:
    name: str
    framework: str
    mode: str                       # "train" | "infer"
    step: Callable[[], None]        # one blocking step on one batch
    compile_s: float | None = None
    flops: float | None = None      # per step, XLA cost analysis
    xla_bytes: int | None = None    # XLA buffer assignment: arguments + outputs + temporaries
    xla_mem: dict | None = None     # its parts: temp, argument, output, alias bytes
    times: list = field(default_factory=list)
    cpu: list = field(default_factory=list)
    rss: list = field(default_factory=list)
    faults: list = field(default_factory=list)
    dev_mem: list = field(default_factory=list)  # torch on CUDA: peak bytes allocated per step
    remote: Callable[[], dict] | None = None  # worker-process mode: one timed step over there
    compiled: object = None         # Flax: the compiled executable (benchmarks.profile_step reads its HLO)
    params: int | None = None       # Flax: the model's number of parameters


def _logits(out):
    if isinstance(out, (tuple, list)):
        out = out[0]
    return getattr(out, "logits", out)


def _flops(compiled) -> float | None:
    ca = compiled.cost_analysis()
    if isinstance(ca, (list, tuple)):
        ca = ca[0] if ca else {}
    return float(ca["flops"]) if ca and "flops" in ca else None


def _plain_flops(fn, *args) -> float | None:
    """FLOPs of `fn` from XLA's cost analysis of its unoptimised HLO with plain convolutions.

    Not the compiled executable's: on GPU the convolutions become cuDNN custom calls, which
    XLA does not count, and on CPU the grouped fast path is a loop whose body counts once.
    """
    from flaxnets import conv_ops

    with conv_ops.use_impl("plain"):  # a fresh function: jax must not reuse a cached trace
        return _flops(jax.jit(lambda *a: fn(*a)).lower(*args))


def _xla_bytes(compiled) -> int | None:
    m = compiled.memory_analysis()
    if m is None:
        return None
    return int(m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
               + m.temp_size_in_bytes)


def _xla_mem(compiled) -> dict | None:
    m = compiled.memory_analysis()
    if m is None:
        return None
    return {k: int(getattr(m, f"{k}_size_in_bytes")) for k in ("temp", "argument", "output", "alias")}


def flax_variants(name, batch, size, dtype, train=True, infer=True, flops=True) -> tuple[list[Variant], int]:
    """The Flax variants and the model's number of classes (``flops=False``: no FLOP count, which
    traces the step a second time)."""
    bf16 = dtype == "bfloat16"
    model = flaxnets.create_model(name, **({"dtype": jnp.bfloat16} if bf16 else {}))
    key = jax.random.key(0)
    init_x = jnp.zeros((1, size, size, 3), jnp.float32)
    variables = jax.jit(lambda k: model.init({"params": k, "dropout": k}, init_x, train=False))(key)
    params, stats = variables["params"], variables.get("batch_stats", {})
    xdtype = jnp.bfloat16 if bf16 else jnp.float32
    x = jax.random.normal(key, (batch, size, size, 3), xdtype)
    classes = jax.eval_shape(lambda v: _logits(model.apply(v, init_x, train=False)), variables).shape[-1]
    y = jax.random.randint(key, (batch,), 0, classes)
    tx = optax.sgd(0.01, momentum=0.9)
    n_params = sum(p.size for p in jax.tree.leaves(params))
    out = []

    if train:
        def train_step(state, x, y, rng):
            params, stats, opt_state = state

            def loss_fn(p):
                o, upd = model.apply({"params": p, "batch_stats": stats}, x, train=True,
                                     mutable=["batch_stats"], rngs={"dropout": rng})
                logits = _logits(o).astype(jnp.float32)
                return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), upd

            (loss, upd), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            new_stats = upd.get("batch_stats", stats)
            return (optax.apply_updates(params, updates), new_stats, opt_state), loss

        state = [(params, stats, tx.init(params))]
        t0 = time.perf_counter()
        compiled = jax.jit(train_step, donate_argnums=0).lower(state[0], x, y, key).compile()
        v = Variant("flax train", "flax", "train", None, time.perf_counter() - t0,
                    _plain_flops(train_step, state[0], x, y, key) if flops else None, _xla_bytes(compiled),
                    _xla_mem(compiled), params=n_params)

        def run_train():
            state[0], loss = compiled(state[0], x, y, key)
            jax.block_until_ready((state[0], loss))

        v.step = run_train
        v.compiled = compiled
        out.append(v)

    if infer:
        # Copies: the train variant donates (and so deletes) the originals.
        ev = jax.tree.map(jnp.copy, {"params": params, "batch_stats": stats} if stats else {"params": params})
        t0 = time.perf_counter()
        infer_fn = lambda v, x: _logits(model.apply(v, x, train=False))  # noqa: E731
        compiled_i = jax.jit(infer_fn).lower(ev, x).compile()
        vi = Variant("flax infer", "flax", "infer", None, time.perf_counter() - t0,
                     _plain_flops(infer_fn, ev, x) if flops else None, _xla_bytes(compiled_i), _xla_mem(compiled_i))
        vi.step = lambda: jax.block_until_ready(compiled_i(ev, x))
        vi.compiled = compiled_i
        out.append(vi)
    return out, classes


def param_count(name: str, size: int = 224) -> int:
    """Parameters of the Flax model `name` (from shapes only: nothing is initialised)."""
    model = flaxnets.create_model(name)
    x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    shapes = jax.eval_shape(lambda k, x: model.init({"params": k, "dropout": k}, x, train=False),
                            jax.random.key(0), x)
    return sum(math.prod(a.shape) for a in jax.tree.leaves(shapes["params"]))


def torch_device() -> str:
    """"cuda" when jax runs on a GPU and torch sees one too, else "cpu"."""
    import torch

    return "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"


def torch_variants(name, batch, size, dtype, classes, channels_last=True, compile_=False,
                   train=True, infer=True, device="cpu") -> list[Variant]:
    import torch
    import torch.nn.functional as F
    import torchref

    torch.manual_seed(0)
    base = torchref.create_model(name).to(device)
    x0 = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, classes, (batch,), device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    bf16 = dtype == "bfloat16"
    layouts = [("", torch.contiguous_format)]
    if channels_last:
        layouts.append(("-cl", torch.channels_last))
    kinds = [("torch", False)] + ([("torch-compile", True)] if compile_ else [])
    out = []
    for kind, comp in kinds:
        for suffix, fmt in layouts:
            x = x0.contiguous(memory_format=fmt)
            if train:
                m = copy.deepcopy(base).train().to(memory_format=fmt)
                opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
                fwd = torch.compile(m) if comp else m

                def run_train(m=m, opt=opt, fwd=fwd, x=x):
                    opt.zero_grad(set_to_none=True)
                    with torch.autocast(device, torch.bfloat16, enabled=bf16):
                        loss = F.cross_entropy(_logits(fwd(x)).float(), y)
                    loss.backward()
                    opt.step()
                    sync()

                out.append(Variant(f"{kind}{suffix} train", kind + suffix, "train", run_train))
            if infer:
                m = copy.deepcopy(base).eval().to(memory_format=fmt)
                fwd = torch.compile(m) if comp else m

                def run_infer(fwd=fwd, x=x):
                    with torch.inference_mode(), torch.autocast(device, torch.bfloat16, enabled=bf16):
                        _logits(fwd(x))
                    sync()

                out.append(Variant(f"{kind}{suffix} infer", kind + suffix, "infer", run_infer))
    return out


def matmul_peak(dtype: str, n: int = 2048, repeats: int = 5, device: str = "cpu",
                budget_s: float = 20.0) -> dict[str, float]:
    """GFLOP/s of an n x n x n matmul (bf16: fp32 accumulation) in jax and torch: the median of
    `repeats` timed calls per framework, interleaved, after one warm-up call each. A framework
    whose warm-up call took longer than `budget_s / repeats` gets fewer timed calls (at least
    one): torch's bfloat16 matmul on a CPU without AVX512-BF16/AMX takes ~50 s at 2048³ (an
    emulated kernel), five timed calls would add four minutes to every bf16 run."""
    import torch

    jd = jnp.bfloat16 if dtype == "bfloat16" else jnp.float32
    td = torch.bfloat16 if dtype == "bfloat16" else torch.float32
    a = jax.random.normal(jax.random.key(1), (n, n), jd)
    mm = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
    ta = torch.randn(n, n, device=device).to(td)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    # torch's float32 convolutions on CUDA run in TF32 by default (cudnn.allow_tf32), as XLA's
    # do; measure its matmul peak in the same precision.
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = device == "cuda" and torch.backends.cudnn.allow_tf32
    fns = {"flax": lambda: mm(a, a).block_until_ready(), "torch": lambda: (torch.mm(ta, ta), sync())}
    times = {k: [] for k in fns}
    counts = {}
    for k, f in fns.items():
        t0 = time.perf_counter()
        f()
        warm = time.perf_counter() - t0
        counts[k] = max(1, min(repeats, int(budget_s / max(warm, 1e-9))))
        if counts[k] < repeats:
            log(f"matmul peak: {k} {dtype} {n}³ took {warm:.1f} s; timing {counts[k]} call(s), not {repeats}")
    for i in range(repeats):
        for k, f in fns.items():
            if i < counts[k]:
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
    torch.backends.cuda.matmul.allow_tf32 = tf32
    return {k: 2 * n**3 / statistics.median(v) / 1e9 for k, v in times.items()}


def _measure(v: Variant, device: str = "cpu") -> dict:
    """One timed step of `v` in this process."""
    if device == "cuda" and v.framework != "flax":
        import torch

        torch.cuda.reset_peak_memory_stats()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    with _PeakRss() as rss:
        t0 = time.perf_counter()
        v.step()
        dt = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    m = {"time": dt, "cpu": r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime,
         "rss": rss.growth, "faults": r1.ru_minflt - r0.ru_minflt}
    if device == "cuda" and v.framework != "flax":
        m["dev_mem"] = torch.cuda.max_memory_allocated()
    return m


def _time_variant(v: Variant, device: str = "cpu") -> None:
    m = v.remote() if v.remote else _measure(v, device)
    v.times.append(m["time"])
    v.cpu.append(m["cpu"])
    v.rss.append(m["rss"])
    v.faults.append(m["faults"])
    if "dev_mem" in m:
        v.dev_mem.append(m["dev_mem"])


def _build(framework: str, name: str, opts: dict, classes: int | None = None):
    """(variants, classes) of one framework for `name`."""
    if framework == "flax":
        return flax_variants(name, opts["batch"], opts["size"], opts["dtype"],
                             train=opts["train"], infer=opts["infer"], flops=opts.get("flops", True))
    return torch_variants(name, opts["batch"], opts["size"], opts["dtype"], classes,
                          channels_last=opts["channels_last"], compile_=opts["torch_compile"],
                          train=opts["train"], infer=opts["infer"], device=opts["device"]), classes


def _worker(conn, framework: str, name: str, opts: dict, classes: int | None) -> None:
    """Worker-process mode: build one framework's variants here and step them on request."""
    try:
        if opts.get("malloc_tuning"):
            flaxnets.runtime.tune_malloc()
        if framework != "flax":
            import torch

            torch.set_num_threads(opts["threads"])
            import torchref  # noqa: F401  (in the baseline, as jax and flaxnets are)
        base_rss = _rss_bytes()
        variants, classes = _build(framework, name, opts, classes)
        conn.send(("ready", classes, [
            {k: getattr(v, k) for k in ("name", "framework", "mode", "compile_s", "flops", "xla_bytes", "xla_mem",
                                        "params")}
            for v in variants]))
        while True:
            cmd, i = conn.recv()
            if cmd == "stop":
                break
            if cmd == "peak":  # this process's peak RSS so far (Linux: ru_maxrss in KiB), and before the build
                conn.send(("ok", {"peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                                  "base_rss": base_rss}))
                continue
            conn.send(("ok", variants[i].step() if cmd == "step" else _measure(variants[i])))
    except BaseException as e:  # reported by the parent, which records the model as failed
        conn.send(("error", f"{framework} worker: {type(e).__name__}: {str(e)[:500]}"))
        raise


def _worker_tunables(thp: bool) -> tuple[str, bool]:
    """(GLIBC_TUNABLES for a worker process, whether it has THP): the user's tunables without
    any glibc.malloc.hugetlb choice (--thp decides), plus ours if `thp` and THP can apply."""
    base = ":".join(t for t in os.environ.get("GLIBC_TUNABLES", "").split(":")
                    if t and not t.startswith("glibc.malloc.hugetlb"))
    env = flaxnets.runtime.thp_env({**os.environ, "GLIBC_TUNABLES": base}) if thp else None
    return (env["GLIBC_TUNABLES"], True) if env else (base, False)


class _Worker:
    """A spawned process holding one framework's variants (its own allocator, threads and
    environment, as a user's training process would have)."""

    def __init__(self, framework, name, opts, classes=None, thp=False):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        saved = os.environ.get("GLIBC_TUNABLES")
        os.environ["GLIBC_TUNABLES"] = _worker_tunables(thp)[0]
        try:  # the child reads GLIBC_TUNABLES when it starts
            self.proc = ctx.Process(target=_worker, args=(child, framework, name, opts, classes),
                                    daemon=True)
            self.proc.start()
        finally:
            if saved is None:
                os.environ.pop("GLIBC_TUNABLES")
            else:
                os.environ["GLIBC_TUNABLES"] = saved
        child.close()
        _, self.classes, infos = self._recv()
        self.variants = []
        for i, info in enumerate(infos):
            v = Variant(**info, step=functools.partial(self._call, "step", i))
            v.remote = functools.partial(self._call, "time", i)
            self.variants.append(v)

    def _recv(self):
        try:
            msg = self.conn.recv()
        except EOFError:
            self.proc.join(5)
            raise RuntimeError(f"benchmark worker died (exit code {self.proc.exitcode})") from None
        if msg[0] == "error":
            raise RuntimeError(msg[1])
        return msg

    def _call(self, cmd, i):
        self.conn.send((cmd, i))
        return self._recv()[1]

    def close(self):
        try:
            self.conn.send(("stop", 0))
        except OSError:
            pass
        self.proc.join(30)
        if self.proc.is_alive():
            self.proc.kill()


def fresh_process_memory(name: str, args) -> dict:
    """The float32 train step of each framework alone in a fresh worker process (compile, then
    max(1, ``--warmup``) steps; torch eager NCHW): the process's peak RSS (``ru_maxrss``, so the
    Flax figure includes the compiler's own peak) and its RSS before the model was built (the
    imports), with the Flax compile time and XLA's buffer assignment measured with nothing else
    running. Unlike the RSS growth during a timed step (the per-variant tables), this counts
    what an allocator keeps between steps, so it is each framework's real peak."""
    size = model_size(name, args.size)
    opts = {"batch": args.batch, "size": size, "dtype": "float32", "train": True, "infer": False,
            "channels_last": False, "torch_compile": False, "device": "cpu", "threads": cpu_count(),
            "malloc_tuning": args.malloc_tuning, "flops": False}
    out, classes = {"model": name, "rows": [], "size": size}, None
    for fw in ("flax",) + (() if args.no_torch else ("torch",)):
        log(f"{name}: {fw} train step alone in a fresh process")
        w = _Worker(fw, name, opts, classes, thp=args.thp in (("flax", "both") if fw == "flax" else ("both",)))
        try:
            classes, v = w.classes, w.variants[0]
            for _ in range(max(1, args.warmup)):
                w._call("step", 0)
            mem = w._call("peak", 0)
        finally:
            w.close()
        out[fw] = {"peak_rss_mb": mem["peak_rss"] / 2**20, "base_rss_mb": mem["base_rss"] / 2**20,
                   "step_peak_mb": (mem["peak_rss"] - mem["base_rss"]) / 2**20}
        if fw == "flax":
            out[fw].update(compile_s=v.compile_s, params=v.params,
                           xla_total_mb=v.xla_bytes / 2**20 if v.xla_bytes is not None else None,
                           xla_mb={k: b / 2**20 for k, b in v.xla_mem.items()} if v.xla_mem else None)
        log(f"{name}: {fw} peak RSS {out[fw]['peak_rss_mb']:.0f} MB ({out[fw]['base_rss_mb']:.0f} MB before "
            "the build)" + (f", compiled in {v.compile_s:.1f} s" if fw == "flax" else ""))
    return out


def bench_model(name: str, args) -> dict:
    workers = []
    try:
        return _bench_model(name, args, workers)
    finally:
        for w in workers:
            w.close()


def _bench_model(name: str, args, workers: list) -> dict:
    size = model_size(name, args.size)
    log(f"{name}: building and compiling" + (" in worker processes" if args.isolate else "")
        + (f" at {size}x{size} (MIN_SIZE)" if size != args.size else ""))
    opts = {"batch": args.batch, "size": size, "dtype": args.dtype, "train": not args.infer_only,
            "infer": not args.train_only, "channels_last": not args.no_channels_last,
            "torch_compile": args.torch_compile, "device": args.device, "threads": cpu_count(),
            "malloc_tuning": args.malloc_tuning}
    if args.isolate:
        workers.append(_Worker("flax", name, opts, thp=args.thp in ("flax", "both")))
        variants, classes = list(workers[0].variants), workers[0].classes
    else:
        variants, classes = _build("flax", name, opts)
    for v in variants:
        log(f"{name}: {v.name} compiled in {v.compile_s:.1f} s")
    if not args.no_torch:
        if args.isolate:
            workers.append(_Worker("torch", name, opts, classes, thp=args.thp == "both"))
            variants += workers[-1].variants
        else:
            variants += _build("torch", name, opts, classes)[0]
    flops = {v.mode: v.flops for v in variants if v.framework == "flax"}
    for r in range(args.warmup):
        for v in variants:
            t0 = time.perf_counter()
            v.step()
            log(f"{name}: warm-up {r + 1}/{args.warmup} {v.name}: {time.perf_counter() - t0:.2f} s")
    for r in range(args.repeats):
        for v in variants:
            for _ in range(args.settle):
                v.step()
            _time_variant(v, args.device)
        log(f"{name}: round {r + 1}/{args.repeats}: "
            + ", ".join(f"{v.name} {v.times[-1]:.2f} s" for v in variants))
    rows = []
    log(f"{name}: load average {os.getloadavg()[0]:.1f}")
    base = {v.mode: statistics.median(v.times) for v in variants if v.framework == "torch"}
    base_cl = {v.mode: statistics.median(v.times) for v in variants if v.framework == "torch-cl"}
    for v in variants:
        med = statistics.median(v.times)
        f = flops.get(v.mode)
        rows.append({
            "model": name, "variant": v.name, "framework": v.framework, "mode": v.mode,
            "img_s": args.batch / med, "img_s_min": args.batch / max(v.times),
            "img_s_max": args.batch / min(v.times),
            "vs_torch": (base[v.mode] / med) if v.mode in base else None,
            "vs_torch_cl": (base_cl[v.mode] / med) if v.mode in base_cl else None,
            "step_s": v.times, "cpu_s_per_step": statistics.median(v.cpu),
            "compile_s": v.compile_s,
            "rss_peak_growth_mb": max(v.rss) / 2**20,
            "xla_buffers_mb": v.xla_bytes / 2**20 if v.xla_bytes is not None else None,
            "xla_mem_mb": {k: b / 2**20 for k, b in v.xla_mem.items()} if v.xla_mem else None,
            "minor_faults_per_step": statistics.median(v.faults),
            "device_mem_mb": (max(v.dev_mem) / 2**20 if v.dev_mem
                              else v.xla_bytes / 2**20 if args.device == "cuda" and v.xla_bytes else None),
            "flops_per_step": f, "gflop_s": f / med / 1e9 if f else None,
        })
    return {"model": name, "rows": rows, "size": size, "loadavg_end": os.getloadavg()}


# (label, n, h, cin, cout, k, stride, groups): shapes from regnet_x_400mf, resnext50_32x4d,
# mobilenet_v2 / efficientnet_b0 and resnet50
CONV_SHAPES = [
    ("grouped 3x3 g16 64@56", 32, 56, 64, 64, 3, 1, 4),
    ("grouped 3x3 g16 160@28 s2", 32, 28, 160, 160, 3, 2, 10),
    ("grouped 3x3 g16 160@14", 32, 14, 160, 160, 3, 1, 10),
    ("grouped 3x3 g16 400@7", 32, 7, 400, 400, 3, 1, 25),
    ("grouped 3x3 g4 128@56", 32, 56, 128, 128, 3, 1, 32),
    ("depthwise 3x3 144@56", 32, 56, 144, 144, 3, 1, 144),
    ("depthwise 3x3 96@112 s2", 32, 112, 96, 96, 3, 2, 96),
    ("depthwise 3x3 576@14", 32, 14, 576, 576, 3, 1, 576),
    ("depthwise 5x5 240@28 s2", 32, 28, 240, 240, 5, 2, 240),
    ("dense 3x3 64@56", 32, 56, 64, 64, 3, 1, 1),
    ("dense 1x1 256->64@56", 32, 56, 256, 64, 1, 1, 1),
]


def conv_bench(repeats: int) -> list[dict]:
    from flaxnets import conv_ops

    rows = []
    for label, n, h, cin, cout, k, s, g in CONV_SHAPES:
        key = jax.random.key(0)
        x = jax.random.normal(key, (n, h, h, cin))
        w = jax.random.normal(key, (k, k, cin // g, cout)) * 0.1
        ho = (h + 2 * (k // 2) - k) // s + 1
        gy = jax.random.normal(key, (n, ho, ho, cout))
        flops = 2 * n * ho * ho * k * k * (cin // g) * cout
        fns, compile_s = {}, {}
        for impl in ("plain", "fast"):
            conv = functools.partial(conv_ops.conv2d, stride=s, padding=k // 2, groups=g, impl=impl)
            fb = lambda x, w, gy, conv=conv: jax.vjp(conv, x, w)[1](gy)  # noqa: E731
            for mode, f, args in (("fwd", conv, (x, w)), ("fwd+bwd", fb, (x, w, gy))):
                t0 = time.perf_counter()
                c = jax.jit(f).lower(*args).compile()
                compile_s[impl, mode] = time.perf_counter() - t0
                fns[impl, mode] = functools.partial(lambda c, args: jax.block_until_ready(c(*args)), c, args)
        times = {key: [] for key in fns}
        for r in range(repeats + 1):  # the first round warms up
            for key, f in fns.items():
                t0 = time.perf_counter()
                f()
                if r:
                    times[key].append(time.perf_counter() - t0)
        for (impl, mode), ts in times.items():
            fl = flops * (3 if mode == "fwd+bwd" else 1)
            rows.append({"shape": label, "impl": impl, "mode": mode, "gflop_s": fl / statistics.median(ts) / 1e9,
                         "gflop_s_min": fl / max(ts) / 1e9, "gflop_s_max": fl / min(ts) / 1e9,
                         "compile_s": compile_s[impl, mode]})
        log(f"convs: {label}: " + ", ".join(f"{r['impl']} {r['mode']} {r['gflop_s']:.1f}" for r in rows[-4:]))
    return rows


def conv_markdown(results: dict) -> str:
    meta = results["meta"]
    lines = [f"`{results['command']}`", "",
             f"{meta['cpu']}, {meta['cores']} cores, jax {meta['jax']}; load average (1 min) "
             f"{meta['loadavg_start'][0]:.1f} at start, {meta['loadavg_end'][0]:.1f} at end; "
             f"XLA_FLAGS=`{meta['XLA_FLAGS'] or '(none)'}`. GFLOP/s: median [min, max] of "
             f"{results['repeats']} rounds.", "",
             "| shape (batch 32) | plain fwd | fast fwd | plain fwd+bwd | fast fwd+bwd | fast compile s (fwd+bwd) |",
             "|---|---|---|---|---|---|"]
    by = {(r["shape"], r["impl"], r["mode"]): r for r in results["convs"]}
    for label, *_ in CONV_SHAPES:
        cells = [f"{by[label, i, m]['gflop_s']:.1f} [{by[label, i, m]['gflop_s_min']:.1f}, "
                 f"{by[label, i, m]['gflop_s_max']:.1f}]" for m in ("fwd", "fwd+bwd") for i in ("plain", "fast")]
        lines.append(f"| {label} | {' | '.join(cells)} | {by[label, 'fast', 'fwd+bwd']['compile_s']:.1f} |")
    return "\n".join(lines) + "\n"


def machine_info(device: str = "cpu") -> dict:
    import flax
    import torch

    return {
        "cpu": cpu_model(), "cores": cpu_count(), "cpu_flags": cpu_flags(), "python": platform.python_version(),
        "jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__,
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
        "flaxnets_runtime_settings": list(flaxnets.runtime.applied()),
        "conv_impl": "auto",
        "loadavg_start": os.getloadavg(),
        "device": device,
        "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
        "jax_devices": [str(d) for d in jax.devices()],
    }


def _fmt(v, spec, none="–"):
    return none if v is None else format(v, spec)


def markdown(results: dict) -> str:
    meta, peak = results["meta"], results["matmul_peak_gflop_s"]
    gpu = meta.get("device") == "cuda"
    where = (f"{meta['gpu']} (host: {meta['cpu']}, {meta['cores']} cores)" if gpu
             else f"{meta['cpu']}, {meta['cores']} cores"
             + (f" ({bf16_units(meta['cpu_flags'])})" if meta.get("cpu_flags") else ""))
    lines = [
        f"`{results['command']}`",
        "",
        f"{where}; jax {meta['jax']}, flax {meta['flax']}, "
        f"optax {meta['optax']}, torch {meta['torch']} ({meta['torch_threads']} threads); "
        f"batch {results['batch']}, {results['size']}², {results['dtype']}, "
        f"{results['repeats']} timed rounds after {results['warmup']} warm-up, "
        f"{results.get('settle', 0)} untimed settle step(s) before each timed step. "
        f"Load average (1 min) {meta['loadavg_start'][0]:.1f} at start, "
        f"{meta['loadavg_end'][0]:.1f} at end. XLA_FLAGS=`{meta['XLA_FLAGS'] or '(none)'}`; "
        f"malloc tuning {'on' if any('mallopt' in a for a in meta['flaxnets_runtime_settings']) else 'off'}. "
        + (("Each framework in its own worker process; " if meta.get("isolate") else "All variants in one process; ")
           + "transparent huge pages (glibc.malloc.hugetlb=1): "
           + ", ".join(f"{k} {'on' if v else 'off'}" for k, v in meta.get("thp", {}).items()) + ". ")
        + f"Matmul peak ({results['dtype']}, {results.get('matmul_n', 2048)}³): jax {peak['flax']:.0f}, "
        f"torch {peak['torch']:.0f} GFLOP/s.",
        "",
    ]
    if gpu:
        lines += ["| model | variant | img/s median [min, max] | vs torch | vs torch-cl | compile s "
                  "| device MB | GFLOP/s | % peak |",
                  "|---|---|---|---|---|---|---|---|---|"]
    else:
        lines += ["| model | variant | img/s median [min, max] | vs torch | CPU s/step | compile s "
                  "| RSS peak +MB | XLA buffers MB | faults/step | GFLOP/s | % peak |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
    for res in results["models"]:
        if res.get("error"):
            lines.append(f"| {res['model']} | failed: {res['error'][:120]} |")
        for r in res["rows"]:
            fw = "torch" if r["framework"].startswith("torch") else "flax"
            pct = r["gflop_s"] / peak[fw] * 100 if r["gflop_s"] else None
            head = (f"| {r['model']} | {r['variant']} | {r['img_s']:.2f} [{r['img_s_min']:.2f}, "
                    f"{r['img_s_max']:.2f}] | {_fmt(r['vs_torch'], '.2f')}× | ")
            tail = f"{_fmt(r['gflop_s'], '.1f')} | {_fmt(pct, '.0f')} |"
            if gpu:
                lines.append(head + f"{_fmt(r.get('vs_torch_cl'), '.2f')}× | {_fmt(r['compile_s'], '.1f')} | "
                             f"{_fmt(r.get('device_mem_mb'), '.0f')} | " + tail)
            else:
                lines.append(head + f"{r['cpu_s_per_step']:.2f} | {_fmt(r['compile_s'], '.1f')} | "
                             f"{r['rss_peak_growth_mb']:.0f} | {_fmt(r['xla_buffers_mb'], '.0f')} | "
                             f"{r['minor_faults_per_step']:.0f} | " + tail)
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- the suite (--what)

# One model per family (netspecs.FAMILIES; lenet, a 32x32 digits model, has no 224² row).
REPRESENTATIVES = {
    "regnet": "regnet_x_400mf", "resnet": "resnet50", "vgg": "vgg11_bn", "alexnet": "alexnet",
    "squeezenet": "squeezenet1_1", "googlenet": "googlenet", "inception": "inception_v3",
    "densenet": "densenet121", "mobilenetv1": "mobilenet_v1", "mobilenetv2": "mobilenet_v2",
    "mobilenetv3": "mobilenet_v3_large", "mnasnet": "mnasnet1_0", "shufflenetv2": "shufflenet_v2_x1_0",
    "efficientnet": "efficientnet_b0", "convnext": "convnext_tiny", "maxvit": "maxvit_t",
    "darknet": "darknet53", "vit": "vit_b_16", "vovnet": "ese_vovnet19b_dw",
    "timm_mobilenetv1": "mobilenetv1_100", "swin": "swin_t", "semnasnet": "semnasnet_100",
}
# The mobile families (MnasNet objective; channels_last goals), by model-name prefix.
MOBILE_PREFIXES = ("mobilenet", "mnasnet", "shufflenet", "efficientnet", "semnasnet")
WHAT = ("train", "latency", "infer", "bf16", "compile")
MNAS_T_MS, MNAS_W = 80.0, -0.07
# Models benchmarked at more than --size: inception_v3's auxiliary head (train mode) needs a
# 299x299 input (torchvision's own transforms give it 299); below that torch and Flax both raise.
MIN_SIZE = {"inception_v3": 299}


def model_size(name: str, size: int) -> int:
    """The input size `name` is benchmarked at: --size, or MIN_SIZE's where that is larger."""
    return max(size, MIN_SIZE.get(name, 0))


def is_mobile(name: str) -> bool:
    return name.startswith(MOBILE_PREFIXES)


def top1(name: str) -> tuple[float | None, str | None]:
    """(published ImageNet top-1 %, weights tag) of the default torchvision weights, else (None, tag/None)."""
    try:
        info = flaxnets.weights_info(name)
    except (KeyError, ValueError):
        return None, None
    return info.get("acc1"), info.get("weights")


def mnas_objective(acc: float | None, lat_ms: float | None) -> float | None:
    """MnasNet's (Tan et al. 2019, eq. 2) ACC * (LAT / T)^w, w = -0.07, T = 80 ms (ACC in %)."""
    if acc is None or not lat_ms:
        return None
    return acc * (lat_ms / MNAS_T_MS) ** MNAS_W


def suite_plan(args) -> list[tuple[str, dict]]:
    """(run kind, argument overrides) for `--what`: one bench_model call per kind and model."""
    what, plan = args.what, []
    train, infer = "train" in what, "infer" in what
    if train or infer:
        plan.append(("fp32", {"batch": args.batch, "dtype": "float32", "train_only": not infer,
                              "infer_only": not train}))
    if "latency" in what:
        plan.append(("latency", {"batch": 1, "dtype": "float32", "train_only": False, "infer_only": True,
                                 "repeats": args.latency_repeats}))
    if "bf16" in what:
        plan.append(("bf16", {"batch": args.batch, "dtype": "bfloat16", "train_only": False, "infer_only": False}))
    if "compile" in what:  # fresh_process_memory: float32 at --batch, one worker per framework
        plan.append(("memory", {"batch": args.batch, "dtype": "float32", "train_only": True, "infer_only": False}))
    return plan


def _matmul_n(args) -> int:
    """--matmul-n, or 8192 on CUDA and 2048 on CPU."""
    return args.matmul_n or (8192 if args.device == "cuda" else 2048)


def run_suite(names: list[str], args, meta: dict, command: str) -> dict:
    plan = suite_plan(args)
    matmul_n = _matmul_n(args)
    peaks = {dt: matmul_peak(dt, matmul_n, device=args.device)
             for dt in sorted({o["dtype"] for _, o in plan})}
    log("matmul peak GFLOP/s: " + "; ".join(f"{dt}: " + ", ".join(f"{k} {v:.0f}" for k, v in p.items())
                                            for dt, p in peaks.items()))
    runs = {}
    for kind, over in plan:
        sub = copy.copy(args)
        vars(sub).update(over)
        runs[kind] = {"command": command, "batch": sub.batch, "size": sub.size, "dtype": sub.dtype,
                      "repeats": sub.repeats, "warmup": sub.warmup, "settle": sub.settle, "meta": meta,
                      "matmul_peak_gflop_s": peaks[sub.dtype], "matmul_n": matmul_n, "models": [], "args": sub}
    results = {"command": command, "what": sorted(args.what), "meta": meta, "runs": runs, "size": args.size,
               "batch": args.batch}
    for name in names:
        for kind, run in runs.items():
            try:
                run["models"].append((fresh_process_memory if kind == "memory" else bench_model)(name, run["args"]))
            except Exception as e:  # one model failing (e.g. out of memory) must not lose the others
                log(f"{name} ({kind}): FAILED: {type(e).__name__}: {str(e)[:500]}")
                run["models"].append({"model": name, "rows": [], "error": f"{type(e).__name__}: {str(e)[:500]}"})
            jax.clear_caches()
        results["summary"] = suite_summary(results, names)
        if args.json:
            _dump_json(args.json, results)
    meta["loadavg_end"] = os.getloadavg()
    results["summary"] = suite_summary(results, names)
    return results


def _dump_json(path: str, results: dict) -> None:
    def clean(o):
        if isinstance(o, argparse.Namespace):
            return None
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items() if k != "args"}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        return o

    with open(path, "w") as f:
        json.dump(clean(results), f, indent=1)


def _rows_by(results: dict, kind: str, name: str) -> dict | None:
    run = results["runs"].get(kind)
    if run is None:
        return None
    res = next((m for m in run["models"] if m["model"] == name), None)
    if res is None:
        return None
    return {r["variant"]: r for r in res["rows"]} or {"error": res.get("error", "no rows")}


def _ms(r: dict | None) -> float | None:
    return 1e3 * statistics.median(r["step_s"]) if r else None


def _ratio(a, b):
    return a / b if a and b else None


def suite_summary(results: dict, names: list[str]) -> dict:
    """Per model: the figures of each summary table (None where not measured)."""
    out = {}
    for name in names:
        s = {"mobile": is_mobile(name)}
        fp32, lat, bf = (_rows_by(results, k, name) for k in ("fp32", "latency", "bf16"))
        for mode in ("train", "infer"):
            if fp32 and "error" not in fp32 and f"flax {mode}" in fp32:
                f, t, tc = (fp32.get(f"{v} {mode}") for v in ("flax", "torch", "torch-cl"))
                s[mode] = {"flax_img_s": f["img_s"], "torch_img_s": t and t["img_s"],
                           "torch_cl_img_s": tc and tc["img_s"],
                           "vs_torch": _ratio(f["img_s"], t and t["img_s"]),
                           "vs_torch_cl": _ratio(f["img_s"], tc and tc["img_s"])}
            elif fp32 and "error" in fp32:
                s[mode] = {"error": fp32["error"]}
        if lat and "error" not in lat:
            ms = {v: _ms(lat.get(f"{v} infer")) for v in ("flax", "torch", "torch-cl")}
            s["latency"] = {"flax_ms": ms["flax"], "torch_ms": ms["torch"], "torch_cl_ms": ms["torch-cl"],
                            "vs_torch": _ratio(ms["torch"], ms["flax"]), "vs_torch_cl": _ratio(ms["torch-cl"], ms["flax"])}
            if s["mobile"]:
                acc, tag = top1(name)
                s["mnas"] = {"acc1": acc, "weights": tag,
                             **{f"{k}_objective": mnas_objective(acc, v) for k, v in
                                (("flax", ms["flax"]), ("torch", ms["torch"]), ("torch_cl", ms["torch-cl"]))}}
        elif lat:
            s["latency"] = {"error": lat["error"]}
        if bf and "error" not in bf:
            for mode in ("train", "infer"):
                f, t, tc = (bf.get(f"{v} {mode}") for v in ("flax", "torch", "torch-cl"))
                if f:
                    s[f"bf16_{mode}"] = {"flax_img_s": f["img_s"], "torch_img_s": t and t["img_s"],
                                         "vs_torch": _ratio(f["img_s"], t and t["img_s"]),
                                         "vs_torch_cl": _ratio(f["img_s"], tc and tc["img_s"])}
        elif bf:
            s["bf16_train"] = {"error": bf["error"]}
        mem = next((m for m in results["runs"].get("memory", {}).get("models", []) if m["model"] == name), None)
        if mem and "error" in mem:
            s["compile"] = {"error": mem["error"]}
        elif mem:
            f, t = mem["flax"], mem.get("torch") or {}
            s["compile"] = {"params_m": f["params"] / 1e6, "train_compile_s": f["compile_s"], "xla_mb": f["xla_mb"],
                            "xla_total_mb": f["xla_total_mb"], "flax_peak_rss_mb": f["peak_rss_mb"],
                            "flax_step_peak_mb": f["step_peak_mb"], "torch_peak_rss_mb": t.get("peak_rss_mb"),
                            "torch_step_peak_mb": t.get("step_peak_mb"),
                            "xla_vs_torch": _ratio(f["xla_total_mb"], t.get("step_peak_mb"))}
        out[name] = s
    return out


def _x(v):
    return _fmt(v, ".2f") + ("×" if v is not None else "")


def suite_markdown(results: dict) -> str:
    meta, summ, what = results["meta"], results["summary"], set(results["what"])
    peaks = "; ".join(f"{dt} jax {r['matmul_peak_gflop_s']['flax']:.0f}, torch {r['matmul_peak_gflop_s']['torch']:.0f}"
                      for dt, r in {r["dtype"]: r for r in results["runs"].values()}.items())
    lines = [
        f"`{results['command']}`", "",
        f"{meta['cpu']}, {meta['cores']} cores ({bf16_units(meta.get('cpu_flags', {}))}); jax {meta['jax']}, "
        f"flax {meta['flax']}, torch {meta['torch']} ({meta['torch_threads']} threads); {results['size']}²; "
        f"load average (1 min) {meta['loadavg_start'][0]:.1f} at start, {meta['loadavg_end'][0]:.1f} at end; "
        f"XLA_FLAGS=`{meta['XLA_FLAGS'] or '(none)'}`; "
        + ("each framework in its own worker process. " if meta.get("isolate") else "one process. ")
        + f"Matmul peak GFLOP/s ({next(iter(results['runs'].values())).get('matmul_n', 2048)}³): {peaks}. Ratios: Flax / torch (speed; higher is better for Flax); "
        f"`torch` = eager NCHW, `torch-cl` = eager channels_last; bf16 torch = `torch.autocast(\"cpu\", "
        f"torch.bfloat16)`. Per-variant details (min/max, CPU s, GFLOP/s) in the tables after these.", ""]

    def lab(name):  # a model benchmarked at its MIN_SIZE says so
        size = model_size(name, results["size"])
        return name if size == results["size"] else f"{name} ({size}²)"

    def ok(name, key):
        return key in summ[name] and "error" not in summ[name][key]

    def failed(name, key):
        return f"| {lab(name)} | failed: {summ[name][key]['error'][:100]} |" if key in summ[name] else None

    for mode, title in (("train", f"Train step, batch {results['batch']}, float32"),
                        ("infer", f"Inference, batch {results['batch']}, float32")):
        if mode not in what:
            continue
        lines += [f"**{title}** (img/s)", "",
                  "| model | flax | torch | torch-cl | vs torch | vs torch-cl |", "|---|---:|---:|---:|---:|---:|"]
        for name in summ:
            if ok(name, mode):
                r = summ[name][mode]
                lines.append(f"| {lab(name)} | {r['flax_img_s']:.2f} | {_fmt(r['torch_img_s'], '.2f')} | "
                             f"{_fmt(r['torch_cl_img_s'], '.2f')} | {_x(r['vs_torch'])} | {_x(r['vs_torch_cl'])} |")
            elif failed(name, mode):
                lines.append(failed(name, mode))
        lines.append("")
    if "latency" in what:
        lines += ["**Latency, batch 1, float32** (median ms; vs = torch ms / flax ms)", "",
                  "| model | flax ms | torch ms | torch-cl ms | vs torch | vs torch-cl |", "|---|---:|---:|---:|---:|---:|"]
        for name in summ:
            if ok(name, "latency"):
                r = summ[name]["latency"]
                lines.append(f"| {lab(name)} | {_fmt(r['flax_ms'], '.1f')} | {_fmt(r['torch_ms'], '.1f')} | "
                             f"{_fmt(r['torch_cl_ms'], '.1f')} | {_x(r['vs_torch'])} | {_x(r['vs_torch_cl'])} |")
            elif failed(name, "latency"):
                lines.append(failed(name, "latency"))
        mobile = [n for n in summ if "mnas" in summ[n]]
        if mobile:
            lines += ["", f"**MnasNet objective** ACC·(LAT/T)^w, w = {MNAS_W}, T = {MNAS_T_MS:.0f} ms, LAT = the "
                          "batch-1 latency above, ACC = published ImageNet top-1 (%) of the default weights "
                          "(flaxnets.weights_info; – where none is shipped)", "",
                      "| model | weights | top-1 % | flax | torch | torch-cl |", "|---|---|---:|---:|---:|---:|"]
            for name in mobile:
                r = summ[name]["mnas"]
                lines.append(f"| {lab(name)} | {r['weights'] or '–'} | {_fmt(r['acc1'], '.3f')} | "
                             f"{_fmt(r['flax_objective'], '.2f')} | {_fmt(r['torch_objective'], '.2f')} | "
                             f"{_fmt(r['torch_cl_objective'], '.2f')} |")
        lines.append("")
    if "bf16" in what:
        lines += [f"**bfloat16, batch {results['batch']}**: Flax `dtype=jnp.bfloat16` (float32 parameters and "
                  "statistics) vs torch autocast (img/s)", "",
                  "| model | flax train | vs torch | vs torch-cl | flax infer | vs torch | vs torch-cl |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for name in summ:
            t, i = summ[name].get("bf16_train"), summ[name].get("bf16_infer")
            if t and "error" in t:
                lines.append(f"| {lab(name)} | failed: {t['error'][:100]} |")
            elif t or i:
                t, i = t or {}, i or {}
                lines.append(f"| {lab(name)} | {_fmt(t.get('flax_img_s'), '.2f')} | {_x(t.get('vs_torch'))} | "
                             f"{_x(t.get('vs_torch_cl'))} | {_fmt(i.get('flax_img_s'), '.2f')} | "
                             f"{_x(i.get('vs_torch'))} | {_x(i.get('vs_torch_cl'))} |")
        lines.append("")
    if "compile" in what:
        lines += [f"**Compile time and memory**, float32 train step, batch {results['batch']}, each framework "
                  "alone in a fresh process (`fresh_process_memory`): jit lower + compile; XLA's buffer "
                  "assignment of the compiled step (`memory_analysis()`: temporaries, arguments, outputs; total "
                  "= their sum less donated bytes); peak RSS of the process (`ru_maxrss`; Flax's includes the "
                  "compiler's own peak) and, \"+step\", that peak less the process's RSS before building the "
                  "model (the imports); torch eager NCHW", "",
                  "| model | params M | train compile s | XLA temp MB | XLA args MB | XLA out MB | XLA total MB "
                  "| flax peak MB (+step) | torch peak MB (+step) | XLA total / torch +step |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name in summ:
            if ok(name, "compile"):
                r, m = summ[name]["compile"], summ[name]["compile"]["xla_mb"] or {}
                lines.append(f"| {lab(name)} | {r['params_m']:.1f} | {_fmt(r['train_compile_s'], '.1f')} | "
                             f"{_fmt(m.get('temp'), '.0f')} | {_fmt(m.get('argument'), '.0f')} | "
                             f"{_fmt(m.get('output'), '.0f')} | {_fmt(r['xla_total_mb'], '.0f')} | "
                             f"{r['flax_peak_rss_mb']:.0f} (+{r['flax_step_peak_mb']:.0f}) | "
                             + (f"{r['torch_peak_rss_mb']:.0f} (+{r['torch_step_peak_mb']:.0f})"
                                if r["torch_peak_rss_mb"] is not None else "–")
                             + f" | {_fmt(r['xla_vs_torch'], '.2f')} |")
            elif failed(name, "compile"):
                lines.append(failed(name, "compile"))
        lines.append("")
    for kind, run in results["runs"].items():
        if kind == "memory":
            continue
        lines += [f"Details: {kind} (batch {run['batch']}, {run['dtype']})", "", markdown(run).split("\n", 2)[2]]
    return "\n".join(lines).rstrip("\n") + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n")[0])
    p.add_argument("--models", default=None, help="comma-separated names (default regnet_x_400mf)")
    p.add_argument("--families", nargs="?", const="all", default=None, metavar="FAMILY,...",
                   help="one representative model per family (REPRESENTATIVES; all families without a "
                        "value); implies --what all unless --what is given")
    p.add_argument("--all-models", action="store_true",
                   help="every registered model but lenet5; implies --what all unless --what is given")
    p.add_argument("--what", default=None, metavar="ITEM,...",
                   help=f"the suite's summary tables, any of {','.join(WHAT)} (or all): train/infer = "
                        "float32 batch --batch vs torch eager and channels_last, latency = batch 1 "
                        "(median ms; MnasNet objective for the mobile families), bf16 = --dtype bfloat16 "
                        "train and infer vs torch autocast, compile = each framework's float32 train "
                        "step alone in a fresh process: jit compile s, XLA's buffers, both peak RSS")
    p.add_argument("--max-params", type=float, default=None, metavar="M",
                   help="only the chosen models with at most M million parameters (e.g. --all-models "
                        "--what compile --max-params 30)")
    p.add_argument("--latency-repeats", type=int, default=20, help="timed rounds of the batch-1 latency run")
    p.add_argument("--convs", action="store_true", help="conv_ops micro-benchmark instead of models")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--settle", type=int, default=1,
                   help="untimed steps of a variant right before each of its timed steps")
    p.add_argument("--thp", choices=("flax", "both", "none"), default="flax",
                   help="which framework runs with transparent huge pages for glibc's allocations "
                        "(GLIBC_TUNABLES=glibc.malloc.hugetlb=1, as python -m train.main does; it "
                        "replaces a glibc.malloc.hugetlb value of yours in the workers); with "
                        "--same-process, anything but none applies to both")
    p.add_argument("--same-process", action="store_true",
                   help="all variants in this process (always so on a GPU) instead of one worker "
                        "process per framework")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--matmul-n", type=int, default=None, metavar="N",
                   help="size of the N x N x N matmul whose GFLOP/s the tables' %% peak uses (default 2048 on "
                        "CPU, 8192 on CUDA)")
    p.add_argument("--torch-compile", action="store_true")
    p.add_argument("--no-torch", action="store_true", help="Flax variants only")
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--train-only", action="store_true")
    p.add_argument("--infer-only", action="store_true")
    p.add_argument("--malloc-tuning", action="store_true",
                   help="flaxnets.runtime.tune_malloc() first (keeps freed memory in the heap)")
    p.add_argument("--out", help="markdown file: replaces/appends the <!-- bench:TAG --> block")
    p.add_argument("--tag", default="results")
    p.add_argument("--json")
    return p


def main(argv=None) -> dict:
    p = parser()
    args = p.parse_args(argv)
    for opt, low in (("repeats", 1), ("warmup", 0), ("settle", 0), ("batch", 1), ("size", 1)):
        if getattr(args, opt) < low:
            p.error(f"--{opt} must be >= {low}, got {getattr(args, opt)}")

    if args.what is None and (args.families or args.all_models):
        args.what = "all"
    if args.what is not None:
        args.what_given = args.what != "all" and "compile" in args.what.split(",")
        args.what = set(WHAT) if args.what == "all" else {w for w in args.what.split(",") if w}
        bad = sorted(args.what - set(WHAT))
        if bad or not args.what:
            p.error(f"--what: unknown item(s) {', '.join(map(repr, bad))}; choose from {','.join(WHAT)} or all")
        clash = [o for o, on in (("--convs", args.convs), ("--dtype bfloat16", args.dtype != "float32"),
                                 ("--train-only", args.train_only), ("--infer-only", args.infer_only)) if on]
        if clash:
            p.error(f"--what/--families/--all-models choose the runs themselves; drop {', '.join(clash)}")
        if args.latency_repeats < 1:
            p.error(f"--latency-repeats must be >= 1, got {args.latency_repeats}")
    if sum(map(bool, (args.models, args.families, args.all_models))) > 1:
        p.error("give one of --models, --families, --all-models")
    if args.families:
        fams = list(REPRESENTATIVES) if args.families == "all" else [f for f in args.families.split(",") if f]
        unknown = [f for f in fams if f not in REPRESENTATIVES]
        if unknown:
            p.error(f"--families: unknown famil(ies) {', '.join(map(repr, unknown))}; choose from "
                    f"{', '.join(REPRESENTATIVES)}")
        names = [REPRESENTATIVES[f] for f in fams]
    elif args.all_models:
        names = [m for m in flaxnets.list_models() if m != "lenet5"]
    else:
        names = [m for m in (args.models or "regnet_x_400mf").split(",") if m]
    unknown = [m for m in names if m not in flaxnets.list_models()]
    if unknown and not args.convs:
        p.error(f"--models: unknown model name(s) {', '.join(map(repr, unknown))} "
                f"(python -c 'import flaxnets; print(flaxnets.list_models())')")
    if args.max_params is not None:
        if args.max_params <= 0:
            p.error(f"--max-params must be > 0, got {args.max_params}")
        sizes = {m: param_count(m, args.size) for m in names}
        skipped = [m for m in names if sizes[m] > args.max_params * 1e6]
        names = [m for m in names if m not in skipped]
        if skipped:
            log(f"--max-params {args.max_params:g}: skipping " + ", ".join(f"{m} ({sizes[m] / 1e6:.1f}M)" for m in skipped))
        if not names:
            p.error(f"--max-params {args.max_params:g}: no chosen model is that small")
    if args.malloc_tuning and not flaxnets.runtime.tune_malloc():
        log("--malloc-tuning: not applied (not glibc, or jax's backend already started)")
    import torch

    torch.set_num_threads(cpu_count())
    args.device = torch_device()
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
    if args.what and "compile" in args.what and args.device != "cpu":
        if args.what_given:
            p.error("--what compile measures host processes (CPU); on a GPU use python -m benchmarks.gpu")
        args.what.discard("compile")  # implied by all / --families / --all-models: the other tables only
        log("on a GPU: no compile/memory table (fresh CPU processes); python -m benchmarks.gpu reports device memory")
    args.isolate = not args.same_process and args.device == "cpu" and not args.convs
    meta = machine_info(args.device)
    if args.isolate:
        meta["thp"] = {"flax": _worker_tunables(args.thp in ("flax", "both"))[1],
                       "torch": _worker_tunables(args.thp == "both")[1]}
    else:
        meta["thp"] = {"flax": flaxnets.runtime.thp_active(), "torch": flaxnets.runtime.thp_active()}
    meta["isolate"] = args.isolate
    log(f"{meta['cpu']}, {meta['cores']} cores ({bf16_units(meta['cpu_flags'])}), load {meta['loadavg_start'][0]:.1f}; "
        f"XLA_FLAGS={meta['XLA_FLAGS']!r}")
    command = "python -m benchmarks.bench " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.convs:
        results = {"command": command, "repeats": args.repeats, "meta": meta,
                   "convs": conv_bench(args.repeats)}
        meta["loadavg_end"] = os.getloadavg()
        return _emit(results, conv_markdown(results), args)
    if args.what:
        results = run_suite(names, args, meta, command)
        text = suite_markdown(results)
        print(text)
        if args.out:
            write_markdown(args.out, args.tag, text)
        if args.json:
            _dump_json(args.json, results)
        return results
    matmul_n = _matmul_n(args)
    peak = matmul_peak(args.dtype, matmul_n, device=args.device)
    log("matmul peak GFLOP/s: " + ", ".join(f"{k} {v:.0f}" for k, v in peak.items()))
    results = {
        "command": command,
        "batch": args.batch, "size": args.size, "dtype": args.dtype, "repeats": args.repeats,
        "warmup": args.warmup, "settle": args.settle, "meta": meta, "matmul_peak_gflop_s": peak, "matmul_n": matmul_n,
        "models": [],
    }
    for name in names:
        try:
            results["models"].append(bench_model(name, args))
        except Exception as e:  # one model failing (e.g. out of memory) must not lose the others
            if len(names) == 1:
                raise
            log(f"{name}: FAILED: {type(e).__name__}: {str(e)[:500]}")
            results["models"].append({"model": name, "rows": [], "error": f"{type(e).__name__}: {str(e)[:500]}"})
        jax.clear_caches()
        if args.json:  # partial results survive a later crash or timeout
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
    meta["loadavg_end"] = os.getloadavg()
    return _emit(results, markdown(results), args)


def _emit(results: dict, text: str, args) -> dict:
    print(text)
    if args.out:
        write_markdown(args.out, args.tag, text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    _a = parser().parse_known_args()[0]
    if _a.same_process and _a.thp != "none":
        flaxnets.runtime.reexec_with_thp()
    _r = main()
    failed = sorted({m["model"] for run in _r.get("runs", {"": _r}).values() for m in run.get("models", [])
                     if m.get("error")})
    if failed:
        log(f"failed: {', '.join(failed)} (rows marked in the table)")
        sys.exit(1)
