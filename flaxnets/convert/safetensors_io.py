"""`.safetensors` files as numpy arrays, through safetensors' own (de)serialiser, without torch.

safetensors' numpy helpers have no bfloat16 (numpy has none); `ml_dtypes.bfloat16` stands in,
so bf16 checkpoints round-trip bit for bit.
"""
from __future__ import annotations

import os
from collections import OrderedDict

import ml_dtypes
import numpy as np

_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_,
}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}


def load(path: str | os.PathLike) -> "OrderedDict[str, np.ndarray]":
    """{name: array} of a `.safetensors` file (header order)."""
    import safetensors

    with open(path, "rb") as f:
        data = f.read()
    out: OrderedDict[str, np.ndarray] = OrderedDict()
    for name, t in safetensors.deserialize(data):
        if t["dtype"] not in _DTYPES:
            raise ValueError(f"{os.fspath(path)}: tensor {name!r} has unsupported dtype {t['dtype']}")
        out[name] = np.frombuffer(bytes(t["data"]), _DTYPES[t["dtype"]]).reshape(t["shape"]).copy()
    return out


def save(path: str | os.PathLike, arrays) -> None:
    """Write {name: array} as a `.safetensors` file (torch's `safetensors.torch.load_file` reads it)."""
    import safetensors

    spec = {}
    for name, a in arrays.items():
        a = np.ascontiguousarray(np.asarray(a))
        if a.dtype not in _NAMES:
            raise ValueError(f"{name}: dtype {a.dtype} cannot be stored in a .safetensors file")
        spec[name] = {"dtype": _NAMES[a.dtype], "shape": list(a.shape), "data": a.tobytes()}
    safetensors.serialize_file(spec, os.fspath(path))
