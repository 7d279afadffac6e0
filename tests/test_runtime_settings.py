"""flaxnets.runtime.reexec_with_thp: when the CLIs restart themselves with transparent huge
pages for glibc, and that the restart keeps the interpreter, its options and the arguments."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from flaxnets import runtime as xf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GLIBC_OK = sys.platform.startswith("linux") and (xf._glibc_version() or (0,)) >= (2, 35)


@pytest.fixture
def sysfs(tmp_path):
    def make(text):
        p = tmp_path / "enabled"
        p.write_text(text)
        return str(p)
    return make


@pytest.mark.skipif(not GLIBC_OK, reason="needs Linux with glibc >= 2.35")
def test_thp_env_adds_the_tunable(sysfs):
    env = xf.thp_env({"PATH": "/bin"}, sysfs("always [madvise] never\n"))
    assert env == {"PATH": "/bin", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
    # the user's other tunables are kept, ours is appended with glibc's ':' separator
    env = xf.thp_env({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, sysfs("[always] madvise never\n"))
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"


@pytest.mark.skipif(not GLIBC_OK, reason="needs Linux with glibc >= 2.35")
def test_thp_env_leaves_alone(sysfs, tmp_path):
    ok = sysfs("always [madvise] never\n")
    assert xf.thp_env({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, ok) is None  # the user's choice
    assert xf.thp_env({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}, ok) is None  # already restarted
    assert xf.thp_env({"FLAXNETS_NO_THP": "1"}, ok) is None
    assert xf.thp_env({"FLAXNETS_NO_THP": "0"}, ok) is not None
    assert xf.thp_env({}, sysfs("always madvise [never]\n")) is None
    assert xf.thp_env({}, str(tmp_path / "missing")) is None  # no THP in this kernel


SCRIPT = ("import json, os, sys; from flaxnets import runtime as xf; xf.reexec_with_thp(); "
          "print(json.dumps([os.environ.get('GLIBC_TUNABLES'), sys.argv[1:], sys.flags.optimize, "
          "xf.applied()]))")


def _run(env_extra):
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "FLAXNETS_NO_THP")}
    env.update(env_extra, PYTHONPATH=ROOT, FLAXNETS_NO_XLA_FLAGS="1")
    out = subprocess.run([sys.executable, "-O", "-c", SCRIPT, "a", "--b"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(xf.thp_env({}) is None, reason="THP cannot apply on this machine")
def test_reexec_restarts_once_with_the_same_command():
    tunables, args, optimize, applied = _run({})
    assert tunables == "glibc.malloc.hugetlb=1" and args == ["a", "--b"] and optimize == 1
    assert applied[-1:] == ["GLIBC_TUNABLES=glibc.malloc.hugetlb=1"] and len(set(applied)) == len(applied)
    assert _run({"FLAXNETS_NO_THP": "1"})[0] is None
