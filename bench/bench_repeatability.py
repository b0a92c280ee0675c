"""Repeatability of latency figures: p50 of 30 runs of a small model (the example suite's
tiny CNN: 2 convs on a 64x64 image, about 1 ms a run on wasm; a model of a few microseconds
would measure the timer, not the model), in two back-to-back sessions (a fresh browser
each), per EP. Target: the two p50s differ by under 10 %.

Run on an idle machine: python bench/bench_repeatability.py [--ep wasm --ep webgpu --ep webnn]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_browserml.browser import ExecutionProvider  # noqa: E402
from pytest_browserml.provision import ORT_WEB_VERSION  # noqa: E402
from pytest_browserml.runner import BrowserML, Runtime, Settings  # noqa: E402


def p50_of_one_session(ep: ExecutionProvider, model: Path, rounds: int) -> float:
    settings = Settings(eps=(ep,), strict=True, timeout_s=300, ort_web_version=ORT_WEB_VERSION, ort_web_bundle="all",
                        browser_executable=None, browser_channel=None, auto_install=True, warmup=10, iterations=rounds)
    runtime = Runtime(settings)
    try:
        browserml = BrowserML(runtime.browser_for(ep), settings, (model.parent,))
        image = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
        return browserml.run(model, {"image": image}).latency.median
    finally:
        runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ep", action="append")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    model = Path(__file__).resolve().parents[1] / "examples" / "models" / "tiny_cnn.onnx"
    for text in args.ep or ["wasm", "webgpu", "webnn"]:
        ep = ExecutionProvider.parse(text)
        first, second = (p50_of_one_session(ep, model, args.rounds) for _ in range(2))
        change = abs(second - first) / first * 100
        print(f"[{ep.id}] p50 of {args.rounds} runs of the tiny CNN: session 1 {first:.3f} ms, session 2 "
              f"{second:.3f} ms, difference {change:.1f}%  target < 10%")


if __name__ == "__main__":
    main()
