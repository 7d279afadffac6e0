"""XLA:CPU runtime settings; flaxnets imports this first, before jax starts its CPU backend.

``XLA_FLAGS``: jaxlib 0.10 sends every convolution to YNNPACK; XLA's own (Eigen) convolution
is about twice as fast for these models on x86, so on import
``--xla_cpu_experimental_ynn_fusion_type=-individual_convolution`` is appended to ``XLA_FLAGS``
unless ``FLAXNETS_NO_XLA_FLAGS=1`` is set, ``XLA_FLAGS`` already names that flag (the user's
choice wins), or jax's backend is already initialised (XLA reads ``XLA_FLAGS`` once, then).

`tune_malloc()` (opt-in: call it before jax's backend starts, or set
``FLAXNETS_MALLOC_TUNING=1``): XLA:CPU allocates an executable's temporaries (1-7 GB for a
batch-32 training step) on every call, from its worker threads, and glibc serves them with
fresh ``mmap``s, so every step page-faults its whole working set (a quarter of a
regnet_x_400mf training step's CPU time here). ``mallopt(M_ARENA_MAX=1, M_MMAP_THRESHOLD=
M_TRIM_THRESHOLD=2 GiB - 1)`` serves blocks below 2 GiB from one heap that keeps up to 2 GiB
free instead of returning it to the OS (more resident memory; larger blocks are still
mmapped). Not the default: it changes the whole process's allocator, and disabling mmap and
trimming altogether (to cover larger blocks) let the heap fragment to 18 GB on resnet50.
Numbers: docs/benchmarks.md.
"""
from __future__ import annotations

import ctypes
import os
import sys

FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
_MAX = 2**31 - 1  # mallopt takes an int
_MALLOC = ((_M_ARENA_MAX, 1), (_M_MMAP_THRESHOLD, _MAX), (_M_TRIM_THRESHOLD, _MAX))
MALLOC_TUNING = "mallopt(M_ARENA_MAX=1, M_MMAP_THRESHOLD=M_TRIM_THRESHOLD=2**31-1)"


def _set(var: str) -> bool:
    return os.environ.get(var, "") not in ("", "0")


def _backend_initialised() -> bool:
    xb = sys.modules.get("jax._src.xla_bridge")
    return bool(getattr(xb, "_backends", None))


def tune_malloc() -> bool:
    """Keep freed memory in one never-trimmed glibc heap (see module doc); True if applied."""
    if not sys.platform.startswith("linux") or _backend_initialised():
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only
        ok = all(libc.mallopt(param, value) == 1 for param, value in _MALLOC)
    except (OSError, AttributeError):
        return False
    if ok and MALLOC_TUNING not in APPLIED:
        APPLIED.append(MALLOC_TUNING)
    return ok


def apply(flags=FLAGS) -> list[str]:
    if _set("FLAXNETS_NO_XLA_FLAGS") or _backend_initialised():
        return []
    current = os.environ.get("XLA_FLAGS", "")
    added = [f for f in flags if f.split("=")[0] not in current]
    if added:
        os.environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
    return added


APPLIED: list[str] = apply()
if _set("FLAXNETS_MALLOC_TUNING"):
    tune_malloc()
