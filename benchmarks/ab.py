"""Same-process A/B of one CPU fast path: the Flax train step (and inference) with the path on
(the package's default) and off, interleaved, compiled afresh for each side in every round.

    python -m benchmarks.ab --switch max_pool_separable [--models googlenet,squeezenet1_1]
        [--what train,infer] [--batch 32] [--size 224] [--rounds 3] [--steps 3] [--dtype float32]

Switches (each flips a choice the layers make at trace time, so every round traces a new
function; nothing else changes between the two sides):

- ``max_pool_taps``: max pooling's first-maximum gradient (`layers._max_pool_taps`) vs jax's own
  `reduce_window` derivative (was ``benchmarks.max_pool_ab``);
- ``max_pool_separable``: that gradient axis by axis (`layers._SEPARABLE`) vs on the whole window;
- ``low_precision_vjp``: bfloat16/float16 products' gradients as low-precision products
  (`layers._LP_VJP`, `layers.lp_einsum`) vs autodiff of the float32-accumulating product (use
  with ``--dtype bfloat16``);
- ``fast_paths``: every CPU fast path (`conv_ops.use_impl("fast")`) vs none (``"plain"``).

Each side's time in a round is the best of ``--steps`` calls; the table shows the median over
rounds, min-max in brackets, and the change (negative: the fast path is faster), after a header
with the CPU model, jax version and load. Like `python -m train.main`, it restarts itself once
with transparent huge pages (`flaxnets.runtime.reexec_with_thp`; ``FLAXNETS_NO_THP=1`` opts
out). Same-process ratios are the evidence for a default; the two-worker `benchmarks.bench`
tables give the figures against torch.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import time


@contextlib.contextmanager
def _attr(obj, name: str, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def _sides(switch: str):
    """{"fast": context, "plain": context} factories for `switch`."""
    from flaxnets import conv_ops, layers

    if switch == "max_pool_taps":
        taps = layers._max_pool_taps
        plain = lambda x, ks, ss, pads, ds: layers._max_pool_plain(x, ks, ss, pads, ds)  # noqa: E731
        return {"fast": lambda: _attr(layers, "_max_pool_taps", taps),
                "plain": lambda: _attr(layers, "_max_pool_taps", plain)}
    if switch == "max_pool_separable":
        return {"fast": lambda: _attr(layers, "_SEPARABLE", True), "plain": lambda: _attr(layers, "_SEPARABLE", False)}
    if switch == "low_precision_vjp":
        return {"fast": lambda: _attr(layers, "_LP_VJP", True), "plain": lambda: _attr(layers, "_LP_VJP", False)}
    if switch == "fast_paths":
        return {"fast": lambda: conv_ops.use_impl("fast"), "plain": lambda: conv_ops.use_impl("plain")}
    raise SystemExit(f"--switch {switch!r}: expected one of {', '.join(SWITCHES)}")


SWITCHES = ("max_pool_taps", "max_pool_separable", "low_precision_vjp", "fast_paths")


def _steps(name: str, batch: int, size: int, dtype: str, what: tuple[str, ...]):
    """{kind: (make, args)}: `make()` traces a fresh jitted step (train: SGD with momentum and the
    BatchNorm update, state not donated so both sides reuse it; infer: eval logits)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    import flaxnets

    bf16 = dtype == "bfloat16"
    model = flaxnets.create_model(name, **({"dtype": jnp.bfloat16} if bf16 else {}))
    variables = flaxnets.init_variables(name)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((batch, size, size, 3)), jnp.bfloat16 if bf16 else jnp.float32)
    logits = lambda o: (o[0] if isinstance(o, tuple) else o).astype(jnp.float32)  # noqa: E731
    classes = jax.eval_shape(lambda v: logits(model.apply(v, x[:1])), variables).shape[-1]
    y = jnp.asarray(rng.integers(0, classes, batch))
    tx = optax.sgd(0.01, 0.9)
    params, stats = variables["params"], variables.get("batch_stats", {})
    out = {}
    if "train" in what:
        def make_train():
            def step(params, stats, opt, x, y):
                def loss(p):
                    o, st = model.apply({"params": p, "batch_stats": stats}, x, train=True,
                                        mutable=["batch_stats"], rngs={"dropout": jax.random.key(0)})
                    return optax.softmax_cross_entropy_with_integer_labels(logits(o), y).mean(), st
                (value, st), grads = jax.value_and_grad(loss, has_aux=True)(params)
                updates, opt = tx.update(grads, opt, params)
                return optax.apply_updates(params, updates), st.get("batch_stats", stats), opt, value
            return jax.jit(step)
        out["train"] = (make_train, (params, stats, tx.init(params), x, y))
    if "infer" in what:
        out["infer"] = (lambda: jax.jit(lambda v, x: logits(model.apply(v, x))), (variables, x))
    return out


def run(switch: str, models: list[str], what: tuple[str, ...], batch: int, size: int, rounds: int,
        steps: int, dtype: str = "float32") -> list[dict]:
    """Rows {model, what, fast_ms, plain_ms, change}: medians over `rounds` of the best of `steps`."""
    import jax

    sides = _sides(switch)
    rows = []
    for name in models:
        for kind, (make, args) in _steps(name, batch, size, dtype, what).items():
            times: dict[str, list[float]] = {"fast": [], "plain": []}
            for _ in range(rounds):
                for side in ("fast", "plain"):
                    with sides[side]():
                        f = make()
                        jax.block_until_ready(f(*args))  # the trace (and compile) under this side
                    best = float("inf")
                    for _ in range(steps):
                        t = time.perf_counter()
                        jax.block_until_ready(f(*args))
                        best = min(best, time.perf_counter() - t)
                    times[side].append(best * 1e3)
            fast, plain = statistics.median(times["fast"]), statistics.median(times["plain"])
            rows.append({"model": name, "what": kind, "fast_ms": fast, "plain_ms": plain,
                         "fast_range": (min(times["fast"]), max(times["fast"])),
                         "plain_range": (min(times["plain"]), max(times["plain"])),
                         "change": fast / plain - 1})
            r = rows[-1]
            print(f"| {name} | {kind} | {plain:.0f} [{r['plain_range'][0]:.0f}-{r['plain_range'][1]:.0f}] "
                  f"| {fast:.0f} [{r['fast_range'][0]:.0f}-{r['fast_range'][1]:.0f}] | {100 * r['change']:+.1f}% |",
                  flush=True)
    return rows


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__.split("\n\n")[0])
    ap.add_argument("--switch", required=True, choices=SWITCHES)
    ap.add_argument("--models", default="googlenet,squeezenet1_1,alexnet")
    ap.add_argument("--what", default="train,infer", help="comma-separated: train, infer")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3, help="timed calls per side and round (the best counts)")
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    a = ap.parse_args(argv)
    what = tuple(w for w in a.what.split(",") if w)
    if not what or set(what) - {"train", "infer"}:
        ap.error(f"--what {a.what!r}: expected a comma-separated subset of train, infer")
    if a.rounds < 1 or a.steps < 1:
        ap.error("--rounds and --steps must be at least 1")
    import jax

    print(f"{_cpu_model()}; jax {jax.__version__}; load {os.getloadavg()[0]:.1f}; switch {a.switch}; "
          f"batch {a.batch}, {a.size}², {a.dtype}, {a.rounds} rounds x best of {a.steps}; "
          f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '(none)')}\n")
    print("| model | step | plain ms [min-max] | fast (default) ms [min-max] | change |\n|---|---|---:|---:|---:|",
          flush=True)
    return run(a.switch, a.models.split(","), what, a.batch, a.size, a.rounds, a.steps, a.dtype)


if __name__ == "__main__":
    from flaxnets import runtime
    runtime.reexec_with_thp()  # as `python -m train.main` runs (FLAXNETS_NO_THP=1 opts out)
    main()
