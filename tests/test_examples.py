"""The README's main job: the bundled example suite passes on every EP."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_example_suite_is_green_on_every_ep(pytester):
    result = pytester.runpytest_subprocess(
        str(ROOT / "examples"),
        "--browser-ep", "wasm", "--browser-ep", "webgpu", "--browser-ep", "webgpu:jsep", "--browser-ep", "webnn",
        "--browser-ep-strict", "-rx",
        "--browserml-html", "reports/examples.html",
    )
    assert (pytester.path / "reports" / "examples.html").stat().st_size > 1000
    # float16 on a WebGPU adapter without shader-f16 is an expected failure, said so in the summary
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("xfailed", 0) == 12, result.stdout.str()
    assert not outcomes.get("failed") and not outcomes.get("errors")
