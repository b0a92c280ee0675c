"""The proof on a real GPU: models x {wasm, webgpu (native EP), webgpu:jsep} x {SwiftShader, GPU}.

For each model and EP it prints the verdict under the built-in tolerances, the worst output's max abs error
against native onnxruntime (CPU, same model file and inputs), p50 and first run (ms, in the page), and writes
every output's error figures to a JSON (the data behind the float16 WebGPU tolerances, see README).

    python bench/bench_gpu.py prepare DIR [--wheels WHEELS]   # here: build the model set (+ real models from wheels)
    python bench/bench_gpu.py run DIR [--adapters swiftshader hardware] [--json FILE]

`prepare` needs onnx (and onnxconverter-common for the float16 copies of real models); `run` needs only the
plugin. bench/gpu_prepare.sh and bench/gpu_run.sh carry it all to a GPU machine without network.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, settings  # noqa: E402

from pytest_browserml.browser.launch import BrowserSetupError, ExecutionProvider, webgpu_plan  # noqa: E402
from pytest_browserml.golden import reference
from pytest_browserml.golden.compare import compare_outputs  # noqa: E402
from pytest_browserml.golden.tolerances import BUILTIN, resolve  # noqa: E402
from pytest_browserml.runner import ModelRunError, Runtime  # noqa: E402

EPS = ("wasm", "webgpu", "webgpu:jsep")
# Real models shipped inside PyPI wheels (`pip download --no-deps rapidocr-onnxruntime==1.4.4 silero-vad==6.2.3`),
# with the input shapes they run at here.
WHEEL_MODELS = {
    "ch_PP-OCRv4_det_infer.onnx": ("text_detector", {"x": (1, 3, 160, 160)}),
    "ch_ppocr_mobile_v2.0_cls_infer.onnx": ("text_classifier", {"x": (1, 3, 48, 192)}),
    "ch_PP-OCRv4_rec_infer.onnx": ("text_recognizer", {"x": (1, 3, 48, 160)}),
    "silero_vad.onnx": ("recurrent_vad", {"input": (1, 512), "state": (2, 1, 128), "sr": ()}),
    "silero_vad_half.onnx": ("recurrent_vad_half", {"input": (1, 512), "state": (2, 1, 128)}),
}
NO_FLOAT16_COPY = {"recurrent_vad", "recurrent_vad_half"}  # If subgraphs do not convert; half is float16 already
NO_FLOAT32_COPY = {"text_recognizer"}  # only its float16 copy travels (the device tool's 64 MiB a call)


# --- prepare (here) -----------------------------------------------------------------------------------------------

def prepare(folder: Path, wheels: Path | None) -> None:
    """Models and their inputs: `<name>.onnx` and `<name>.inputs.npz`, listed in models.json."""
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for dtype, suffix in ((np.float32, "fp32"), (np.float16, "fp16")):
        made[f"matmul_8x4096x512_{suffix}"] = (_matmul(folder / f"matmul_8x4096x512_{suffix}.onnx", dtype),
                                               {"x": _uniform((8, 4096), dtype)})
        made[f"conv_net_64_{suffix}"] = (_conv_net(folder / f"conv_net_64_{suffix}.onnx", dtype),
                                         {"x": _uniform((1, 3, 64, 64), dtype)})
    for dtype, suffix in ((np.float32, ""), (np.float16, "_fp16")):
        image = _uniform((1, 3, 64, 64), dtype)
        made[f"example_tiny_cnn{suffix}"] = (ROOT / "examples" / "models" / f"tiny_cnn{suffix}.onnx", {"image": image})
    made["attention_fp16"] = (_attention(folder / "attention_fp16.onnx"), {"x": _uniform((1, 64, 128), np.float16) - 0.5})
    # the example suite's own input: the street picture, as examples/test_tiny_cnn.py feeds it
    from pytest_browserml.images import image_input

    street = image_input(ROOT / "examples" / "data" / "street.png", size=(64, 64), mean=[0.485, 0.456, 0.406],
                         std=[0.229, 0.224, 0.225], dtype="float16")
    made["example_tiny_cnn_fp16_street"] = (ROOT / "examples" / "models" / "tiny_cnn_fp16.onnx", {"image": street})
    for wheel in sorted(wheels.glob("*.whl")) if wheels else ():
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                if Path(member).name in WHEEL_MODELS:
                    name, shapes = WHEEL_MODELS[Path(member).name]
                    path = _symbolic_dims(archive.read(member), folder / f"{name}.onnx")
                    feeds = {key: (np.array(16000, np.int64) if key == "sr" else _uniform(shape, np.float32))
                             for key, shape in shapes.items()}
                    if name not in NO_FLOAT32_COPY:
                        made[name] = (path, feeds)
                    if name not in NO_FLOAT16_COPY:
                        made[f"{name}_fp16"] = (_float16_copy(path, folder / f"{name}_fp16.onnx"),
                                                {key: value.astype(np.float16) for key, value in feeds.items()})
    listing = {}
    for name, (path, feeds) in made.items():
        np.savez(folder / f"{name}.inputs.npz", **feeds)
        target = folder / path.name
        if path.resolve() != target.resolve():
            target.write_bytes(path.read_bytes())
        listing[name] = target.name
    for name in NO_FLOAT32_COPY:
        (folder / f"{name}.onnx").unlink(missing_ok=True)
    (folder / "models.json").write_text(json.dumps(listing, indent=1))
    print(f"prepared {len(listing)} models in {folder}: {', '.join(listing)}")


def _uniform(shape, dtype) -> np.ndarray:
    return np.random.default_rng(16).uniform(0, 1, shape).astype(dtype)


def _matmul(path: Path, dtype) -> Path:
    import onnx
    from onnx import helper, numpy_helper

    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    weights = (np.random.default_rng(7).standard_normal((4096, 512)) * 0.03).astype(dtype)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "matmul",
                              [helper.make_tensor_value_info("x", elem, [8, 4096])],
                              [helper.make_tensor_value_info("y", elem, [8, 512])],
                              initializer=[numpy_helper.from_array(weights, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def _attention(path: Path) -> Path:
    """One float16 self-attention block (LayerNorm, Q/K/V, Softmax(QK^T/sqrt(d))V, output projection):
    a transformer's kernels at a small size."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng, width = np.random.default_rng(5), 128
    weights = [numpy_helper.from_array((rng.standard_normal((width, width)) / width ** 0.5).astype(np.float16), name)
               for name in ("wq", "wk", "wv", "wo")]
    weights += [numpy_helper.from_array(np.ones(width, np.float16), "gamma"),
                numpy_helper.from_array(np.zeros(width, np.float16), "beta"),
                numpy_helper.from_array(np.array(width ** -0.5, np.float16), "scale")]
    nodes = [helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["n"], axis=-1),
             *(helper.make_node("MatMul", ["n", f"w{k}"], [k]) for k in "qkv"),
             helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["q", "kt"], ["scores"]),
             helper.make_node("Mul", ["scores", "scale"], ["scaled"]),
             helper.make_node("Softmax", ["scaled"], ["weights"], axis=-1),
             helper.make_node("MatMul", ["weights", "v"], ["mixed"]),
             helper.make_node("MatMul", ["mixed", "wo"], ["y"])]
    graph = helper.make_graph(nodes, "attention", [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 64, width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [1, 64, width])],
                              initializer=weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def _conv_net(path: Path, dtype) -> Path:
    """Conv-Relu x3 on 64x64, then global pool and Softmax: a float16 image model's kernels."""
    import onnx
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(11)
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    channels, nodes, weights, previous = [3, 16, 32, 32], [], [], "x"
    for i in range(3):
        weights += [numpy_helper.from_array((rng.standard_normal((channels[i + 1], channels[i], 3, 3))
                                             * (2 / (9 * channels[i])) ** 0.5).astype(dtype), f"w{i}"),
                    numpy_helper.from_array((rng.standard_normal(channels[i + 1]) * 0.05).astype(dtype), f"b{i}")]
        nodes += [helper.make_node("Conv", [previous, f"w{i}", f"b{i}"], [f"c{i}"], kernel_shape=[3, 3],
                                   pads=[1, 1, 1, 1], dilations=[1, 1], strides=[1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
        previous = f"r{i}"
    nodes += [helper.make_node("GlobalAveragePool", [previous], ["pooled"]),
              helper.make_node("Flatten", ["pooled"], ["features"]),
              helper.make_node("Softmax", ["features"], ["y"], axis=1)]
    graph = helper.make_graph(nodes, "conv_net", [helper.make_tensor_value_info("x", elem, [1, 3, 64, 64])],
                              [helper.make_tensor_value_info("y", elem, [1, 32])], initializer=weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def _symbolic_dims(data: bytes, path: Path) -> Path:
    """PaddlePaddle writes dynamic dimensions as -1; give them symbols, as other exporters do."""
    import onnx

    model = onnx.load_from_string(data)
    for value in [*model.graph.input, *model.graph.output]:
        for index, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.HasField("dim_value") and dim.dim_value < 0:
                dim.dim_param = f"{value.name}_{index}"
    onnx.save(model, str(path))
    return path


def _float16_copy(source: Path, path: Path) -> Path:
    """float16 weights and float16 inputs/outputs (the outputs' dtype then says the precision)."""
    import onnx
    from onnxconverter_common import float16

    model = float16.convert_float_to_float16(onnx.load(str(source)), keep_io_types=False)
    onnx.save(model, str(path))
    return path


# --- run (on the GPU machine; here against SwiftShader) ----------------------------------------------------------

@dataclasses.dataclass
class Row:
    model: str
    ep: str
    adapter: str
    verdict: str
    max_abs: float | None = None
    p50_ms: float | None = None
    first_run_ms: float | None = None
    outputs: list = dataclasses.field(default_factory=list)  # per output: dtype, max abs, scale, ULP, cosine


def run(folder: Path, adapters: list[str], json_path: Path | None, only: list[str] | None = None) -> list[Row]:
    listing = {name: file for name, file in json.loads((folder / "models.json").read_text()).items()
               if not only or name in only}
    rows: list[Row] = []
    for mode in adapters:
        try:
            plan = webgpu_plan(mode, None, None)
        except BrowserSetupError as error:
            print(f"[{mode}] {error}", flush=True)
            continue
        print(f"[{mode}] {plan.describe()}", flush=True)
        for ep_text in EPS:
            if ep_text == "wasm" and mode != adapters[0]:
                continue  # wasm does not use the adapter: measured once
            ep = ExecutionProvider.parse(ep_text)
            runtime = Runtime(dataclasses.replace(settings(ep), webgpu_plan=plan, timeout_s=240))
            try:
                for name, file in listing.items():
                    rows.append(_measure(runtime, ep, folder / file, name, mode))
                    print(_line(rows[-1]), flush=True)
            finally:
                runtime.close()
    if json_path:
        json_path.write_text(json.dumps([dataclasses.asdict(row) for row in rows], indent=1))
    print("\n" + "\n".join(table(rows)))
    return rows


def _measure(runtime: Runtime, ep: ExecutionProvider, model: Path, name: str, mode: str) -> Row:
    feeds = dict(np.load(model.with_name(f"{name}.inputs.npz")))
    adapter = "-" if ep.name != "webgpu" else mode
    try:
        ep_browser = runtime.browser_for(ep)
        probe = ep_browser.probe()
        if ep.name == "webgpu" and probe.get("adapter"):
            environment = ep_browser.environment()
            adapter = environment.adapter.describe() if environment.adapter else mode
        result = ep_browser.run(runtime.model_files(model), feeds, warmup=1, iterations=5)
    except (ModelRunError, BrowserSetupError) as error:
        return Row(name, ep.id, adapter, "error: " + str(error).split(": ", 1)[-1].splitlines()[0][:100])
    expected = reference.outputs(model, feeds)
    comparisons = compare_outputs(result.outputs, expected,
                                  lambda output, dtype: resolve([BUILTIN], ep=ep.id, dtype=dtype, output=output))
    outputs = [{"name": c.name, "dtype": c.dtype, "max_abs": _float(c.max_abs_error), "max_ulp": _float(c.max_ulp),
                "scale": float(np.max(np.abs(expected[c.name].astype(np.float64)))) if expected[c.name].size else 0.0,
                "needed_atol_at_rtol_1e-2": _needed_atol(result.outputs[c.name], expected[c.name]),
                "passed": c.passed, "diagnosis": c.diagnosis} for c in comparisons]
    failed = [c.name for c in comparisons if not c.passed]
    worst = max((o["max_abs"] for o in outputs if o["max_abs"] is not None), default=None)
    return Row(name, ep.id, adapter, "pass" if not failed else f"FAIL ({', '.join(failed)})", worst,
               result.latency.p50, result.latency.first_run, outputs)


def _needed_atol(obtained: np.ndarray, expected: np.ndarray) -> float | None:
    """The smallest atol that passes every element with rtol 1e-2 (float16's built-in rtol)."""
    if obtained.dtype.kind != "f" or obtained.shape != expected.shape or not obtained.size:
        return None
    a, b = obtained.astype(np.float64), expected.astype(np.float64)
    return float(np.nanmax(np.abs(a - b) - 1e-2 * np.abs(b)).clip(min=0))


def _float(value) -> float | None:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else float(value)


def _line(row: Row) -> str:
    return (f"{row.model:<26} {row.ep:<12} {row.adapter[:44]:<44} {row.verdict[:60]:<22} "
            f"{_show(row.max_abs, '.2g')} {_show(row.p50_ms, '.1f')} {_show(row.first_run_ms, '.0f')}")


def table(rows: list[Row]) -> list[str]:
    """Markdown: one line per model and EP, SwiftShader and GPU side by side."""
    adapters = list(dict.fromkeys(row.adapter for row in rows if row.adapter != "-"))
    lines = ["| model | EP | " + " | ".join(f"{'no adapter' if a == '-' else a}: verdict / max abs / p50 (first run) ms"
                                         for a in ["-", *adapters])
             + " |", "|---|---|" + "---|" * (len(adapters) + 1)]
    for model in dict.fromkeys(row.model for row in rows):
        for ep in EPS:
            cells = []
            for adapter in ["-", *adapters]:
                found = [r for r in rows if r.model == model and r.ep == ep and r.adapter == adapter]
                cells.append(" / ".join([found[0].verdict, _show(found[0].max_abs, ".2g"),
                                         f"{_show(found[0].p50_ms, '.1f')} ({_show(found[0].first_run_ms, '.0f')})"])
                             if found else "")
            if any(cells):
                lines.append(f"| {model} | {ep} | " + " | ".join(cells) + " |")
    return lines


def _show(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("prepare")
    make.add_argument("folder", type=Path)
    make.add_argument("--wheels", type=Path, help="folder of wheels that ship real models (see WHEEL_MODELS)")
    measure = commands.add_parser("run")
    measure.add_argument("folder", type=Path)
    measure.add_argument("--adapters", nargs="+", default=["swiftshader", "hardware"],
                         choices=["swiftshader", "hardware", "auto"])
    measure.add_argument("--json", type=Path)
    measure.add_argument("--only", nargs="+", help="these models of the set only")
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.folder, args.wheels)
    else:
        run(args.folder, args.adapters, args.json, args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
