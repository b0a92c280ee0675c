"""Repeatability of latency figures: p50 of 30 runs of a small model in two back-to-back
sessions (a fresh browser each), per EP. Target: the two p50s differ by under 10 %.

The model is two 3x3 convolutions of 16 channels on a 64x64 image (9 KB of weights, about
2 ms a run on wasm), built here with onnx.helper. The example suite's tiny CNN runs in
0.15 ms on wasm, where scheduling jitter of a few tens of microseconds is already 10 %.

One pair of sessions says little on a shared virtual machine, so the script measures several
pairs and, around each session, the p50 of 30 runs of a fixed pure-Python loop (the
machine's own speed at that moment). When that loop's p50 also moved by more than 10 %
between the two sessions, the machine changed speed, not the plugin's measurement.

Run on an idle machine: python bench/bench_repeatability.py [--ep wasm --ep webgpu --ep webnn] [--pairs 5]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import _common
import numpy as np
from _common import figure, median

NAME = "repeatability"
TARGET_PERCENT = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ep", action="append")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()

    from pytest_browserml.browser.launch import ExecutionProvider

    print(f"[{NAME}] load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="bench-repeatability-") as tmp:
        model = small_conv(Path(tmp) / "conv16.onnx")
        image = np.random.default_rng(0).standard_normal((1, 16, 64, 64)).astype(np.float32)
        for text in args.ep or ["wasm", "webgpu", "webnn"]:
            ep = ExecutionProvider.parse(text)
            differences, machine_differences, lines = [], [], []
            for _ in range(args.pairs):
                (first, machine_first), (second, machine_second) = (
                    one_session(ep, model, image, args.warmup, args.rounds) for _ in range(2))
                differences.append(change(first, second))
                machine_differences.append(change(machine_first, machine_second))
                lines.append(f"{first:.3f}/{second:.3f} ms ({differences[-1]:.1f} %, loop {machine_differences[-1]:.1f} %)")
            within = sum(d < TARGET_PERCENT for d in differences)
            steady = [d for d, m in zip(differences, machine_differences) if m < TARGET_PERCENT]
            figure(NAME, f"{ep.id}: p50 difference between two back-to-back sessions, median of {args.pairs} pairs",
                   median(differences), "%", f"< {TARGET_PERCENT:g} %", median(differences) < TARGET_PERCENT,
                   note=f"{within} of {args.pairs} pairs under {TARGET_PERCENT:g} %; worst {max(differences):.1f} %")
            figure(NAME, f"{ep.id}: the same, over the pairs where the machine's speed held (loop moved < "
                         f"{TARGET_PERCENT:g} %)", median(steady) if steady else None, "%",
                   note=f"{len(steady)} of {args.pairs} pairs; worst {max(steady):.1f} %" if steady else "no such pair")
            figure(NAME, f"{ep.id}: pairs (p50 session 1/session 2, difference, the Python loop's difference)", None, "",
                   note="; ".join(lines))


def one_session(ep, model: Path, image: np.ndarray, warmup: int, rounds: int) -> tuple[float, float]:
    """The model's p50 in a fresh browser, and the Python loop's p50 around it (mean of before and after)."""
    from pytest_browserml.runner import BrowserML, Runtime

    settings = _common.settings(ep, warmup=warmup, iterations=rounds)
    runtime = Runtime(settings)
    try:
        browserml = BrowserML(runtime.browser_for(ep), settings, (model.parent,))
        browserml.run(model, {"x": image}, warmup=0, iterations=1)  # browser start and session creation
        before = machine_p50(rounds)
        p50 = browserml.run(model, {"x": image}).latency.median
        after = machine_p50(rounds)
    finally:
        runtime.close()
    return p50, (before + after) / 2


def machine_p50(rounds: int) -> float:
    """p50 in ms of a fixed pure-Python loop (about 1 ms): how fast this machine runs one core right now."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        total = 0
        for i in range(20_000):
            total += i * i
        times.append((time.perf_counter() - started) * 1000)
    return median(times)


def change(first: float, second: float) -> float:
    return abs(second - first) / min(first, second) * 100


def small_conv(path: Path) -> Path:
    """Two 3x3 convolutions (16 -> 16 channels, Relu between) on [1, 16, 64, 64]: about 19 M multiply-adds."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = (np.random.default_rng(0).standard_normal((16, 16, 3, 3)) * 0.1).astype(np.float32)
    conv = {"pads": [1, 1, 1, 1], "kernel_shape": [3, 3], "dilations": [1, 1], "strides": [1, 1]}
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["h"], **conv), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("Conv", ["r", "w"], ["y"], **conv)],
        "conv16",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 64, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 64, 64])],
        initializer=[numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


if __name__ == "__main__":
    main()
