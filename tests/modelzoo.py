"""Small ONNX models built with onnx.helper, for the tests and benchmarks (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8


def _rng() -> np.random.Generator:
    """A fresh generator per model: the same weights whatever order models are built in."""
    return np.random.default_rng(20261121)


def _save(graph: onnx.GraphProto, path: Path, opset: int = OPSET, **save_kwargs) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=IR_VERSION)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path), **save_kwargs)
    return path


def _info(name, elem_type, shape):
    return helper.make_tensor_value_info(name, elem_type, shape)


def add(path: Path) -> Path:
    """y = x + x on float32 [2, 3]: the smallest useful model."""
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "add",
                              [_info("x", TensorProto.FLOAT, [2, 3])], [_info("y", TensorProto.FLOAT, [2, 3])])
    return _save(graph, path)


def identity(path: Path, elem_type: int = TensorProto.FLOAT, shape=("n",)) -> Path:
    """y = x, any dtype and (dynamic) shape: the tensor transport's round trip."""
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity",
                              [_info("x", elem_type, list(shape))], [_info("y", elem_type, list(shape))])
    return _save(graph, path)


def conv(path: Path, scale: float = 1.0, dilations: bool = True, relu: bool = True) -> Path:
    """Conv 3->8 3x3 (+ Relu) on NCHW float32 [1, 3, 16, 16]; `scale` multiplies all weights (drift demos).

    A lone Conv without `kernel_shape` and `dilations` is what ORT-web 1.30's JSEP WebGPU kernel rejects
    (fused with Relu it takes another path and works)."""
    weights = (_rng().standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.2 * scale).astype(np.float32)
    bias = (np.linspace(-0.1, 0.1, 8) * scale).astype(np.float32)
    attributes = {"pads": [1, 1, 1, 1]}
    if dilations:
        attributes.update(kernel_shape=[3, 3], dilations=[1, 1])
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c" if relu else "y"], name="conv0", **attributes)]
    if relu:
        nodes.append(helper.make_node("Relu", ["c"], ["y"], name="relu0"))
    graph = helper.make_graph(
        nodes,
        "conv",
        [_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [_info("y", TensorProto.FLOAT, [1, 8, 16, 16])],
        initializer=[numpy_helper.from_array(weights, "w"), numpy_helper.from_array(bias, "b")],
    )
    return _save(graph, path)


def matmul(path: Path, elem_type: int = TensorProto.FLOAT) -> Path:
    """y = x @ W (64x32) with a dynamic batch dimension; float32 or float16."""
    dtype = helper.tensor_dtype_to_np_dtype(elem_type)
    weights = (_rng().standard_normal((64, 32)) * 0.1).astype(dtype)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul0")],
        "matmul",
        [_info("x", elem_type, ["batch", 64])],
        [_info("y", elem_type, ["batch", 32])],
        initializer=[numpy_helper.from_array(weights, "w")],
    )
    return _save(graph, path)


def embedding(path: Path) -> Path:
    """Gather rows of a float table with int64 indices of dynamic shape, plus their int64 sum."""
    table = _rng().standard_normal((10, 4)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["rows"], axis=0),
         helper.make_node("ReduceSum", ["ids"], ["total"], keepdims=0)],
        "embedding",
        [_info("ids", TensorProto.INT64, ["n"])],
        [_info("rows", TensorProto.FLOAT, ["n", 4]), _info("total", TensorProto.INT64, [])],
        initializer=[numpy_helper.from_array(table, "table")],
    )
    return _save(graph, path)


def multi_output(path: Path) -> Path:
    """Three outputs of different dtypes from one float input: sigmoid, argmax (int64), x > 0 (bool)."""
    graph = helper.make_graph(
        [helper.make_node("Sigmoid", ["x"], ["prob"]),
         helper.make_node("ArgMax", ["x"], ["label"], axis=1, keepdims=0),
         helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.array(0, np.float32))),
         helper.make_node("Greater", ["x", "zero"], ["positive"])],
        "multi_output",
        [_info("x", TensorProto.FLOAT, ["batch", 5])],
        [_info("prob", TensorProto.FLOAT, ["batch", 5]), _info("label", TensorProto.INT64, ["batch"]),
         _info("positive", TensorProto.BOOL, ["batch", 5])],
    )
    return _save(graph, path)


def with_unsupported_webgpu_op(path: Path) -> Path:
    """Relu -> Det -> Neg: the WebGPU EP has no Det kernel, so ORT places it on the CPU."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"], name="relu0"),
         helper.make_node("Det", ["r"], ["d"], name="det0"),
         helper.make_node("Neg", ["d"], ["y"], name="neg0")],
        "det",
        [_info("x", TensorProto.FLOAT, [3, 3])],
        [_info("y", TensorProto.FLOAT, [])],
    )
    return _save(graph, path)


def external_data(path: Path) -> Path:
    """matmul whose weights live in `<name>.weights` beside the model."""
    weights = (_rng().standard_normal((256, 64)) * 0.1).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "external",
        [_info("x", TensorProto.FLOAT, [1, 256])],
        [_info("y", TensorProto.FLOAT, [1, 64])],
        initializer=[numpy_helper.from_array(weights, "w")],
    )
    return _save(graph, path, save_as_external_data=True, location=f"{path.stem}.weights", size_threshold=0)


def reference(path: Path, feeds: dict) -> dict[str, np.ndarray]:
    """The outputs of native onnxruntime on the CPU."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def endless_loop(path: Path) -> Path:
    """A Loop of 10**15 additions: a run that never ends in practice (for timeouts)."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["v_in", "v_in"], ["v_out"])],
        "body",
        [_info("i", TensorProto.INT64, []), _info("cond_in", TensorProto.BOOL, []), _info("v_in", TensorProto.FLOAT, [1])],
        [_info("cond_out", TensorProto.BOOL, []), _info("v_out", TensorProto.FLOAT, [1])],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["trips", "cond", "x"], ["y"], body=body)],
        "endless",
        [_info("x", TensorProto.FLOAT, [1])],
        [_info("y", TensorProto.FLOAT, [1])],
        initializer=[numpy_helper.from_array(np.array(10**15, np.int64), "trips"),
                     numpy_helper.from_array(np.array(True), "cond")],
    )
    return _save(graph, path)


def big_weights(path: Path, megabytes: int = 100) -> Path:
    """y = x @ W with W a float32 [N, N] initializer of about `megabytes` MB (1 MB = 10**6 bytes)."""
    n = int((megabytes * 10**6 / 4) ** 0.5)
    weights = np.full((n, n), 1e-3, dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul0")],
        "big_weights",
        [_info("x", TensorProto.FLOAT, [1, n])],
        [_info("y", TensorProto.FLOAT, [1, n])],
        initializer=[numpy_helper.from_array(weights, "w")],
    )
    return _save(graph, path)


def free_dims(path: Path, dims=(-1, 3, -1, -1)) -> Path:
    """y = Relu(x) on float32 whose declared dims are -1 (PaddlePaddle's way of saying "any size")."""
    x = _info("x", TensorProto.FLOAT, None)
    x.type.tensor_type.shape.dim.extend(onnx.TensorShapeProto.Dimension(dim_value=d) for d in dims)
    y = _info("y", TensorProto.FLOAT, None)
    y.type.tensor_type.shape.dim.extend(onnx.TensorShapeProto.Dimension(dim_value=d) for d in dims)
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "free_dims", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))  # onnx's checker refuses negative dims, which real exporters write all the same
    return path


def positions(path: Path) -> Path:
    """y = x + table[0..n-1] with n read from x's shape (Shape -> Gather -> Range on int64, as encoders export
    position ids): shape arithmetic ORT keeps on the CPU on GPU EPs."""
    table = _rng().standard_normal((16, 4)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Shape", ["x"], ["shape"], name="shape0"),
         helper.make_node("Gather", ["shape", "one"], ["n"], name="gather_n", axis=0),
         helper.make_node("Range", ["zero", "n", "one"], ["positions"], name="range0"),
         helper.make_node("Gather", ["table", "positions"], ["rows"], name="embedding"),
         helper.make_node("Add", ["x", "rows"], ["y"], name="add0")],
        "positions",
        [_info("x", TensorProto.FLOAT, [1, "n", 4])],
        [_info("y", TensorProto.FLOAT, [1, "n", 4])],
        initializer=[numpy_helper.from_array(table, "table"), numpy_helper.from_array(np.array(1, np.int64), "one"),
                     numpy_helper.from_array(np.array(0, np.int64), "zero")],
    )
    return _save(graph, path)


def det_only(path: Path) -> Path:
    """y = Det(x): one node, which neither the WebGPU nor the WebNN EP has a kernel for."""
    graph = helper.make_graph([helper.make_node("Det", ["x"], ["y"], name="det0")], "det_only",
                              [_info("x", TensorProto.FLOAT, [3, 3])], [_info("y", TensorProto.FLOAT, [])])
    return _save(graph, path)
