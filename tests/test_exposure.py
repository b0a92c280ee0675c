"""Model surgery for localisation, checked with native onnxruntime (no browser)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from pytest_browserml.golden import exposure, reference

X = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
Y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])


def save(path, nodes, outputs=(Y,), initializers=(), external=False):
    graph = helper.make_graph(nodes, "g", [X], list(outputs), initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if external:
        onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location="weights.bin", size_threshold=0)
    else:
        onnx.save(model, str(path))
    return path


def chain_model(path, external=False):
    weight = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "w")
    return save(path, [
        helper.make_node("Add", ["x", "w"], ["a"], name="add"),
        helper.make_node("Relu", ["a"], ["r"], name="relu"),
        helper.make_node("Mul", ["r", "w"], ["y"], name="mul"),
    ], initializers=[weight], external=external)


def test_every_intermediate_value_becomes_an_output_of_a_copy_that_runs(tmp_path):
    model = chain_model(tmp_path / "m.onnx")
    graph = exposure.read(model)
    assert [(n.index, n.name, n.op_type) for n in graph.nodes] == [(0, "add", "Add"), (1, "relu", "Relu"),
                                                                   (2, "mul", "Mul")]
    assert graph.exposable == ("a", "r") and graph.outputs == ("y",) and not graph.skipped
    assert graph.exposed_bytes == 2 * 6 * 4  # two float32 [2, 3] values
    x = np.linspace(-5, 5, 6, dtype=np.float32).reshape(2, 3)
    with exposure.exposed_copy(model, graph.exposable) as copy:
        outputs = reference.outputs(copy, {"x": x}, cache=False)
    assert not copy.exists()  # removed when done
    assert set(outputs) == {"y", "a", "r"}
    np.testing.assert_allclose(outputs["r"], np.maximum(x + np.arange(6).reshape(2, 3), 0))
    assert onnx.load(str(model)).graph.output[0].name == "y" and len(onnx.load(str(model)).graph.output) == 1


def test_external_data_stays_external_and_the_copy_reads_the_same_file(tmp_path):
    model = chain_model(tmp_path / "m.onnx", external=True)
    graph = exposure.read(model)
    assert graph.has_external_data
    with exposure.exposed_copy(model, graph.exposable) as copy:
        assert copy.parent == tmp_path and copy.name.startswith(".m.browserml-exposed-")
        assert copy.stat().st_size < 1000  # the weights were not copied in
        outputs = reference.outputs(copy, {"x": np.zeros((2, 3), np.float32)}, cache=False)
    np.testing.assert_array_equal(outputs["a"], np.arange(6, dtype=np.float32).reshape(2, 3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "weights.bin"]


def test_a_prefix_ends_at_the_node_and_keeps_only_what_it_needs(tmp_path):
    model = chain_model(tmp_path / "m.onnx")
    graph = exposure.read(model)
    with exposure.prefix_copy(model, graph.nodes[1]) as copy:
        cut = onnx.load(str(copy))
        outputs = reference.outputs(copy, {"x": np.ones((2, 3), np.float32)}, cache=False)
    assert [n.name for n in cut.graph.node] == ["add", "relu"]
    assert [o.name for o in cut.graph.output] == ["r"] and [i.name for i in cut.graph.input] == ["x"]
    np.testing.assert_array_equal(outputs["r"], 1 + np.arange(6, dtype=np.float32).reshape(2, 3))


def test_values_in_subgraphs_and_of_unknown_type_are_skipped_with_the_reason(tmp_path):
    branch = helper.make_graph([helper.make_node("Neg", ["x"], ["inner"], name="neg")], "then", [],
                               [helper.make_tensor_value_info("inner", TensorProto.FLOAT, [2, 3])])
    other = helper.make_graph([helper.make_node("Abs", ["x"], ["inner2"], name="abs")], "else", [],
                              [helper.make_tensor_value_info("inner2", TensorProto.FLOAT, [2, 3])])
    model = save(tmp_path / "m.onnx", [
        helper.make_node("ReduceSum", ["x"], ["s"], name="sum", keepdims=0),
        helper.make_node("Greater", ["s", "zero"], ["positive"], name="test"),
        helper.make_node("If", ["positive"], ["chosen"], name="choose", then_branch=branch, else_branch=other),
        helper.make_node("Mystery", ["chosen"], ["odd"], name="custom", domain="example.custom"),
        helper.make_node("Identity", ["odd"], ["z"], name="pass_on"),
        helper.make_node("Identity", ["chosen"], ["y"], name="out"),
    ], outputs=(Y, helper.make_tensor_value_info("z", TensorProto.FLOAT, None)),
        initializers=[numpy_helper.from_array(np.array(0, np.float32), "zero")])
    model_proto = onnx.load(str(model))
    model_proto.opset_import.append(helper.make_opsetid("example.custom", 1))
    onnx.save(model_proto, str(model))
    graph = exposure.read(model)
    assert "s" in graph.exposable and "positive" in graph.exposable
    skipped = dict(graph.skipped)
    assert skipped["inner"] == "inside the subgraph of If 'choose'"
    assert skipped["odd"] == "type unknown after shape inference"
    notes = " ".join(graph.notes())
    assert "2 values not exposed (inside the subgraph of If 'choose'): " in notes
