"""The core install: `import flaxnets` needs neither torch nor tensorflow and changes nothing in
the process beyond its one XLA:CPU flag; `import torchref` needs no jax. Each check runs in a
fresh interpreter where the forbidden packages cannot be imported at all (an import hook makes
them fail as if they were not installed), so a stray import is an error, not a pass."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BLOCK = textwrap.dedent("""
    import sys
    class _Block:
        def __init__(self, names): self.names = names
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.names:
                raise ImportError(f"blocked for this test: {name}")
            return None
    sys.meta_path.insert(0, _Block(BLOCKED))
""")


def _run(blocked, body, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS",)}
    env.update(env_extra or {}, PYTHONPATH=ROOT)
    code = BLOCK.replace("BLOCKED", repr(set(blocked))) + textwrap.dedent(body)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_flaxnets_core_without_torch(tmp_path):
    out = _run({"torch", "tensorflow", "torchref", "PIL", "sklearn", "orbax", "tensorflow_datasets"}, f"""
        import json, os, sys
        before = dict(os.environ)
        import flaxnets
        changed = sorted(k for k in set(os.environ) | set(before) if os.environ.get(k) != before.get(k))
        import jax._src.xla_bridge as xb
        started = bool(xb._backends)
        import jax, jax.numpy as jnp, numpy as np
        name = "mobilenet_v3_small"
        model = flaxnets.create_model(name, num_classes=10)
        v = flaxnets.init_variables(name, num_classes=10)
        x = jnp.ones((1, 64, 64, 3))
        y = jax.jit(model.apply)(v, x)  # eager: ~10x slower (op-by-op dispatch)
        # torch layout as numpy, through a .safetensors file and back: bit-exact
        sd = flaxnets.to_numpy_state_dict(name, v, num_classes=10)
        path = {str(tmp_path / 'm.safetensors')!r}
        flaxnets.save_checkpoint(path, sd)
        v2 = flaxnets.from_torch_state_dict(name, flaxnets.load_torch_checkpoint(path), num_classes=10)
        same = all(bool((np.asarray(a) == np.asarray(b)).all()) for a, b in
                   zip(jax.tree_util.tree_leaves(v), jax.tree_util.tree_leaves(v2)))
        try:
            flaxnets.load_torch_checkpoint(__file__ if False else path.replace('.safetensors', '.pth'))
        except FileNotFoundError:
            pass
        open(path + '.pth', 'wb').write(b'x')
        try:
            flaxnets.load_torch_checkpoint(path + '.pth'); err = None
        except ImportError as e:
            err = str(e)
        print(json.dumps({{"changed": changed, "started": started, "shape": list(y.shape), "same": same,
                          "err": err, "loaded": sorted(m for m in ("torch", "tensorflow", "PIL")
                                                       if m in sys.modules)}}))
    """)
    assert out["started"] is False, "import flaxnets started a jax backend"
    assert out["changed"] in ([], ["XLA_FLAGS"]), out["changed"]
    assert out["shape"] == [1, 10] and out["same"] is True
    assert out["loaded"] == []
    assert out["err"] and "pip install 'flaxnets[torch]'" in out["err"]


def test_xla_flag_opt_out():
    out = _run(set(), """
        import json, os
        import flaxnets
        print(json.dumps(os.environ.get("XLA_FLAGS")))
    """, {"FLAXNETS_NO_XLA_FLAGS": "1"})
    assert out is None


def test_torchref_without_jax():
    out = _run({"jax", "flax", "optax", "jaxlib"}, """
        import json, sys
        import torchref
        m = torchref.create_model("resnet18")
        print(json.dumps({"n": len(torchref.list_models()), "keys": len(m.state_dict())}))
    """)
    assert out["n"] > 60 and out["keys"] > 100
