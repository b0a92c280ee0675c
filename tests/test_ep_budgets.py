"""Budgets and measurements on every EP, in a real browser."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest

from pytest_browserml.browser.launch import ExecutionProvider
from pytest_browserml.budget.limits import BudgetExceeded
from tests import modelzoo

MB = 10**6


@pytest.fixture(scope="module")
def big_model(tmp_path_factory):
    """100 MB of weights, kept as external data the way large web models ship."""
    folder = tmp_path_factory.mktemp("big")
    inline = modelzoo.big_weights(folder / "inline.onnx", megabytes=100)
    (folder / "external").mkdir()
    path = folder / "external" / "big.onnx"
    onnx.save(onnx.load(str(inline)), str(path), save_as_external_data=True, location="big.weights", size_threshold=0)
    return path


@pytest.mark.browser_ep("wasm", "webgpu")
@pytest.mark.budget(wasm_memory="1 GB", gpu_memory="1 GB")  # a page of its own: earlier tests' memory is not in it
def test_memory_holding_100_mb_of_weights_is_measured(browserml, big_model):
    n = 5000
    result = browserml.run(big_model, {"x": np.ones((1, n), np.float32)}, warmup=0, iterations=1)
    np.testing.assert_allclose(result.outputs["y"], np.full((1, n), n * 1e-3, np.float32), rtol=1e-3)
    measured = result.memory.wasm if browserml.ep == "wasm" else result.memory.gpu_buffers
    assert 100 * MB <= measured < 250 * MB, f"{measured / MB:.1f} MB"


@pytest.mark.budget(max_fallback_nodes=0)
def test_fallback_budget_fails_where_an_op_falls_back(browserml, models):
    """Det has no WebGPU (and no WebNN) kernel: ORT puts it on the CPU, which the budget forbids."""
    x = {"x": np.eye(3, dtype=np.float32)}
    if browserml.ep == "wasm":
        browserml.run(models["det"], x, warmup=0, iterations=1)
        return
    with pytest.raises(BudgetExceeded, match=r"fallback nodes 1 > budget 0 \(marker on test_fallback_budget.*\):\n"
                                             r"  Det on CPUExecutionProvider: det0"):
        browserml.run(models["det"], x, warmup=0, iterations=1)


@pytest.mark.browser_ep("webgpu")
@pytest.mark.budget(max_fallback_nodes=0)
def test_shape_arithmetic_ort_keeps_on_the_cpu_is_not_compute_fallback(browserml, tmp_path):
    x = np.ones((1, 5, 4), np.float32)
    result = browserml.run(modelzoo.positions(tmp_path / "positions.onnx"), {"x": x}, warmup=0, iterations=1)
    placement = result.placement
    assert placement.fallback_count == 0 and placement.shape_fallback_count >= 2
    assert {node.op_type for node in placement.shape_fallback_nodes} <= {"Shape", "Gather", "Range"}
    with pytest.raises(BudgetExceeded, match=r"shape-arithmetic nodes off the EP \d > budget 0 .*:\n"
                                             r"  Gather on CPUExecutionProvider: gather_n\n"):
        from pytest_browserml.budget import limits as budgets

        limits = budgets.resolve([budgets.BudgetLayer("marker", {"max_shape_nodes": 0})], browserml.ep)
        raise BudgetExceeded("\n".join(budgets.check(result, limits)))


@pytest.mark.browser_ep("webgpu", "webnn")
def test_an_ep_that_takes_no_node_fails_the_run(browserml, tmp_path):
    from pytest_browserml import ModelRunError

    with pytest.raises(ModelRunError, match=f"{browserml.ep} did not take the graph; ORT placed 1 node"):
        browserml.run(modelzoo.det_only(tmp_path / "det_only.onnx"), {"x": np.eye(3, dtype=np.float32)},
                      warmup=0, iterations=1)


@pytest.mark.browser_ep("webgpu", "webnn")
@pytest.mark.budget(min_ep_nodes=0)
def test_a_budget_can_allow_an_ep_that_takes_no_node(browserml, tmp_path):
    result = browserml.run(modelzoo.det_only(tmp_path / "det_only.onnx"), {"x": np.eye(3, dtype=np.float32)},
                           warmup=0, iterations=1)
    assert result.placement.requested_nodes == 0 and result.placement.fallback_count == 1
    assert result.outputs["y"] == pytest.approx(1.0)


@pytest.mark.browser_ep("webgpu")
def test_placement_of_the_same_model_as_onnx_and_as_ort(browserml, models, tmp_path):
    """ORT-format models report placement too: .onnx and .ort side by side on webgpu."""
    source = tmp_path / "conv.onnx"
    source.write_bytes(models["conv"].read_bytes())
    subprocess.run([sys.executable, "-m", "onnxruntime.tools.convert_onnx_models_to_ort", str(source),
                    "--optimization_style", "Runtime"], check=True, capture_output=True)
    (ort_model,) = tmp_path.glob("*.ort")
    x = {"x": np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)}
    as_onnx = browserml.run(source, x, warmup=0, iterations=1)
    as_ort = browserml.run(ort_model, x, warmup=0, iterations=1)
    np.testing.assert_allclose(as_ort.outputs["y"], as_onnx.outputs["y"], atol=1e-5)
    (provider,) = ExecutionProvider.parse(browserml.ep).provider_names()  # the native EP's or JSEP's name
    for result in (as_onnx, as_ort):
        assert result.placement.fallback_count == 0
        assert result.placement.nodes_per_provider[provider] >= 2


@pytest.mark.budget(latency_p95="60 s", first_run="60 s", session_create="120 s", wasm_memory="2 GB",
                    gpu_memory="2 GB", js_heap="2 GB", process_memory="64 GB", max_fallback_nodes=0)
def test_generous_budgets_pass(browserml, models):
    browserml.run(models["conv"], {"x": np.zeros((1, 3, 16, 16), np.float32)}, warmup=1, iterations=3)


@pytest.mark.parametrize("label", [
    pytest.param("latency p95", marks=pytest.mark.budget(latency_p95="0.0001 ms")),
    pytest.param("first run", marks=pytest.mark.budget(first_run="0.0001 ms")),
    pytest.param("wasm memory", marks=pytest.mark.budget(wasm_memory="1 KB")),
    pytest.param("gpu buffer memory", marks=pytest.mark.budget(gpu_memory="1 B")),
    pytest.param("js heap", marks=pytest.mark.budget(js_heap="1 KB")),
    pytest.param("browser process memory", marks=pytest.mark.budget(process_memory="1 MB")),
])
def test_tight_budgets_fail_with_the_figure_named(browserml, models, label):
    feeds = {"x": np.zeros((1, 3, 16, 16), np.float32)}
    if label == "gpu buffer memory" and browserml.ep != "webgpu":  # no GPU buffers off webgpu: not held to it
        browserml.run(models["conv"], feeds, warmup=0, iterations=2)
        return
    with pytest.raises(BudgetExceeded, match=f"{label} .* > budget"):
        browserml.run(models["conv"], feeds, warmup=0, iterations=2)
