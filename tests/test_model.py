"""What an ONNX file declares (model.py): inputs, free dims, compute precision; and runs that depend on it."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from pytest_browserml import model
from tests import modelzoo


def test_a_model_whose_declared_dims_are_minus_one_runs_with_any_size(browserml, tmp_path):
    path = modelzoo.free_dims(tmp_path / "free_dims.onnx")
    x = np.linspace(-1, 1, 1 * 3 * 4 * 5, dtype=np.float32).reshape(1, 3, 4, 5)
    result = browserml.run(path, {"x": x}, warmup=0, iterations=1)
    np.testing.assert_array_equal(result.outputs["y"], np.maximum(x, 0))


def test_negative_declared_dims_are_free_and_zero_is_a_size_as_in_native_onnxruntime(tmp_path):
    path = modelzoo.free_dims(tmp_path / "free_dims.onnx", dims=(-1, 3, 0, -5))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    session.run(None, {"x": np.ones((2, 3, 0, 9), np.float32)})
    with pytest.raises(Exception, match="invalid dimensions"):
        session.run(None, {"x": np.ones((2, 3, 7, 9), np.float32)})
    facts = model.read(path)
    assert facts.inputs[0].dims == (-1, 3, 0, -5)
    assert facts.input_mismatch([{"name": "x", "dtype": "float32", "shape": [2, 3, 0, 9]}]) is None
    assert "'x' has shape [2, 3, 7, 9], the model takes [-1, 3, 0, -5]" in facts.input_mismatch(
        [{"name": "x", "dtype": "float32", "shape": [2, 3, 7, 9]}])


def test_a_float32_model_computes_in_its_outputs_dtypes(models):
    assert model.read(models["conv"]).precision is None


def test_a_float16_model_with_float32_inputs_and_outputs_computes_in_float16(models, tmp_path):
    from onnxconverter_common import float16

    converted = float16.convert_float_to_float16(onnx.load(str(models["conv"])), keep_io_types=True)
    onnx.save(converted, str(tmp_path / "conv_fp16.onnx"))
    facts = model.read(tmp_path / "conv_fp16.onnx")
    assert [value.dtype for value in (*facts.inputs, *facts.outputs)] == ["float32", "float32"]
    assert facts.precision == model.Precision("float16", "computes in float16 (2 float16 initializers, 1 Cast to float16)")


def test_a_dynamically_quantized_model_computes_in_integers(models, tmp_path):
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(str(models["matmul"]), str(tmp_path / "matmul_int8.onnx"))
    precision = model.read(tmp_path / "matmul_int8.onnx").precision
    assert precision.kind == "quantized"
    assert precision.reason == "computes in integers (quantized: 1 DynamicQuantizeLinear, 1 MatMulInteger nodes)"


def test_float16_values_inside_a_subgraph_count(tmp_path):
    half = numpy_helper.from_array(np.ones(1, np.float16), "h")
    branch = helper.make_graph([helper.make_node("Constant", [], ["y"], value=half)], "branch", [],
                               [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [1])])
    graph = helper.make_graph([helper.make_node("If", ["c"], ["z"], then_branch=branch, else_branch=branch)], "g",
                              [helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT16, [1])])
    assert model.precision_of(graph) == model.Precision("float16", "computes in float16 (2 float16 Constants)")
