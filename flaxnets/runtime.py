"""Process settings for XLA:CPU that flaxnets never makes on its own: explicit calls only.

`reexec_with_thp()` (``python -m train.main`` and the benchmarks call it first; opt out with
``FLAXNETS_NO_THP=1``): restarts the process once with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``
added, so glibc asks for transparent huge pages (``madvise``) on the memory it maps. XLA:CPU
allocates a training step's temporaries afresh on every call; with huge pages a batch-32 step
faults its buffers in 2 MiB instead of 4 KiB pages (measured gains: docs/benchmarks.md,
"Transparent huge pages"). glibc reads tunables only at process start, hence the restart;
library users get the same by exporting the variable before starting Python. Nothing happens
where it cannot apply: not Linux/glibc >= 2.35, THP set to ``never``, or the tunable already
chosen by the user (any ``glibc.malloc.hugetlb`` value wins).

`tune_malloc()` (call it before jax's backend starts): ``mallopt(M_ARENA_MAX=1,
M_MMAP_THRESHOLD=M_TRIM_THRESHOLD=2 GiB - 1)`` serves blocks below 2 GiB from one heap that keeps
freed memory instead of returning it to the OS (more resident memory; docs/benchmarks.md).

`applied()`: the settings in effect in this process (flaxnets' XLA flag, THP, malloc tuning).
"""
from __future__ import annotations

import ctypes
import os
import sys

from flaxnets._xla_flags import FLAGS, backend_initialised

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
_MAX = 2**31 - 1  # mallopt takes an int
_MALLOC = ((_M_ARENA_MAX, 1), (_M_MMAP_THRESHOLD, _MAX), (_M_TRIM_THRESHOLD, _MAX))
MALLOC_TUNING = "mallopt(M_ARENA_MAX=1, M_MMAP_THRESHOLD=M_TRIM_THRESHOLD=2**31-1)"


_TUNED: list[str] = []


def tune_malloc() -> bool:
    """Keep freed memory in one never-trimmed glibc heap (see module doc); True if applied."""
    if not sys.platform.startswith("linux") or backend_initialised():
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only
        ok = all(libc.mallopt(param, value) == 1 for param, value in _MALLOC)
    except (OSError, AttributeError):
        return False
    if ok:
        _TUNED.append(MALLOC_TUNING)
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


def applied() -> list[str]:
    """The flaxnets process settings in effect (a restarted process inherits XLA_FLAGS)."""
    out = [f for f in FLAGS if f in os.environ.get("XLA_FLAGS", "").split()]
    if thp_active():
        out.append("GLIBC_TUNABLES=" + THP_TUNABLE)
    return out + _TUNED[:1]
