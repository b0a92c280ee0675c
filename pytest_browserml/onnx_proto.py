"""ONNX files (models, test-data tensors) read with onnx's protobuf classes, without `import onnx`.

Importing onnx costs a process 0.6-1.1 s (ml_dtypes, which onnx imports, registers its dtypes with
numpy), and each pytest-xdist worker would pay it before its first test. Reading a model or a tensor
needs only the message classes that onnx generates into onnx/onnx_ml_pb2.py (plain protobuf, 0.02 s):
that one file is run here. Importing onnx later gives the same classes (protobuf keeps one class per
message type). Tensors of the types numpy has are converted here; the others (bfloat16, float8, int4,
external data, ...) by onnx's own numpy_helper. No browser and no pytest in here.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path

import numpy as np

# TensorProto.DataType -> numpy dtype, for the element types numpy has itself
NUMPY_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32, 7: np.int64,
                8: np.object_, 9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64,
                14: np.complex64, 15: np.complex128}
# Where a tensor without raw_data keeps its values, and their dtype there (onnx's storage rules)
_FIELDS = {1: ("float_data", np.float32), 14: ("float_data", np.float32), 7: ("int64_data", np.int64),
           11: ("double_data", np.float64), 15: ("double_data", np.float64), 12: ("uint64_data", np.uint64),
           13: ("uint64_data", np.uint64), **{t: ("int32_data", np.int32) for t in (2, 3, 4, 5, 6, 9, 10)}}
# TensorProto.DataType -> the name of the dtype numpy_helper gives it (ml_dtypes'), for the types numpy lacks
TYPE_NAMES = {16: "bfloat16", 17: "float8_e4m3fn", 18: "float8_e4m3fnuz", 19: "float8_e5m2", 20: "float8_e5m2fnuz",
              21: "uint4", 22: "int4", 23: "float4_e2m1fn", 24: "float8_e8m0fnu", 25: "uint2", 26: "int2",
              27: "float6_e2m3fn", 28: "float6_e3m2fn"}
_SIXTEEN_BITS = frozenset({4, 5, 10})  # uint16, int16, float16: bit patterns in int32_data
_STRING, _BOOL, _EXTERNAL = 8, 9, 1


@functools.cache
def messages():
    """onnx's generated message module (ModelProto, TensorProto, ...), run without onnx's __init__."""
    if "onnx.onnx_ml_pb2" in sys.modules:
        return sys.modules["onnx.onnx_ml_pb2"]
    spec = importlib.util.find_spec("onnx")  # finds the package without importing it
    folders = (spec.submodule_search_locations or []) if spec else []
    generated = Path(folders[0]) / "onnx_ml_pb2.py" if folders else None
    if generated is not None and generated.is_file():
        try:
            module_spec = importlib.util.spec_from_file_location(f"{__name__}._onnx_ml_pb2", generated)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
            return module
        except Exception:  # e.g. a protobuf runtime older than the generated code: onnx says it better
            pass
    import onnx  # raises what is wrong with this onnx

    return onnx.onnx_ml_pb2


def load_model(path: Path):
    """The ModelProto in `path` (weights in external files are not read)."""
    return messages().ModelProto.FromString(path.read_bytes())


def read_tensor(path: Path):
    """The TensorProto in `path` (a test-data input_K.pb or output_K.pb)."""
    return messages().TensorProto.FromString(path.read_bytes())


def to_array(tensor) -> np.ndarray:
    """The tensor's values as onnx.numpy_helper.to_array gives them."""
    dtype = NUMPY_DTYPES.get(tensor.data_type)
    if dtype is None or tensor.HasField("segment") or tensor.data_location == _EXTERNAL or sys.byteorder == "big":
        from onnx import numpy_helper

        return numpy_helper.to_array(tensor)
    dims = tuple(tensor.dims)
    if tensor.data_type == _STRING:
        return np.asarray([text.decode("utf-8") for text in tensor.string_data]).astype(np.object_).reshape(dims)
    if tensor.HasField("raw_data"):
        return np.frombuffer(tensor.raw_data, dtype=dtype).reshape(dims)
    field, storage = _FIELDS[tensor.data_type]
    values = np.array(getattr(tensor, field), dtype=storage)
    if tensor.data_type in _SIXTEEN_BITS:
        return values.view(np.uint32).astype(np.uint16).reshape(dims).view(dtype)
    if tensor.data_type == _BOOL:
        return values.view(np.uint32).astype(np.uint8).view(np.bool_).reshape(dims)
    if dtype in (np.complex64, np.complex128):
        return values.view(dtype).reshape(dims)
    return values.astype(dtype).reshape(dims)
