"""XLA:CPU's convolution flag, the one process setting `import flaxnets` makes.

jaxlib 0.10 sends every convolution to YNNPACK on CPU; XLA's own (Eigen) convolution is about
twice as fast for these models on x86 (docs/benchmarks.md), so on import
``--xla_cpu_experimental_ynn_fusion_type=-individual_convolution`` is appended to ``XLA_FLAGS``
unless ``FLAXNETS_NO_XLA_FLAGS=1`` is set, ``XLA_FLAGS`` already names that flag (the user's
choice wins), or jax's backend is already initialised (XLA reads ``XLA_FLAGS`` once, then).
The flag is read only by XLA:CPU; GPU and TPU backends ignore it. Everything else that changes
the process (huge pages, allocator settings) is in `flaxnets.runtime`, by explicit call only.
"""
from __future__ import annotations

import os
import sys

FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",)


def backend_initialised() -> bool:
    xb = sys.modules.get("jax._src.xla_bridge")
    return bool(getattr(xb, "_backends", None))


def apply(flags=FLAGS) -> list[str]:
    if os.environ.get("FLAXNETS_NO_XLA_FLAGS", "") not in ("", "0") or backend_initialised():
        return []
    current = os.environ.get("XLA_FLAGS", "")
    added = [f for f in flags if f.split("=")[0] not in current]
    if added:
        os.environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
    return added


apply()
