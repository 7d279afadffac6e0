"""Pieces the benchmarks share that need neither jax nor torch: the machine's description and
the markdown block writer."""
from __future__ import annotations

import os
import platform
import re
import subprocess

# /proc/cpuinfo flags that say which bfloat16 units the CPU has (Linux names).
BF16_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f")


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        m = re.search(r"Model name:\s*(.+)", out)
        if m:
            return m.group(1).strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine()


def cpu_flags(names=BF16_FLAGS) -> dict[str, bool]:
    """Which of `names` /proc/cpuinfo lists among the first CPU's flags (all False elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            line = next((ln for ln in f if ln.startswith("flags")), "")
    except OSError:
        line = ""
    have = set(line.partition(":")[2].split())
    return {n: n in have for n in names}


def bf16_units(flags: dict[str, bool]) -> str:
    """'AMX-BF16, AVX512-BF16' / 'none' for a table's header line."""
    units = [label for key, label in (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16")) if flags.get(key)]
    return ", ".join(units) or "neither AMX-BF16 nor AVX512-BF16"


def write_markdown(path: str, tag: str, text: str) -> None:
    """Replace the block between `<!-- bench:TAG -->` and `<!-- /bench:TAG -->`, else append."""
    begin, end = f"<!-- bench:{tag} -->", f"<!-- /bench:{tag} -->"
    block = f"{begin}\n{text}{end}\n"
    old = open(path).read() if os.path.exists(path) else ""
    if begin in old and end in old:
        new = old[:old.index(begin)] + block + old[old.index(end) + len(end) + 1:]
    else:
        new = old + ("\n" if old and not old.endswith("\n\n") else "") + block
    with open(path, "w") as f:
        f.write(new)
