"""ONNX's own backend node tests (about 1,900 cases, generated from the onnx package) on wasm.

Every case must end as passed, failed or skipped with its reason; none may crash or hang
the session. The counts are printed for the record: failures here are onnxruntime-web's
(models newer than it accepts, ops it lacks), reported clearly, not the plugin's.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_whole_node_suite_runs_on_wasm(pytester, tmp_path):
    suite = tmp_path / "onnx-node-tests"
    subprocess.run([sys.executable, str(ROOT / "tests" / "generate_node_tests.py"), str(suite)], check=True,
                   capture_output=True)
    cases = len(list((suite / "node").iterdir()))
    result = pytester.runpytest_subprocess(str(suite), "--browser-ep", "wasm", "-q",
                                           "-o", "browserml_timeout=60")
    outcomes = result.parseoutcomes()
    print(f"ONNX node tests on wasm: {cases} cases, {outcomes}")
    assert cases > 1500
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) + outcomes.get("skipped", 0) == cases
    assert not outcomes.get("errors") and not outcomes.get("error")
    assert outcomes.get("passed", 0) > 1200  # 1,358 when last counted: a drop means the plugin broke something
