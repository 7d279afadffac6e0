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

`reexec_with_thp()` (``python -m train.main`` calls it first; ``python -m flaxnets.bench`` starts
its Flax worker process with the same environment, or calls it with ``--same-process``; opt
out with ``FLAXNETS_NO_THP=1``): restarts the process once with
``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` added, so glibc asks for transparent huge pages
(``madvise``) on the memory it maps. A batch-32 training step then faults its buffers in 2 MiB
instead of 4 KiB pages (resnet50: 1.1M faults per step -> 5K; train steps 1.3-2.2x faster here,
docs/benchmarks.md "Transparent huge pages"). glibc reads tunables only at process start, hence
the restart; library users get the same by exporting the variable before starting Python.
Nothing happens where it cannot apply: not Linux/glibc >= 2.35, THP set to ``never``, or the
tunable already chosen by the user (any ``glibc.malloc.hugetlb`` value wins).
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


THP_TUNABLE = "glibc.malloc.hugetlb=1"
_THP_SYSFS = "/sys/kernel/mm/transparent_hugepage/enabled"


def _glibc_version() -> tuple[int, ...] | None:
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        return tuple(int(p) for p in libc.gnu_get_libc_version().decode().split(".")[:2])
    except (OSError, AttributeError, ValueError):
        return None


def thp_env(environ=None, sysfs: str = _THP_SYSFS) -> dict | None:
    """The environment to restart with so glibc uses transparent huge pages, or None."""
    environ = dict(os.environ if environ is None else environ)
    tunables = environ.get("GLIBC_TUNABLES", "")
    if (environ.get("FLAXNETS_NO_THP", "") not in ("", "0") or "glibc.malloc.hugetlb" in tunables
            or not sys.platform.startswith("linux")):
        return None
    version = _glibc_version()
    if version is None or version < (2, 35):
        return None
    try:
        with open(sysfs) as f:
            if "[never]" in f.read():
                return None
    except OSError:
        return None
    environ["GLIBC_TUNABLES"] = ":".join(t for t in (tunables, THP_TUNABLE) if t)
    return environ


def thp_active() -> bool:
    return THP_TUNABLE in os.environ.get("GLIBC_TUNABLES", "").split(":")


def reexec_with_thp() -> None:
    """Restart this command (same interpreter, options and arguments) with THP on; see above.

    Call it first in a ``__main__`` block, before any work: the process image is replaced.
    """
    env = thp_env()
    if env is None or not getattr(sys, "orig_argv", None):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, env)


def apply(flags=FLAGS) -> list[str]:
    if _set("FLAXNETS_NO_XLA_FLAGS") or _backend_initialised():
        return []
    current = os.environ.get("XLA_FLAGS", "")
    added = [f for f in flags if f.split("=")[0] not in current]
    if added:
        os.environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
    return added


apply()
# The settings in effect (a restarted process inherits XLA_FLAGS with ours already in it).
APPLIED: list[str] = [f for f in FLAGS if f in os.environ.get("XLA_FLAGS", "").split()]
if thp_active():
    APPLIED.append("GLIBC_TUNABLES=" + THP_TUNABLE)
if _set("FLAXNETS_MALLOC_TUNING"):
    tune_malloc()
