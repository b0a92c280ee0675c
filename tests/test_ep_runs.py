"""Real models on every EP in a real browser, against native onnxruntime on the CPU.

These use the plugin's own `browserml` fixture, so each runs once per EP of
the project's `browserml_eps` (wasm, webgpu, webnn; strict).
"""

from __future__ import annotations

import numpy as np
import pytest

from pytest_browserml import ModelRunError
from tests import modelzoo

RNG = np.random.default_rng(7)
# Per EP: wasm and webnn as ORT-web's own runner allows; SwiftShader WebGPU a little looser.
ATOL = {"wasm": 1e-4, "webnn": 1e-4, "webgpu": 1e-3}


def assert_matches_reference(result, model, feeds, rtol=1e-4):
    expected = modelzoo.reference(model, feeds)
    assert set(result.outputs) == set(expected)
    for name, want in expected.items():
        got = result.outputs[name]
        assert got.dtype == want.dtype and got.shape == want.shape, name
        np.testing.assert_allclose(got, want, rtol=rtol, atol=ATOL[result.ep.split(":")[0]], err_msg=name)


def test_conv(browserml, models):
    feeds = {"x": RNG.standard_normal((1, 3, 16, 16)).astype(np.float32)}
    result = browserml.run(models["conv"], feeds, warmup=1, iterations=3)
    assert_matches_reference(result, models["conv"], feeds)
    assert result.latency.rounds == 3 and result.latency.session_create > 0
    assert result.placement.fallback_count == 0


def test_matmul_with_dynamic_batch(browserml, models):
    """One session serves every batch size; on WebNN (static shapes only) one session per batch size."""
    for batch in (1, 7, 7):
        feeds = {"x": RNG.standard_normal((batch, 64)).astype(np.float32)}
        result = browserml.run(models["matmul"], feeds, warmup=0, iterations=1)
        assert_matches_reference(result, models["matmul"], feeds)
    assert result.latency.session_cached


def test_int64_inputs_and_outputs(browserml, models):
    feeds = {"ids": np.array([3, 0, 9, 3, 5], dtype=np.int64)}
    result = browserml.run(models["embedding"], feeds, warmup=0, iterations=1)
    assert_matches_reference(result, models["embedding"], feeds)
    assert result.outputs["total"].dtype == np.int64 and result.outputs["total"].shape == ()


def test_several_outputs_of_several_dtypes(browserml, models):
    feeds = {"x": RNG.standard_normal((4, 5)).astype(np.float32)}
    result = browserml.run(models["multi_output"], feeds, warmup=0, iterations=1)
    assert_matches_reference(result, models["multi_output"], feeds)
    assert [result.outputs[name].dtype for name in ("prob", "label", "positive")] == [np.float32, np.int64, np.bool_]


def test_float16(browserml, models):
    """float16 works on wasm and webnn; WebGPU without shader-f16 must fail loudly, never return silent zeros."""
    feeds = {"x": RNG.standard_normal((2, 64)).astype(np.float16)}
    try:
        result = browserml.run(models["matmul_fp16"], feeds, warmup=0, iterations=1)
    except ModelRunError as error:
        assert browserml.ep == "webgpu", error
        assert "has no shader-f16: float16 models cannot run on it" in str(error)
        return
    adapter = browserml.adapter
    assert not (adapter and not adapter.shader_f16), "a float16 result from an adapter without shader-f16"
    expected = modelzoo.reference(models["matmul_fp16"], feeds)["y"]
    assert result.outputs["y"].dtype == np.float16
    np.testing.assert_allclose(result.outputs["y"].astype(np.float32), expected.astype(np.float32), atol=2e-2, rtol=1e-2)


def test_external_data(browserml, models):
    feeds = {"x": RNG.standard_normal((1, 256)).astype(np.float32)}
    result = browserml.run(models["external"], feeds, warmup=0, iterations=1)
    assert_matches_reference(result, models["external"], feeds, rtol=1e-3)


def test_placement_names_the_nodes_that_fell_back(browserml, models):
    result = browserml.run(models["det"], {"x": np.eye(3, dtype=np.float32) * 2}, warmup=0, iterations=1)
    np.testing.assert_allclose(result.outputs["y"], -8.0, rtol=1e-5)
    if browserml.ep == "wasm":
        assert result.placement.nodes_per_provider == {"CPUExecutionProvider": 3}
        assert result.placement.fallback_count == 0
    elif browserml.ep == "webgpu":  # the WebGPU EP has no Det kernel
        assert [(node.op_type, node.name) for node in result.placement.fallback_nodes] == [("Det", "det0")]
        assert result.placement.nodes_per_provider["WebGpuExecutionProvider"] == 2


def test_memory_figures(browserml, models):
    result = browserml.run(models["conv"], {"x": np.zeros((1, 3, 16, 16), np.float32)}, warmup=0, iterations=1)
    assert result.memory.wasm and result.memory.wasm >= 1 << 20
    assert (result.memory.gpu_buffers is not None) == (browserml.ep == "webgpu")
    if browserml.ep == "webgpu":
        assert result.memory.gpu_buffers >= 8 * 3 * 3 * 3 * 4  # at least the conv weights


def test_conv_without_dilations_runs_on_every_ep(browserml, models):
    """A lone Conv without `dilations` (ORT-web 1.30's JSEP rejects it, see test_gpu.py) runs on the native EP."""
    feeds = {"x": RNG.standard_normal((1, 3, 16, 16)).astype(np.float32)}
    result = browserml.run(models["conv_no_dilations"], feeds, warmup=0, iterations=1)
    assert_matches_reference(result, models["conv_no_dilations"], feeds)


@pytest.mark.browser_ep("wasm")
@pytest.mark.parametrize(
    "dtype", ["float32", "float64", "float16", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64",
              "uint64", "bool"]
)
@pytest.mark.parametrize("shape", [(), (0, 3), (2, 3, 4)], ids=["scalar", "zero-size", "3d"])
def test_every_dtype_round_trips_exactly(browserml, tmp_path, dtype, shape):
    from onnx import helper

    elem_type = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    model = modelzoo.identity(tmp_path / "identity.onnx", elem_type, shape=[f"d{i}" for i in range(len(shape))])
    values = RNG.integers(0, 100, size=shape) if dtype != "bool" else RNG.integers(0, 2, size=shape)
    x = np.asarray(values).astype(dtype)
    if dtype.startswith("float") and x.size:
        x.flat[0] = -0.0 if dtype != "float16" else np.float16(65504)
    result = browserml.run(model, {"x": x}, warmup=0, iterations=1)
    y = result.outputs["y"]
    assert y.dtype == x.dtype and y.shape == x.shape and y.tobytes() == x.tobytes()


@pytest.mark.browser_ep("wasm")
def test_large_tensor_goes_over_http_and_round_trips(browserml, tmp_path):
    model = modelzoo.identity(tmp_path / "identity.onnx")
    x = RNG.standard_normal(1 << 20).astype(np.float32)  # 4 MB: beyond the inline limit
    result = browserml.run(model, {"x": x}, warmup=0, iterations=1)
    assert np.array_equal(result.outputs["y"], x)
    assert result.transfer.input_bytes == x.nbytes == result.transfer.output_bytes


@pytest.mark.browser_ep("wasm")
def test_an_input_the_browser_cannot_take_names_it(browserml, models):
    with pytest.raises(ValueError, match="input 'x' has dtype complex64, which onnxruntime-web cannot take"):
        browserml.run(models["add"], {"x": np.ones((2, 3), np.complex64)})
