"""Benchmark of the browser runner; prints figures, asserts nothing.

1. Overhead of `browserml.run` over the in-page run time, tiny model, cached
   session (target: median under 5 ms).
2. Round-trip of a 64 MB float32 tensor through an Identity model: MB/s into
   the page and back out (target: at least 500 MB/s each way).

Run: python bench/bench_runner.py [--ep wasm] [--rounds 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_browserml.browser.launch import ExecutionProvider  # noqa: E402
from pytest_browserml.browser.provision import ORT_WEB_VERSION  # noqa: E402
from pytest_browserml.runner import BrowserML, Runtime, Settings  # noqa: E402
from tests import modelzoo  # noqa: E402

MB = 1 << 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ep", default="wasm")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--megabytes", type=int, default=64)
    args = parser.parse_args()
    ep = ExecutionProvider.parse(args.ep)
    settings = Settings(eps=(ep,), strict=True, timeout_s=300, ort_web_version=ORT_WEB_VERSION,
                        browser_executable=None, browser_channel=None, auto_install=True, warmup=0, iterations=1)
    runtime = Runtime(settings)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        browserml = BrowserML(runtime.browser_for(ep), settings, (folder,))
        try:
            overhead(browserml, modelzoo.add(folder / "add.onnx"), args.rounds)
            throughput(browserml, modelzoo.identity(folder / "identity.onnx"), args.megabytes)
        finally:
            runtime.close()


def overhead(browserml: BrowserML, model: Path, rounds: int) -> None:
    x = np.ones((2, 3), np.float32)
    browserml.run(model, {"x": x})  # session creation and first run are not overhead
    overheads, in_page = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        result = browserml.run(model, {"x": x}, warmup=0, iterations=1)
        wall_ms = (time.perf_counter() - started) * 1000
        overheads.append(wall_ms - result.latency.times[0])
        in_page.append(result.latency.times[0])
    print(f"[{browserml.ep}] browserml.run overhead over the in-page run, tiny model, {rounds} rounds: "
          f"median {statistics.median(overheads):.2f} ms, min {min(overheads):.2f} ms, max {max(overheads):.2f} ms "
          f"(in-page run median {statistics.median(in_page):.3f} ms)  target < 5 ms median")


def throughput(browserml: BrowserML, model: Path, megabytes: int) -> None:
    x = np.random.default_rng(0).standard_normal(megabytes * MB // 4).astype(np.float32)
    browserml.run(model, {"x": x[:16]})
    rates_in, rates_out, walls = [], [], []
    for _ in range(3):
        started = time.perf_counter()
        result = browserml.run(model, {"x": x}, warmup=0, iterations=1)
        walls.append(time.perf_counter() - started)
        assert np.array_equal(result.outputs["y"], x), "the round trip changed the tensor"
        rates_in.append(result.transfer.input_bytes / MB / (result.transfer.input_ms / 1000))
        rates_out.append(result.transfer.output_bytes / MB / (result.transfer.output_ms / 1000))
    print(f"[{browserml.ep}] {megabytes} MB float32 through Identity (best of 3): into the page "
          f"{max(rates_in):.0f} MB/s, out of the page {max(rates_out):.0f} MB/s, whole run() "
          f"{min(walls) * 1000:.0f} ms  target >= 500 MB/s each way")


if __name__ == "__main__":
    main()
