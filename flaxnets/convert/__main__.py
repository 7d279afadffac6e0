"""Convert checkpoints between torchvision and flaxnets.

    python -m flaxnets.convert regnet_x_400mf regnet.pth -o regnet.msgpack
    python -m flaxnets.convert regnet_x_400mf regnet.msgpack -o back.pth --to-torch

torch -> Flax reads a torchvision `.pth` state_dict (plain, wrapped under "state_dict" or
"model", with or without DataParallel's "module." prefix) or a `.safetensors` file and writes
Flax variables ({"params", "batch_stats"}) as msgpack (`flax.serialization`). `--to-torch`
reads such a msgpack file and writes a `.pth` state_dict (or `.safetensors`, by the output's
suffix). `.safetensors` in either direction needs no torch; `.pth` needs the `torch` extra. Outputs are written to a temporary
file and renamed into place only when everything succeeded; an existing output is never
replaced without `--force`.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m flaxnets.convert", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="registered model name, e.g. regnet_x_400mf (see flaxnets.list_models())")
    p.add_argument("checkpoint", help="input: torchvision .pth/.safetensors, or a Flax .msgpack with --to-torch")
    p.add_argument("-o", "--output", required=True, help="output file (.msgpack, or .pth with --to-torch)")
    p.add_argument("--to-torch", action="store_true", help="convert a Flax msgpack file to a torch .pth state_dict")
    p.add_argument("--num-classes", type=int, default=None, help="classifier size the checkpoint was trained with (default: the model's, 1000 for torchvision)")
    p.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    return p


def _atomic_write(path: str, write) -> None:
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=d)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_flax_variables(path: str) -> dict:
    """A msgpack file written by this tool (or `flax.serialization.msgpack_serialize`)."""
    from flax import serialization

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as f:
        data = f.read()
    try:
        tree = serialization.msgpack_restore(data)
    except Exception as e:
        raise ValueError(f"{path}: not a readable Flax msgpack file ({type(e).__name__}: {e})") from None
    if not isinstance(tree, dict) or "params" not in tree:
        raise ValueError(f"{path}: expected Flax variables with a 'params' collection, "
                         f"got {type(tree).__name__} with keys {list(tree)[:5] if isinstance(tree, dict) else '-'}")
    return tree


def write_flax_variables(path: str, variables) -> None:
    import jax
    from flax import serialization

    host = jax.tree_util.tree_map(np.asarray, jax.device_get(variables))
    data = serialization.msgpack_serialize(host)

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)
    _atomic_write(path, write)


def run(args) -> str:
    import flaxnets
    from flaxnets.convert import (from_torch_state_dict, load_torch_checkpoint, save_checkpoint,
                                  to_numpy_state_dict)

    flaxnets.MODELS.get(args.model)  # unknown names fail before any file is read
    if os.path.exists(args.output) and not args.force:
        raise FileExistsError(f"{args.output}: exists (use --force to replace it)")
    kwargs = {} if args.num_classes is None else {"num_classes": args.num_classes}
    if args.to_torch:
        variables = read_flax_variables(args.checkpoint)
        sd = to_numpy_state_dict(args.model, variables, **kwargs)
        # _atomic_write's temporary name keeps the output's suffix, which picks the format.
        _atomic_write(args.output, lambda tmp: save_checkpoint(tmp, sd))
        return f"wrote {len(sd)} tensors to {args.output}"
    sd = load_torch_checkpoint(args.checkpoint)
    variables = from_torch_state_dict(args.model, sd, **kwargs)
    write_flax_variables(args.output, variables)
    return f"wrote {len(sd)} tensors as Flax variables to {args.output}"


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        print(run(args))
    except (ValueError, FileNotFoundError, FileExistsError, TypeError, ImportError) as e:
        from flaxnets.convert import ConversionError

        msg = str(e).replace("\n", " ")
        if isinstance(e, ConversionError) and not e.missing and not e.unexpected and len(e.mismatched) <= 2:
            msg += " (only the classifier differs: pass --num-classes for a checkpoint with another number of classes)"
        print(f"error: {msg}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
