"""Max pooling's gradient: the Flax train step with `layers._max_pool_taps` (the CPU fast path)
against the same step with jax's own `reduce_window` derivative, in one process, interleaved.

    python -m benchmarks.max_pool_ab [--models googlenet,squeezenet1_1,alexnet] [--batch 32] [--rounds 3]

Each round compiles both variants afresh (the swap happens at trace time) and times the best of
3 steps of an SGD-momentum train step; the table shows the median over rounds.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time


def _step_fn(name: str, batch: int, size: int):
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    import flaxnets

    model = flaxnets.create_model(name, num_classes=1000)
    variables = flaxnets.init_variables(name, num_classes=1000)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((batch, size, size, 3)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 1000, batch))
    tx = optax.sgd(0.01, 0.9)

    def make():
        def step(params, stats, opt, x, y):
            def loss(p):
                out, st = model.apply({"params": p, **({"batch_stats": stats} if stats else {})}, x,
                                      train=True, mutable=["batch_stats"],
                                      rngs={"dropout": jax.random.PRNGKey(0)})
                out = out[0] if isinstance(out, tuple) else out
                return optax.softmax_cross_entropy_with_integer_labels(out, y).mean(), st
            (value, st), grads = jax.value_and_grad(loss, has_aux=True)(params)
            updates, opt = tx.update(grads, opt, params)
            return optax.apply_updates(params, updates), st.get("batch_stats", stats), opt, value
        return jax.jit(step)

    params, stats = variables["params"], variables.get("batch_stats", {})
    args = (params, stats, tx.init(params), x, y)
    return make, args


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="googlenet,squeezenet1_1,alexnet")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args(argv)

    import jax

    from flaxnets import layers
    fast = layers._max_pool_taps
    plain = lambda x, ks, ss, pads, ds: layers._max_pool_plain(x, ks, ss, pads, ds)  # noqa: E731
    print(f"{platform.processor() or platform.machine()}; jax {jax.__version__}; batch {a.batch}, "
          f"{a.size}², float32, {a.rounds} rounds\n")
    print("| model | plain reduce_window gradient ms | _max_pool_taps ms | change |\n|---|---:|---:|---:|")
    for name in a.models.split(","):
        make, args = _step_fn(name, a.batch, a.size)
        times: dict[str, list[float]] = {"plain": [], "fast": []}
        try:
            for _ in range(a.rounds):
                for label, impl in (("fast", fast), ("plain", plain)):
                    layers._max_pool_taps = impl
                    f = make()
                    jax.block_until_ready(f(*args))
                    best = float("inf")
                    for _ in range(3):
                        t = time.perf_counter()
                        jax.block_until_ready(f(*args))
                        best = min(best, time.perf_counter() - t)
                    times[label].append(best)
        finally:
            layers._max_pool_taps = fast
        p, q = statistics.median(times["plain"]) * 1e3, statistics.median(times["fast"]) * 1e3
        print(f"| {name} | {p:.0f} | {q:.0f} | {100 * (q / p - 1):+.0f}% |", flush=True)


if __name__ == "__main__":
    main()
