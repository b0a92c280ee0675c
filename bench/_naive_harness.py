"""The naive way to run ONNX test cases in a browser, for comparison with the plugin.

A new onnxruntime-web session per case and tensors as JSON number lists through
`page.evaluate`, in the same pinned Chromium (same switches), the same cached
onnxruntime-web bundle and the same kind of COOP/COEP server as the plugin.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from pytest_browserml.browser.transport import NUMPY_TYPES, ORT_TYPES

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>naive</title></head><body>naive</body></html>"""

LOAD = """async ({ortUrl, wasmPaths}) => {
  window.ort = await import(ortUrl);
  ort.env.wasm.wasmPaths = wasmPaths;
  return ort.env.versions?.web ?? null;
}"""

# One case: create a session, build the tensors from number lists, run, return number lists, release.
RUN = """async ({modelUrl, inputs}) => {
  const types = {float32: Float32Array, float64: Float64Array, float16: Uint16Array, int8: Int8Array,
                 uint8: Uint8Array, int16: Int16Array, uint16: Uint16Array, int32: Int32Array, uint32: Uint32Array,
                 int64: BigInt64Array, uint64: BigUint64Array, bool: Uint8Array};
  try {
    let started = performance.now();
    const session = await ort.InferenceSession.create(modelUrl, {executionProviders: ["wasm"]});
    const createMs = performance.now() - started;
    const feeds = {};
    for (const input of inputs) {
      let data;
      if (input.dtype === "string") data = input.data;
      else if (input.dtype === "int64" || input.dtype === "uint64") data = types[input.dtype].from(input.data, BigInt);
      else data = types[input.dtype].from(input.data);
      feeds[input.name] = new ort.Tensor(input.dtype, data, input.shape);
    }
    started = performance.now();
    const outputs = await session.run(feeds);
    const runMs = performance.now() - started;
    const result = {};
    for (const [name, tensor] of Object.entries(outputs)) {
      const data = tensor.type === "int64" || tensor.type === "uint64" ? Array.from(tensor.data, Number)
                                                                       : Array.from(tensor.data);
      result[name] = {dtype: tensor.type, shape: tensor.dims, data, bits: tensor.data instanceof Uint16Array};
    }
    await session.release();
    return {ok: true, outputs: result, createMs, runMs};
  } catch (error) {
    return {ok: false, error: String(error?.message ?? error)};
  }
}"""

# Session creation at a given ORT log level, with the console captured as the plugin's harness does.
CREATE_AT_LEVEL = """async ({modelUrl, level}) => {
  if (!window.__captured) {
    window.__captured = [];
    for (const name of ["log", "info", "warn", "error", "debug"]) {
      const original = console[name].bind(console);
      console[name] = (...args) => (window.__capture ? window.__captured.push(args.join(" ")) : original(...args));
    }
  }
  window.__captured.length = 0;
  window.__capture = true;
  const started = performance.now();
  try {
    const session = await ort.InferenceSession.create(modelUrl, {executionProviders: ["wasm"], logSeverityLevel: level,
                                                                 logVerbosityLevel: 0});
    const createMs = performance.now() - started;
    window.__capture = false;
    await session.release();
    return {ok: true, createMs, lines: window.__captured.length, chars: window.__captured.reduce((n, l) => n + l.length, 0)};
  } catch (error) {
    window.__capture = false;
    return {ok: false};
  }
}"""



def read_arrays(folder: Path):
    """(inputs, expected outputs) of data set 0 as numpy arrays by name, or None for cases with non-tensor values."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(folder / "model.onnx"), load_external_data=False).graph
    if any(value.type.WhichOneof("value") not in (None, "tensor_type") for value in [*graph.input, *graph.output]):
        return None
    initializers = {tensor.name for tensor in graph.initializer}
    input_names = [value.name for value in graph.input if value.name not in initializers]
    output_names = [value.name for value in graph.output]
    data_set = folder / "test_data_set_0"

    def tensors(kind, names):
        arrays = {}
        for k, name in enumerate(names):
            file = data_set / f"{kind}_{k}.pb"
            if not file.exists():
                break
            tensor = onnx.TensorProto()
            tensor.ParseFromString(file.read_bytes())
            arrays[name] = numpy_helper.to_array(tensor)
        return arrays

    inputs = tensors("input", input_names)
    if any(array.dtype.kind not in "OUS" and array.dtype not in ORT_TYPES for array in inputs.values()):
        return None  # bfloat16 and the like
    return inputs, tensors("output", output_names)


def read_case(folder: Path):
    """(input specs as JSON number lists, expected outputs) of data set 0, or None (see read_arrays)."""
    arrays = read_arrays(folder)
    if arrays is None:
        return None
    specs = []
    for name, array in arrays[0].items():
        if array.dtype.kind in "OUS":
            specs.append({"name": name, "dtype": "string", "shape": list(array.shape),
                          "data": [v.decode() if isinstance(v, bytes) else str(v) for v in array.reshape(-1)]})
            continue
        data = array.view(np.uint16) if array.dtype == np.float16 else array
        specs.append({"name": name, "dtype": ORT_TYPES[array.dtype], "shape": list(array.shape),
                      "data": data.reshape(-1).tolist()})
    return specs, arrays[1]


def outputs_match(answer: dict, expected: dict) -> bool:
    for name, golden in expected.items():
        got = answer["outputs"].get(name)
        if got is None:
            return False
        if got["dtype"] == "string":
            if list(got["data"]) != [v.decode() if isinstance(v, bytes) else str(v) for v in golden.reshape(-1)]:
                return False
            continue
        dtype = NUMPY_TYPES.get(got["dtype"])
        if dtype is None:
            return False
        bits = dtype == np.float16 and got.get("bits")
        raw = np.array(got["data"], dtype=np.uint16 if bits else dtype)
        array = (raw.view(np.float16) if bits else raw).reshape(got["shape"])
        if array.shape != golden.shape:
            return False
        if array.dtype.kind == "f":
            if not np.allclose(array, golden.astype(array.dtype), rtol=1e-4, atol=1e-4, equal_nan=True):
                return False
        elif not np.array_equal(array, golden):
            return False
    return True


class NaiveHarness:
    def __init__(self):
        from playwright.sync_api import sync_playwright

        from pytest_browserml.browser import provision
        from pytest_browserml.browser.launch import BrowserChoice, ExecutionProvider
        from pytest_browserml.browser.server import HarnessServer

        started = time.perf_counter()
        ort = provision.ort_web(provision.ORT_WEB_VERSION, fetch=False)
        self._tmp = tempfile.TemporaryDirectory()
        page_file = Path(self._tmp.name) / "naive.html"
        page_file.write_text(PAGE)
        self.server = HarnessServer(ort.dist)
        self._manager = sync_playwright()
        self.playwright = self._manager.start()
        # the plugin's own launch: pinned Chromium, QUIET_ARGS, --no-zygote, its library path
        self.browser = BrowserChoice.resolve(None, None, fetch=False).launch(self.playwright,
                                                                              ExecutionProvider.parse("wasm"))
        self.page = self.browser.new_page()
        self.page.goto(self.server.register_file("naive/naive.html", page_file))
        self.ort_version = self.page.evaluate(LOAD, {"ortUrl": self.server.url("ort/ort.all.min.mjs"),
                                                     "wasmPaths": self.server.url("ort/")})
        self.startup_s = time.perf_counter() - started

    def run_case(self, folder: Path) -> dict:
        """Read, run and compare one case; wall time in ms and the page's own create/run times."""
        started = time.perf_counter()
        case = read_case(folder)
        if case is None:
            return {"case": folder.name, "skipped": True, "wall_ms": (time.perf_counter() - started) * 1000}
        inputs, expected = case
        url = self.server.register_file(f"naive/{folder.name}/model.onnx", folder / "model.onnx")
        answer = self.page.evaluate(RUN, {"modelUrl": url, "inputs": inputs})
        passed = answer["ok"] and outputs_match(answer, expected)
        return {"case": folder.name, "skipped": False, "ok": answer["ok"], "passed": passed,
                "wall_ms": (time.perf_counter() - started) * 1000,
                "create_ms": answer.get("createMs"), "run_ms": answer.get("runMs")}

    def create_at_level(self, folder: Path, level: int) -> dict:
        url = self.server.register_file(f"naive/{folder.name}/model.onnx", folder / "model.onnx")
        return self.page.evaluate(CREATE_AT_LEVEL, {"modelUrl": url, "level": level})

    def close(self):
        self.browser.close()
        self._manager.__exit__(None, None, None)
        self.server.close()
        self._tmp.cleanup()
