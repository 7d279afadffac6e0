"""`.safetensors` files as numpy arrays, without torch.

Files are read and written through safetensors' numpy API (`safetensors.numpy`). numpy has no
bfloat16, so that API cannot hold bf16 tensors: a file with any bf16 tensor is read and
written here directly in the safetensors format (an 8-byte little-endian header length, a
JSON header `{name: {"dtype", "shape", "data_offsets"}}`, the raw little-endian bytes), with
`ml_dtypes.bfloat16` standing in, so bf16 checkpoints round-trip bit for bit too.
"""
from __future__ import annotations

import json
import os
import struct
from collections import OrderedDict

import ml_dtypes
import numpy as np

_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_,
}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}


def _header(path: str) -> tuple[dict, int]:
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError("file shorter than a safetensors header")
        (n,) = struct.unpack("<Q", raw)
        if n > os.path.getsize(path) - 8:
            raise ValueError("header length beyond the end of the file")
        return json.loads(f.read(n)), 8 + n


def load(path: str | os.PathLike) -> "OrderedDict[str, np.ndarray]":
    """{name: array} of a `.safetensors` file, in the file's data order."""
    path = os.fspath(path)
    header, start = _header(path)
    header.pop("__metadata__", None)
    order = sorted(header, key=lambda k: header[k]["data_offsets"][0])
    bad = [f"{k} ({header[k]['dtype']})" for k in order if header[k]["dtype"] not in _DTYPES]
    if bad:
        raise ValueError(f"unsupported dtypes: {', '.join(bad)}")
    if not any(header[k]["dtype"] == "BF16" for k in order):
        from safetensors.numpy import load_file
        arrays = load_file(path)
        return OrderedDict((k, arrays[k]) for k in order)
    out: OrderedDict[str, np.ndarray] = OrderedDict()
    with open(path, "rb") as f:
        for k in order:
            b, e = header[k]["data_offsets"]
            f.seek(start + b)
            dtype = np.dtype(_DTYPES[header[k]["dtype"]]).newbyteorder("<")
            a = np.frombuffer(f.read(e - b), dtype).reshape(header[k]["shape"])
            out[k] = a.astype(a.dtype.newbyteorder("="))
    return out


def save(path: str | os.PathLike, arrays) -> None:
    """Write {name: array} as a `.safetensors` file (`safetensors.torch.load_file` reads it)."""
    path = os.fspath(path)
    arrays = {k: np.array(a, order="C") for k, a in arrays.items()}  # (ascontiguousarray: 0-d -> 1-d)
    bad = [f"{k} ({a.dtype})" for k, a in arrays.items() if a.dtype not in _NAMES]
    if bad:
        raise ValueError(f"dtypes a .safetensors file cannot hold: {', '.join(bad)}")
    if not any(a.dtype == ml_dtypes.bfloat16 for a in arrays.values()):
        from safetensors.numpy import save_file
        save_file(arrays, path)
        return
    header, offset = {}, 0
    for k, a in arrays.items():
        n = a.nbytes
        header[k] = {"dtype": _NAMES[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # data starts 8-byte aligned, as safetensors writes it
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for a in arrays.values():
            f.write(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())
