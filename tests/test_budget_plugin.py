"""Budgets, baselines and profiles as users meet them: pytester runs on example projects."""

from __future__ import annotations

import json

import pytest

from tests import modelzoo

TEST_FILE = """
import numpy as np
import pytest

X = np.arange(6, dtype=np.float32).reshape(2, 3)

{marker}
def test_detector(browserml):
    browserml.run("models/add.onnx", {{"x": X}}, warmup=1, iterations=5)
"""


@pytest.fixture
def project(pytester):
    modelzoo.add(pytester.path / "models" / "add.onnx")
    return pytester


def test_project_budgets_per_ep_the_marker_and_the_scale(project):
    project.makepyprojecttoml('[tool.browserml.budget]\nlatency_p95 = "0.0001 ms"\nwebgpu = { wasm_memory = "1 KB" }\n')
    project.makepyfile(test_model=TEST_FILE.format(marker=""))
    result = project.runpytest_subprocess("--browser-ep", "wasm", "--browser-ep", "webgpu")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        "*BudgetExceeded: add.onnx on wasm exceeded its budget:*",
        "*latency p95 * ms > budget 0.0001 ms ([[]tool.browserml.budget[]] in *pyproject.toml, wasm)*",
        "*wasm memory 16 MiB > budget 1 KiB ([[]tool.browserml.budget[]] in *pyproject.toml [[]webgpu[]], webgpu)*",
    ])
    project.makepyfile(test_model=TEST_FILE.format(marker='@pytest.mark.budget(latency_p95="60 s")'))
    result = project.runpytest_subprocess("--browser-ep", "wasm", "--browser-ep", "webgpu")
    result.assert_outcomes(passed=1, failed=1)  # the marker lifts the latency budget; webgpu's memory still fails

    project.makepyprojecttoml('[tool.browserml.budget]\nlatency_p95 = "0.05 ms"\n')
    result = project.runpytest_subprocess("--budget-scale", "1000")  # the most it takes: 50 ms, far above a run
    result.assert_outcomes(passed=1)


def test_a_bad_budget_names_the_setting(project):
    project.makepyfile(test_model=TEST_FILE.format(marker='@pytest.mark.budget(latency_p95="quick")'))
    result = project.runpytest_subprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*budget 'latency_p95' = 'quick' in marker on test_detector: expected a time such as*"])


def test_baselines_save_compare_and_refuse_another_machine(project):
    project.makepyfile(test_model=TEST_FILE.format(marker=""))
    result = project.runpytest_subprocess("--budget-save", "main")
    result.assert_outcomes(passed=1)
    path = project.path / ".browserml" / "baselines" / "main.json"
    baseline = json.loads(path.read_text())
    (machine,) = baseline["machines"]
    assert machine["key"]["ep"] == "wasm" and machine["key"]["ort_web"] == "1.30.0"
    figures = machine["runs"]["test_model.py::test_detector::add.onnx"]
    assert figures["latency_p50"] > 0 and figures["wasm_memory"] > 0

    figures["wasm_memory"] //= 4
    path.write_text(json.dumps(baseline))
    result = project.runpytest_subprocess("--budget-compare", "main", "--budget-compare-fail=wasm_memory:10%")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*wasm memory 16 MiB is 300% above baseline main's 4 MiB (allowed 10%, wasm)*"])

    machine["key"]["browser"] = "99.0.0.0"
    path.write_text(json.dumps(baseline))
    result = project.runpytest_subprocess("--budget-compare", "main")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*baseline main was measured elsewhere, refusing to compare: browser '99.0.0.0' "
                                 "in the baseline, '*' now*"])


def test_profile_is_attached_to_the_report(project):
    project.makepyfile(test_model=TEST_FILE.format(marker=""))
    result = project.runpytest_subprocess("--browserml-profile", "-rP")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*browserml profile of add.onnx on wasm*", "node * op * provider * calls * total ms",
                                 "* Add * CPUExecutionProvider * 7 *"])


def test_timed_runs_marker_sets_the_number_of_runs(project):
    project.makepyfile(test_model="""
        import numpy as np
        import pytest

        @pytest.mark.timed_runs(iterations=30)
        def test_thirty(browserml):
            assert browserml.run("models/add.onnx", {"x": np.ones((2, 3), np.float32)}).latency.rounds == 30

        def test_default(browserml):
            assert browserml.run("models/add.onnx", {"x": np.ones((2, 3), np.float32)}).latency.rounds == 5

        @pytest.mark.timed_runs(iterations=-1)
        def test_bad(browserml):
            pass
    """)
    result = project.runpytest_subprocess()
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*@pytest.mark.timed_runs on test_bad: expected warmup=N and/or iterations=N*"])
