"""Python-side memory of assert_golden with a 256 MB output: how many copies of the tensor are alive at the peak.

A Tile model turns a 4 KB input into a 256 MiB float32 output on wasm; its golden (written
beforehand, the same values) is compared by `browserml.assert_golden`. Measured with
tracemalloc (numpy reports its buffers to it) and with the process's peak RSS (VmHWM,
reset through /proc/self/clear_refs before each phase). The obtained output is alive before
the comparison starts, so the target, no more than two copies at the peak (the obtained and
the golden), means the comparison may add at most one copy (256 MiB) above that.

Phases: the run itself, assert_golden passing, its parts (read_golden, compare_outputs),
and assert_golden on a golden that differs in 0.1 % of the elements (it also writes the
obtained .npz); then compare()'s entry points on the whole tensor, each with its extra peak.

Run: python bench/bench_golden_memory.py [--megabytes 256]
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
import tracemalloc
from pathlib import Path

import _common
import numpy as np
from _common import MB, figure

NAME = "golden-memory"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=int, default=256)
    args = parser.parse_args()

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from pytest_browserml.browser.launch import ExecutionProvider
    from pytest_browserml.golden import store as goldens
    from pytest_browserml.golden.check import GoldenPolicy, GoldenTarget
    from pytest_browserml.golden.compare import compare_outputs
    from pytest_browserml.golden.tolerances import BUILTIN, resolve
    from pytest_browserml.runner import BrowserML, Runtime

    print(f"[{NAME}] load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    size = args.megabytes * MB
    repeats = size // 4 // 1024
    with tempfile.TemporaryDirectory(prefix="bench-golden-memory-") as tmp:
        folder = Path(tmp)
        graph = helper.make_graph(
            [helper.make_node("Tile", ["x", "repeats"], ["y"])], "tile",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1024])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1024 * repeats])],
            initializer=[numpy_helper.from_array(np.array([repeats], np.int64), "repeats")])
        model = folder / "tile.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(model))
        x = np.random.default_rng(0).standard_normal(1024).astype(np.float32)

        target = GoldenTarget(golden_dir=folder / "goldens", module_stem="test_big", test_name="test_big",
                              nodeid="test_big.py::test_big[wasm]", rootdir=folder)
        wrong = GoldenTarget(golden_dir=folder / "goldens", module_stem="test_big", test_name="test_big_wrong",
                             nodeid="test_big.py::test_big_wrong[wasm]", rootdir=folder)
        expected = np.tile(x, repeats)
        goldens.write_golden(target.files(None), {"y": expected}, {"note": "bench"})
        expected[::1000] += 1.0
        goldens.write_golden(wrong.files(None), {"y": expected}, {"note": "bench"})
        del expected
        gc.collect()

        ep = ExecutionProvider.parse("wasm")
        settings = _common.settings(ep)
        runtime = Runtime(settings)
        records = []
        policy = GoldenPolicy(update=None, layers=(), record=records.append)
        try:
            browserml = BrowserML(runtime.browser_for(ep), settings, (folder,), target, policy)
            from tests import modelzoo  # the browser starts with a tiny model: nothing big is allocated before

            browserml.run(modelzoo.add(folder / "add.onnx"), {"x": np.ones((2, 3), np.float32)})
            tracemalloc.start()
            result, _ = phase("browserml.run (the 256 MB output arrives)", size,
                              lambda: browserml.run(model, {"x": x}, warmup=0, iterations=0), alive_copies=0)
            alive = result.outputs["y"].nbytes
            figure(NAME, "output alive after run", alive / MB, "MiB",
                   note=f"{tracemalloc.get_traced_memory()[0] / MB:.0f} MiB traced in all")
            phase("assert_golden, passing", size, lambda: browserml.assert_golden(result), alive_copies=1,
                  target=2)
            golden, _ = phase("  part: goldens.read_golden", size, lambda: goldens.read_golden(target.files(None).npz),
                              alive_copies=1)
            phase("  part: compare_outputs (obtained vs golden, both alive)", size,
                  lambda: compare_outputs(result.outputs, golden,
                                          lambda name, dtype: resolve([BUILTIN], ep="wasm", dtype=dtype, output=name)),
                  alive_copies=2)
            del golden
            gc.collect()
            failing = BrowserML(runtime.browser_for(ep), settings, (folder,), wrong, policy)
            phase("assert_golden, 0.1 % of elements off (fails, writes the obtained .npz)", size,
                  lambda: _expect_failure(failing.assert_golden, result), alive_copies=1, target=2)
            profile_compare(result, size)
            traced = tracemalloc.get_traced_memory()[0]
            del result
            gc.collect()
            dropped = tracemalloc.get_traced_memory()[0]
            browserml.run(modelzoo.add(folder / "add.onnx"), {"x": np.ones((2, 3), np.float32)})
            gc.collect()
            after_next = tracemalloc.get_traced_memory()[0]
            figure(NAME, "traced memory after the test drops its RunResult", dropped / MB, "MiB",
                   note=f"{traced / MB:.0f} MiB before the drop; {after_next / MB:.0f} MiB after the next page call: "
                        "the last run's payload stays alive until then")
            tracemalloc.stop()
        finally:
            runtime.close()


def _expect_failure(function, *args):
    try:
        function(*args)
    except AssertionError as error:
        return str(error)
    raise SystemExit("assert_golden passed on a golden that differs")


def phase(label: str, size: int, work, alive_copies: int, target: int | None = None):
    """Run `work` and print its extra peak (tracemalloc and RSS) above what was alive, in copies of the tensor."""
    gc.collect()
    tracemalloc.reset_peak()
    before_traced = tracemalloc.get_traced_memory()[0]
    before_rss = _rss("VmRSS")
    _reset_peak_rss()
    started = time.perf_counter()
    value = work()
    elapsed = time.perf_counter() - started
    peak_traced = tracemalloc.get_traced_memory()[1] - before_traced
    peak_rss = _rss("VmHWM") - before_rss
    copies = alive_copies + peak_traced / size
    figure(NAME, f"{label}: copies of the tensor alive at the peak", copies, "",
           f"<= {target}" if target else None, copies <= target + 0.05 if target else None,
           note=f"{alive_copies} alive before + {peak_traced / MB:.0f} MiB traced peak above it; RSS peak "
                f"+{peak_rss / MB:.0f} MiB; {elapsed:.2f} s")
    return value, elapsed


def profile_compare(result, size: int) -> None:
    """Where compare() allocates: the extra peak of each entry point on the whole tensor (tracemalloc)."""
    from pytest_browserml.golden import compare
    from pytest_browserml.golden.tolerances import BUILTIN, resolve

    o = result.outputs["y"]
    e = o.copy()
    off = o.copy()
    off[::1000] += 1.0
    tolerance = resolve([BUILTIN], ep="wasm", dtype=e.dtype, output="y")
    steps = {
        "compare(), equal tensors": lambda: compare.compare("y", o, e, tolerance),
        "compare(), 0.1 % of elements off (statistics, worst table, diagnosis)":
            lambda: compare.compare("y", off, e, tolerance),
        "compare(), a permutation (reversed)": lambda: compare.compare("y", o[::-1], e, tolerance),
        "cosine_similarity": lambda: compare.cosine_similarity(o, e),
        "topk_agreement, k=5 over rows of 1000": lambda: compare.topk_agreement(
            o[: o.size // 1000 * 1000].reshape(-1, 1000), off[: o.size // 1000 * 1000].reshape(-1, 1000), 5),
    }
    print(f"[{NAME}] compare() on the {size // MB} MiB float32 tensor, the two operands alive (extra peak):")
    for label, step in steps.items():
        gc.collect()
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        started = time.perf_counter()
        value = step()
        elapsed = time.perf_counter() - started
        outcome = getattr(value, "diagnosis", value)
        print(f"    {(tracemalloc.get_traced_memory()[1] - before) / size:5.2f} copies  {elapsed:5.2f} s  {label}: "
              f"{outcome}")
    del e, off


def _rss(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak_rss() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


if __name__ == "__main__":
    main()
