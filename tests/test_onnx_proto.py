"""Reading ONNX files without `import onnx` (onnx_proto.py): the same tensors and models onnx reads."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pytest_browserml import model, onnx_proto
from pytest_browserml.browser import transport
from tests.generate_node_tests import main as generate_node_tests
from tests.test_onnx_suite import write_case


@pytest.fixture(scope="module")
def node_suite(tmp_path_factory):
    folder = tmp_path_factory.mktemp("node-suite")
    generate_node_tests([str(folder)])
    return folder / "node"


def assert_same_array(ours: np.ndarray, theirs: np.ndarray, where: str) -> None:
    assert (ours.dtype, ours.shape) == (theirs.dtype, theirs.shape), where
    if ours.dtype == object:
        assert ours.tolist() == theirs.tolist(), where
    else:
        np.testing.assert_array_equal(ours, theirs, err_msg=where, strict=True)


def test_cases_onnxruntime_web_cannot_feed_skip_without_importing_onnx(pytester):
    """A bfloat16, float8 or int4 input is a skip, and a bfloat16 golden waits for a run that could use it:
    converting either took onnx's import (0.6-1.1 s, ml_dtypes) in every xdist worker that met one."""
    cases = ["test_cast_BFLOAT16_to_FLOAT", "test_cast_FLOAT8E4M3FN_to_FLOAT", "test_cast_INT4_to_FLOAT",
             "test_cast_FLOAT_to_BFLOAT16"]  # the last: IR 14, a failure of its run
    generate_node_tests([str(pytester.path), *(arg for case in cases for arg in ("--pattern", case))])
    pytester.makeconftest("""
import sys

def pytest_sessionfinish(session):
    print("onnx imported:", "onnx" in sys.modules)
""")
    result = pytester.runpytest_subprocess("node", "--browser-ep", "wasm", "-s", "-p", "no:randomly", "-rs")
    outcomes = result.parseoutcomes()
    assert outcomes.get("skipped", 0) >= 3 and outcomes.get("skipped", 0) + outcomes.get("failed", 0) == 4, outcomes
    result.stdout.fnmatch_lines([
        "*test_cast_BFLOAT16_to_FLOAT: input 'input' has dtype bfloat16, which onnxruntime-web cannot take (it takes*",
        "*test_cast_FLOAT8E4M3FN_to_FLOAT: input 'input' has dtype float8_e4m3fn, which*",
        "*test_cast_INT4_to_FLOAT: input 'input' has dtype int4, which*",
    ])
    result.stdout.fnmatch_lines(["*onnx imported: False*"])


def test_the_names_of_types_numpy_lacks_are_onnxs_and_no_tensor_of_the_transport():
    """Skipping such an input unread is what encode would have said of it read (transport.ORT_TYPES)."""
    for name, data_type in TensorProto.DataType.items():
        if data_type == TensorProto.UNDEFINED or data_type in onnx_proto.NUMPY_DTYPES:
            continue
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(data_type))
        assert onnx_proto.TYPE_NAMES.get(data_type) == str(dtype), name
        assert dtype not in transport.ORT_TYPES and str(dtype) not in transport.NUMPY_TYPES, name


def test_every_tensor_of_onnxs_node_suite_reads_as_onnx_reads_it(node_suite):
    files = sorted(node_suite.glob("*/test_data_set_*/*.pb"))
    assert len(files) > 3000
    for file in files:
        ours = onnx_proto.read_tensor(file)
        assert ours == onnx.load_tensor(str(file)), file
        try:
            theirs = numpy_helper.to_array(ours)
        except Exception:  # a sequence or optional value's file: not a tensor to either
            with pytest.raises(Exception):
                onnx_proto.to_array(ours)
            continue
        assert_same_array(onnx_proto.to_array(ours), theirs, str(file))


@pytest.mark.parametrize("data_type", sorted(onnx_proto.NUMPY_DTYPES))
def test_a_tensor_of_each_numpy_type_kept_in_onnxs_typed_fields_reads_as_onnx_reads_it(data_type):
    values = {TensorProto.STRING: [b"a", b"\xc3\xa9", b""], TensorProto.BOOL: [True, False, True],
              TensorProto.COMPLEX64: [1 + 2j, -3j, 0.5], TensorProto.COMPLEX128: [1 + 2j, -3j, 0.5],
              TensorProto.FLOAT16: [1.5, -2.0, 65504.0]}.get(data_type, [1, 0, 7])
    for raw in (False, True):
        if raw and data_type == TensorProto.STRING:
            continue
        tensor = helper.make_tensor("t", data_type, [3, 1], values, raw=raw) if not raw else \
            numpy_helper.from_array(numpy_helper.to_array(helper.make_tensor("t", data_type, [3, 1], values)))
        assert_same_array(onnx_proto.to_array(tensor), numpy_helper.to_array(tensor), f"type {data_type}, raw {raw}")


def test_types_numpy_lacks_are_read_by_onnx_itself():
    tensor = helper.make_tensor("t", TensorProto.BFLOAT16, [2], [1.0, -2.5])
    array = onnx_proto.to_array(tensor)
    assert str(array.dtype) == "bfloat16" and array.astype(np.float32).tolist() == [1.0, -2.5]


def test_every_model_of_onnxs_node_suite_reads_as_onnx_reads_it(node_suite):
    for file in sorted(node_suite.glob("*/model.onnx")):
        assert onnx_proto.load_model(file) == onnx.load(str(file), load_external_data=False), file


def test_external_data_files_are_found_in_initializers_and_in_subgraphs_constants(tmp_path):
    weight = numpy_helper.from_array(np.ones((64, 64), np.float32), "w")
    constant = helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.ones(512, np.float32), "c"))
    branch = helper.make_graph([constant], "branch", [], [helper.make_tensor_value_info("c", TensorProto.FLOAT, [512])])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"]),
         helper.make_node("If", ["cond"], ["z"], then_branch=branch, else_branch=branch)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64]),
         helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, [512])], [weight])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(proto, str(tmp_path / "n.onnx"), save_as_external_data=True, all_tensors_to_one_file=False,
              size_threshold=0, convert_attribute=True)  # one file a tensor, named after it
    assert model.read(tmp_path / "n.onnx").external_data == ("c", "w")


def test_test_data_folders_and_browserml_tests_run_without_importing_onnx(pytester):
    """Importing onnx costs each process (each xdist worker) 0.6-1.1 s before its first test: ml_dtypes."""
    write_case(pytester.path / "cases" / "abs")
    pytester.makeconftest("""
import sys

def pytest_sessionfinish(session):
    print("onnx imported:", "onnx" in sys.modules, "; ml_dtypes imported:", "ml_dtypes" in sys.modules)
""")
    pytester.makepyfile(test_model="""
import numpy as np

def test_model(browserml):
    x = np.ones((2, 3), np.float32)
    assert browserml.run("cases/abs/model.onnx", {"x0": -x}).outputs["y"].tolist() == x.tolist()
""")
    result = pytester.runpytest_subprocess("--browser-ep", "wasm", "-s", "-p", "no:randomly")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*onnx imported: False ; ml_dtypes imported: False*"])
