"""The pure parts, on plain data: transport, placement, statistics, budgets, baselines, profiles."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from pytest_browserml.browser import transport
from pytest_browserml.browser.launch import BrowserSetupError, ExecutionProvider
from pytest_browserml.budget import baselines, placement, profile, stats
from pytest_browserml.budget import limits as budgets
from pytest_browserml.results import Adapter, Environment, Memory, PlacedNode, Placement, RunResult, Transfer

# --- transport -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", sorted(transport.NUMPY_TYPES))
def test_every_type_round_trips_through_bytes(dtype):
    x = (np.arange(7) % 2).astype(transport.NUMPY_TYPES[dtype]).reshape(7, 1)
    specs, parts = transport.encode({"a": np.ones(3, np.int8), "x": x})
    payload = bytearray(b"".join(parts))
    assert all(spec["offset"] % 8 == 0 for spec in specs)
    y = transport.decode(specs, payload)["x"]
    assert y.dtype == x.dtype and y.shape == x.shape and np.array_equal(y, x) and y.flags.writeable


def test_strings_scalars_and_big_endian():
    specs, parts = transport.encode({"s": np.array(["a", "bc"]), "k": np.float64(2.5),
                                     "b": np.arange(3, dtype=">i4")})
    assert specs[0] == {"name": "s", "dtype": "string", "shape": [2], "values": ["a", "bc"]}
    decoded = transport.decode(specs, bytearray(b"".join(parts)))
    assert decoded["k"].shape == () and decoded["k"] == 2.5
    assert decoded["b"].tolist() == [0, 1, 2] and decoded["s"].tolist() == ["a", "bc"]


def test_transport_errors_name_the_tensor():
    with pytest.raises(transport.TransportError, match="input 'c' has dtype complex64"):
        transport.encode({"c": np.ones(2, np.complex64)})
    with pytest.raises(transport.TransportError, match="output 'y': payload does not hold"):
        transport.decode([{"name": "y", "dtype": "float32", "shape": [4], "offset": 0, "nbytes": 16}], bytearray(8))


# --- EPs ----------------------------------------------------------------------------


def test_ep_parsing():
    assert ExecutionProvider.parse("webnn:gpu").id == "webnn:gpu"
    with pytest.raises(BrowserSetupError, match="only webnn takes a device type"):
        ExecutionProvider.parse("webgpu:npu")


# --- placement ----------------------------------------------------------------------

PREFIX = "2026-11-21 10:55:18.248180 [V:onnxruntime:, session_state.cc:1383 VerifyEachNodeIsAssignedToAnEp]"
SPLIT_LOG = [
    f"{PREFIX} Node placements",
    f"{PREFIX}  Node(s) placed on [CPUExecutionProvider]. Number of nodes: 1",
    f"{PREFIX}   Det (det0)",
    f"{PREFIX}  Node(s) placed on [JsExecutionProvider]. Number of nodes: 4",
    f"{PREFIX}   Relu (relu0)",
    f"{PREFIX}   Neg (neg0)",
    f"{PREFIX}   MemcpyFromHost (Memcpy)",
    f"{PREFIX}   MemcpyToHost (Memcpy_token_0)",
]


def test_placement_of_a_split_graph():
    found = placement.parse(SPLIT_LOG, ("JsExecutionProvider",))
    assert found.nodes_per_provider == {"CPUExecutionProvider": 1, "JsExecutionProvider": 2}
    assert found.fallback_nodes == (PlacedNode("Det", "det0", "CPUExecutionProvider"),)
    assert found.fallback_count == 1 and found.requested_took_graph


def test_a_graph_folded_into_constants_has_no_nodes_and_is_not_a_fallback():
    found = placement.parse([f"{PREFIX} Node placements"], ("JsExecutionProvider",))
    assert found.fallback_count == 0 and found.requested_took_graph


def test_placement_when_the_ep_was_dropped():
    log = ['[W:onnxruntime:Default] removing requested execution provider "webgpu" from session options',
           f"{PREFIX}  All nodes placed on [CPUExecutionProvider]. Number of nodes: 4"]
    found = placement.parse(log, ("JsExecutionProvider",))
    assert found.fallback_count == 4 and not found.requested_took_graph
    assert found.dropped_providers == ("webgpu",)


SHAPE_LOG = [
    f"{PREFIX} Node placements",
    f"{PREFIX}  Node(s) placed on [CPUExecutionProvider]. Number of nodes: 5",
    f"{PREFIX}   Shape (shape0)",
    f"{PREFIX}   Gather (gather0)",
    f"{PREFIX}   Range (range0)",
    f"{PREFIX}   Gather (embedding)",
    f"{PREFIX}   Det (det0)",
    f"{PREFIX}  Node(s) placed on [JsExecutionProvider]. Number of nodes: 1",
    f"{PREFIX}   Relu (relu0)",
]


def test_shape_arithmetic_that_ort_keeps_on_the_cpu_is_not_compute_fallback():
    found = placement.parse(SHAPE_LOG, ("JsExecutionProvider",), shape_nodes=frozenset({"shape0", "gather0", "range0"}))
    assert [node.name for node in found.fallback_nodes] == ["embedding", "det0"] and found.fallback_count == 2
    assert [node.name for node in found.shape_fallback_nodes] == ["shape0", "gather0", "range0"]
    assert found.shape_fallback_count == 3


def test_fallback_and_shape_budgets_list_the_nodes_grouped_by_op_type():
    found = placement.parse(SHAPE_LOG, ("JsExecutionProvider",), shape_nodes=frozenset({"shape0", "gather0", "range0"}))
    result = dataclasses.replace(a_result(), placement=found)
    limits = budgets.resolve([budgets.BudgetLayer("marker on test_encoder", {"max_fallback_nodes": 1,
                                                                              "max_shape_nodes": 0})], "webgpu")
    assert budgets.check(result, limits) == [
        "fallback nodes 2 > budget 1 (marker on test_encoder, webgpu):\n"
        "  Det on CPUExecutionProvider: det0\n  Gather on CPUExecutionProvider: embedding",
        "shape-arithmetic nodes off the EP 3 > budget 0 (marker on test_encoder, webgpu):\n"
        "  Gather on CPUExecutionProvider: gather0\n  Range on CPUExecutionProvider: range0\n"
        "  Shape on CPUExecutionProvider: shape0",
    ]
    many = dataclasses.replace(found, fallback_nodes=tuple(PlacedNode("Gather", f"g{i}", "CPUExecutionProvider")
                                                           for i in range(40)), fallback_count=40)
    line = budgets.check(dataclasses.replace(result, placement=many), limits)[0]
    assert line.endswith("\n  Gather x40 on CPUExecutionProvider: g0, g1, g2, g3, g4, ... (35 more)")


def test_the_nodes_of_a_graph_that_compute_on_shapes_and_indices_only():
    from onnx import TensorProto, helper, numpy_helper

    from pytest_browserml.model import shape_arithmetic

    graph = helper.make_graph(
        [helper.make_node("Shape", ["x"], ["s"], name="shape0"),
         helper.make_node("Gather", ["s", "one"], ["n"], name="gather0", axis=0),
         helper.make_node("Range", ["zero", "n", "one"], ["positions"], name="range0"),
         helper.make_node("Gather", ["table", "positions"], ["rows"], name="embedding"),
         helper.make_node("ArgMax", ["x"], ["best"], name="argmax0")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])],
        [helper.make_tensor_value_info("rows", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("best", TensorProto.INT64, None)],
        initializer=[numpy_helper.from_array(np.array(1, np.int64), "one"),
                     numpy_helper.from_array(np.array(0, np.int64), "zero"),
                     numpy_helper.from_array(np.ones((8, 3), np.float32), "table")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    assert shape_arithmetic(model) == frozenset({"shape0", "gather0", "range0"})


def test_placement_on_wasm_counts_the_nodes_of_the_graph_and_its_subgraphs():
    from onnx import TensorProto, helper

    from pytest_browserml.model import node_count

    branch = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "branch", [],
                               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    graph = helper.make_graph(
        [helper.make_node("Not", ["c"], ["d"]),
         helper.make_node("If", ["d"], ["z"], then_branch=branch, else_branch=branch)], "g",
        [helper.make_tensor_value_info("c", TensorProto.BOOL, []), helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1])])
    found = placement.all_on(("CPUExecutionProvider",), node_count(graph))
    assert found.nodes_per_provider == {"CPUExecutionProvider": 4}
    assert found.fallback_count == 0 and found.requested_took_graph


# --- statistics ---------------------------------------------------------------------


def test_latency_statistics_use_pytest_benchmark_names():
    latency = stats.latency([4.0, 1.0, 3.0, 2.0, 100.0], session_create_ms=50.0, first_run_ms=9.0,
                            session_cached=False)
    assert (latency.min, latency.max, latency.median, latency.rounds) == (1.0, 100.0, 3.0, 5)
    assert latency.mean == 22.0 and latency.iqr == 2.0 and latency.p95 == pytest.approx(80.8)
    assert latency.p50 == latency.median
    assert stats.latency([], session_create_ms=None, first_run_ms=None, session_cached=True).median is None


@pytest.mark.parametrize("count", [1, 2, 3, 30, 101])
def test_latency_statistics_agree_with_numpy(count):
    times = np.random.default_rng(count).exponential(3.0, count)
    latency = stats.latency(times, session_create_ms=None, first_run_ms=None, session_cached=True)
    q1, median, q3, p95 = np.percentile(times, [25, 50, 75, 95])
    assert (latency.median, latency.p95, latency.iqr) == pytest.approx((median, p95, q3 - q1))
    assert (latency.mean, latency.stddev) == pytest.approx((times.mean(), times.std(ddof=1) if count > 1 else 0.0))


# --- budgets and baselines ----------------------------------------------------------


def a_result(ep="webgpu", p50=10.0, wasm=200 << 20, gpu=50 << 20, fallback=(), ort_web="1.30.0") -> RunResult:
    latency = stats.latency([p50] * 3, session_create_ms=100.0, first_run_ms=20.0, session_cached=False)
    return RunResult(
        model=Path("model.onnx"), model_sha256="0" * 64, ep=ep, inputs={}, outputs={}, latency=latency,
        memory=Memory(wasm=wasm, gpu_buffers=gpu if ep == "webgpu" else None, js_heap=None, process=1 << 30),
        placement=Placement({"JsExecutionProvider": 3}, tuple(fallback), len(fallback), ("JsExecutionProvider",)),
        environment=Environment(ep, "Chromium", "153.0", ort_web, "ort.all.min.mjs",
                                Adapter("google", "swiftshader", "", "", True, False) if ep == "webgpu" else None),
        transfer=Transfer(0, 0.0, 0, 0.0),
    )


@pytest.mark.parametrize("text, kind, value", [
    ("40 ms", "latency_p95", 40.0), ("2 s", "first_run", 2000.0), ("256 MB", "wasm_memory", 256 << 20),
    ("1.5 GiB", "gpu_memory", 1.5 * (1 << 30)), ("512kb", "js_heap", 512 << 10),
])
def test_budget_quantities(text, kind, value):
    assert budgets.resolve([budgets.BudgetLayer("here", {kind: text})], "wasm")[kind].limit == value


def test_budget_layers_and_ep_sections():
    project = budgets.BudgetLayer("project", {"latency_p95": "10 ms", "webgpu": {"latency_p95": "50 ms"}})
    marker = budgets.BudgetLayer("marker on test_x", {"latency_p95": "20 ms"})
    assert budgets.resolve([project], "webgpu")["latency_p95"].limit == 50.0
    assert budgets.resolve([project], "wasm")["latency_p95"].limit == 10.0
    chosen = budgets.resolve([project, marker], "webgpu")["latency_p95"]
    assert (chosen.limit, chosen.origin) == (20.0, "marker on test_x")


@pytest.mark.parametrize("settings, message", [
    ({"latency": "1 ms"}, "unknown budget 'latency' in marker; known: latency_p50"),
    ({"latency_p95": "fast"}, "budget 'latency_p95' = 'fast' in marker: expected a time such as"),
    ({"webgpu": {"gpu_memory": "lots"}}, "budget 'webgpu.gpu_memory' = 'lots' in marker: expected a size"),
    ({"max_fallback_nodes": -1}, "expected a whole number >= 0"),
])
def test_budget_errors_name_the_setting(settings, message):
    with pytest.raises(budgets.BudgetError, match=message.replace("(", r"\(")):
        budgets.BudgetLayer("marker", settings)


def test_budget_failure_lines():
    limits = budgets.resolve([budgets.BudgetLayer("marker on test_detector", {
        "latency_p95": "4 ms", "gpu_memory": "10 MB", "wasm_memory": "1 GB", "max_fallback_nodes": 0})], "webgpu")
    fallback = (PlacedNode("Det", "det0", "CPUExecutionProvider"),)
    lines = budgets.check(a_result(p50=61.2, fallback=fallback), limits)
    assert lines == [
        "latency p95 61.2 ms > budget 4 ms (marker on test_detector, webgpu)",
        "gpu buffer memory 50 MiB > budget 10 MiB (marker on test_detector, webgpu)",
        "fallback nodes 1 > budget 0 (marker on test_detector, webgpu):\n  Det on CPUExecutionProvider: det0",
    ]
    assert budgets.check(a_result(p50=61.2), limits, time_scale=20)[0:1] == [
        "gpu buffer memory 50 MiB > budget 10 MiB (marker on test_detector, webgpu)"]
    assert budgets.check(a_result(ep="wasm", p50=1.0), limits) == []  # no GPU budget on wasm


def test_baselines_save_compare_and_refuse(tmp_path):
    path = tmp_path / "base.json"
    baselines.save(path, [baselines.entry_of("t.py::test_x", a_result(p50=10.0))])
    saved = baselines.load(path)
    rules = [baselines.CompareRule.parse("p50:10%"), baselines.CompareRule.parse("gpu_memory:5%")]
    assert baselines.compare(saved, "base", "t.py::test_x", a_result(p50=10.5), rules) == []
    assert baselines.compare(saved, "base", "t.py::test_x", a_result(p50=13.0, gpu=60 << 20), rules) == [
        "latency p50 13 ms is 30% above baseline base's 10 ms (allowed 10%, webgpu)",
        "gpu buffer memory 60 MiB is 20% above baseline base's 50 MiB (allowed 5%, webgpu)",
    ]
    with pytest.raises(baselines.BaselineError, match="refusing to compare: ort_web '1.30.0' in the baseline, '1.31.0' now"):
        baselines.compare(saved, "base", "t.py::test_x", a_result(ort_web="1.31.0"), rules)
    with pytest.raises(baselines.BaselineError, match="has no figures for EP wasm"):
        baselines.compare(saved, "base", "t.py::test_x", a_result(ep="wasm"), rules)
    with pytest.raises(baselines.BaselineError, match="expected FIGURE:PERCENT%"):
        baselines.CompareRule.parse("p50")


# --- profiles -----------------------------------------------------------------------


def test_profile_summary_puts_the_slowest_node_first():
    events = [
        '{"cat":"Session","name":"model_run","dur":900}',
        '{"cat":"Node","name":"conv1_kernel_time","dur":300,"args":{"op_name":"Conv","provider":"JsExecutionProvider"}},',
        '{"cat":"Node","name":"conv1_kernel_time","dur":200,"args":{"op_name":"Conv","provider":"JsExecutionProvider"}},',
        '[{"cat":"Node","name":"det0_kernel_time","dur":50,"args":{"op_name":"Det","provider":"CPUExecutionProvider"}}]',
        "not json",
    ]
    summary = profile.parse(events, [{"kernelName": "conv1", "kernelType": "Conv", "startTime": 0, "endTime": 2_000_000}])
    assert [(n.name, n.op_type, n.calls, n.total_us) for n in summary.nodes] == [
        ("conv1", "Conv", 2, 500.0), ("det0", "Det", 1, 50.0)]
    assert summary.gpu_kernels[0].total_us == 2000.0
    assert "conv1" in summary.format().splitlines()[1]
