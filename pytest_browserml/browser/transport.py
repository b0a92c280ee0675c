"""Tensors to and from the page as raw bytes.

A set of tensors travels as one binary payload plus a small JSON list of
specs (name, dtype, shape, byte offset). Offsets are 8-byte aligned so both
sides view each tensor in place: no JSON number lists, one copy per direction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

ALIGNMENT = 8

# numpy dtype -> the onnxruntime-web tensor type with the same bytes.
ORT_TYPES: dict[np.dtype, str] = {
    np.dtype(np.float32): "float32",
    np.dtype(np.float64): "float64",
    np.dtype(np.float16): "float16",
    np.dtype(np.int8): "int8",
    np.dtype(np.uint8): "uint8",
    np.dtype(np.int16): "int16",
    np.dtype(np.uint16): "uint16",
    np.dtype(np.int32): "int32",
    np.dtype(np.uint32): "uint32",
    np.dtype(np.int64): "int64",
    np.dtype(np.uint64): "uint64",
    np.dtype(np.bool_): "bool",
}
NUMPY_TYPES: dict[str, np.dtype] = {name: dtype for dtype, name in ORT_TYPES.items()}


class TransportError(ValueError):
    """A tensor that onnxruntime-web cannot take, or a payload that does not match its specs."""


def encode(tensors: Mapping[str, Any]) -> tuple[list[dict], list[memoryview]]:
    """Specs and the payload parts (little-endian bytes, aligned) for `tensors`."""
    specs: list[dict] = []
    parts: list[memoryview] = []
    offset = 0
    for name, value in tensors.items():
        array = _as_array(name, value)
        if array.dtype.kind in "OUS":
            specs.append({"name": name, "dtype": "string", "shape": list(array.shape), "values": _strings(name, array)})
            continue
        padding = -offset % ALIGNMENT
        if padding:
            parts.append(memoryview(bytes(padding)))
            offset += padding
        data = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"), copy=False))
        specs.append({
            "name": name,
            "dtype": ORT_TYPES[array.dtype.newbyteorder("=")],
            "shape": list(array.shape),
            "offset": offset,
            "nbytes": data.nbytes,
        })
        parts.append(memoryview(data.reshape(-1).view(np.uint8)))
        offset += data.nbytes
    return specs, parts


def decode(specs: list[dict], payload: bytes | bytearray) -> dict[str, np.ndarray]:
    """numpy arrays with the exact dtype and shape the page reported, viewing `payload`.

    Raises TransportError, naming the output, for any spec the payload does not match.
    """
    tensors: dict[str, np.ndarray] = {}
    for spec in specs:
        name = spec.get("name") if isinstance(spec, dict) else None
        try:
            tensors[name] = _decode_one(spec, payload)
        except TransportError:
            raise
        except (KeyError, TypeError, ValueError, OverflowError) as error:
            raise TransportError(f"output {name!r}: malformed spec {spec!r} ({type(error).__name__}: {error})") from None
    return tensors


def _decode_one(spec: dict, payload: bytes | bytearray) -> np.ndarray:
    name, shape = spec["name"], tuple(int(d) for d in spec["shape"])
    if not isinstance(name, str) or any(d < 0 for d in shape):
        raise ValueError("the name must be a string and every dimension >= 0")
    count = math.prod(shape)
    if spec["dtype"] == "string":
        values = spec["values"]
        if not isinstance(values, list) or len(values) != count or not all(isinstance(v, str) for v in values):
            raise TransportError(f"output {name!r}: {len(values)} string values do not fill shape {shape}")
        array = np.empty(count, dtype=object)
        array[:] = values
        return array.reshape(shape)
    dtype = NUMPY_TYPES.get(spec["dtype"])
    if dtype is None:
        raise TransportError(f"output {name!r} has type {spec['dtype']!r}, which pytest-browserml cannot read")
    offset, nbytes = int(spec["offset"]), int(spec["nbytes"])
    if offset < 0 or offset + nbytes > len(payload) or nbytes != count * dtype.itemsize:
        raise TransportError(f"output {name!r}: payload does not hold {shape} {dtype} at offset {spec['offset']}")
    return np.frombuffer(payload, dtype=dtype.newbyteorder("<"), count=count, offset=offset).astype(
        dtype, copy=False
    ).reshape(shape)


def _as_array(name: str, value: Any) -> np.ndarray:
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as error:  # ragged nested lists and the like
        raise TransportError(f"input {name!r} is not a tensor: {error}") from None
    if array.dtype.kind in "OUS":
        return array
    if array.dtype.newbyteorder("=") not in ORT_TYPES:
        raise cannot_take(name, str(array.dtype))
    return array


def cannot_take(name: str, dtype: str) -> TransportError:
    """The error for an input of a dtype the transport carries no tensor of."""
    supported = ", ".join(sorted(ORT_TYPES.values()))
    return TransportError(f"input {name!r} has dtype {dtype}, which onnxruntime-web cannot take (it takes {supported} "
                          "and string)")


def _strings(name: str, array: np.ndarray) -> list[str]:
    values = array.reshape(-1).tolist()
    for value in values:
        if not isinstance(value, (str, bytes)):
            raise TransportError(f"input {name!r} is an object array holding {type(value).__name__}, not strings")
    try:
        return [value.decode() if isinstance(value, bytes) else value for value in values]
    except UnicodeDecodeError as error:
        raise TransportError(f"input {name!r} holds bytes that are not UTF-8 text: {error}") from None
