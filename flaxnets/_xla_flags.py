"""XLA:CPU flags flaxnets sets on import; must run before jax initialises its backend.

jaxlib 0.10 sends every convolution to YNNPACK; XLA's own (Eigen) convolution is about 2x
faster for these models' training steps on x86 (numbers in docs/benchmarks.md). So, unless

- the environment variable ``FLAXNETS_NO_XLA_FLAGS=1`` is set (opt out), or
- ``XLA_FLAGS`` already names the flag (the user's choice wins), or
- jax's backend is already initialised (XLA reads ``XLA_FLAGS`` once, at backend start),

``--xla_cpu_experimental_ynn_fusion_type=-individual_convolution`` is appended to
``XLA_FLAGS``. `APPLIED` lists what was added. The flag only affects the CPU backend.
"""
from __future__ import annotations

import os
import sys

FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",)


def _backend_initialised() -> bool:
    xb = sys.modules.get("jax._src.xla_bridge")
    return bool(getattr(xb, "_backends", None))


def apply(flags=FLAGS) -> list[str]:
    if os.environ.get("FLAXNETS_NO_XLA_FLAGS", "") not in ("", "0") or _backend_initialised():
        return []
    current = os.environ.get("XLA_FLAGS", "")
    added = [f for f in flags if f.split("=")[0] not in current]
    if added:
        os.environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
    return added


APPLIED = apply()
