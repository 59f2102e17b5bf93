"""tests/golden/safetensors_io.py - the one safetensors writer of the golden generators (gen_coreloss.py,
gen_simclr.py, gen_model.py and, through gen_model, gen_train.py). Hand-written so the generators need
only numpy: 8-byte little-endian header length, compact JSON header (tensors in the given order, then
__metadata__ when given) padded with spaces to a multiple of 8, raw little-endian bytes. The file is
written beside the target and renamed over it, so a failed run never leaves half a fixture."""
import json
import os
import struct

import numpy as np

DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.int32): "I32"}


def write(path, tensors, meta=None, dtype=None):
    """tensors: a dict or a list of (name, array). dtype: cast every array to it first (np.float32),
    else each must already be float32 or int32. meta: {str: str}, stored as __metadata__."""
    items = tensors.items() if isinstance(tensors, dict) else tensors
    header, blobs, off = {}, [], 0
    for name, arr in items:
        arr = np.ascontiguousarray(arr, dtype=dtype)
        b = arr.tobytes()
        header[name] = {"dtype": DTYPES[arr.dtype], "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if meta is not None:
        header["__metadata__"] = meta
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


READ_DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "F16": np.float16}


def read(path):
    """{name: numpy array} of a safetensors file (copies), without its __metadata__."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(body[a:b], dtype=READ_DTYPES[t["dtype"]]).reshape(t["shape"]).copy()
    return out
