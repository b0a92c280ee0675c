"""The wasm engine under workers: V8's tier per kind of test, ORT's threads per worker, browsers started early.

The tier a run ran on is read back from the browser's own command line (/proc), not only from the result.
"""

from __future__ import annotations

import json

import pytest

from pytest_browserml.browser import provision, wasm_engine
from tests.test_onnx_suite import X, write_case


@pytest.mark.parametrize(("cores", "workers", "threads"), [
    (2, 1, 1), (16, 1, 4), (16, 2, 4), (16, 4, 4), (16, 8, 2), (16, 16, 1), (16, 32, 1), (6, 2, 3), (1, 1, 1),
])
def test_auto_threads_are_orts_default_lowered_to_each_workers_share_of_the_cores(cores, workers, threads):
    assert wasm_engine.auto_threads(cores, workers) == threads


def test_auto_threads_are_one_on_liftoff_pages_and_the_workers_share_on_tier_up_and_a_setting_wins():
    """Liftoff pages run untimed test-sized cases: ORT's extra threads only spin there (bench_xdist: -n 8 on
    16 cores 12.2 s on 2 threads a page against 11.1 s on 1, for 92 s of CPU against 74 s)."""
    share = wasm_engine.auto_threads(wasm_engine.cores_available(), wasm_engine.worker_count())
    assert wasm_engine.threads(None, "liftoff") == 1
    assert wasm_engine.threads(None, "tier-up") == share
    assert wasm_engine.threads(3, "liftoff") == wasm_engine.threads(3, "tier-up") == 3


def test_the_warmup_model_is_one_identity_node_onnx_reads():
    """A constant, so that opening a page does not wait for `import onnx` (0.6 s of a worker's start)."""
    import base64

    import onnx

    model = onnx.load_from_string(base64.b64decode(wasm_engine.WARMUP_MODEL_BASE64))
    onnx.checker.check_model(model)
    assert [node.op_type for node in model.graph.node] == ["Identity"]


def test_auto_tier_is_tier_up_for_timed_tests_and_liftoff_otherwise_and_a_setting_wins():
    assert wasm_engine.tier_for("auto", timed=True) == "tier-up"
    assert wasm_engine.tier_for("auto", timed=False) == "liftoff"
    assert wasm_engine.tier_for("liftoff", timed=True) == "liftoff"
    assert wasm_engine.tier_for("tier-up", timed=False) == "tier-up"
    assert wasm_engine.launch_args("liftoff") == ("--js-flags=--liftoff-only",)
    assert wasm_engine.launch_args("tier-up") == ()


@pytest.mark.parametrize(("setting", "text"), [
    ("browserml_wasm_tier = turbofan", "browserml_wasm_tier = 'turbofan': choose from auto, tier-up, liftoff"),
    ("browserml_wasm_threads = 0", "browserml_wasm_threads = '0': expected auto or a whole number >= 1"),
    ("browserml_wasm_threads = many", "browserml_wasm_threads = 'many': expected auto or a whole number >= 1"),
])
def test_a_bad_engine_setting_is_a_usage_error_naming_it(pytester, setting, text):
    pytester.makeini(f"[pytest]\n{setting}\n")
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{text}*"])


# Records, before each test's setup, the --js-flags of the Chromium browser processes this pytest started.
ENGINE_PROBE = """
import json, os

def _descendants(root):
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    children.setdefault(int(handle.read().rpartition(")")[2].split()[1]), []).append(int(entry))
            except OSError:
                pass
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found

def _browsers():
    flags = []
    for pid in _descendants(os.getpid()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                args = handle.read().decode(errors="replace").replace("\\0", " ").split()  # Chromium rewrites it
        except OSError:
            continue
        if args and args[0].endswith("/chromium") and not any(arg.startswith("--type=") for arg in args):
            flags.append(sorted(arg for arg in args if arg.startswith("--js-flags")))
    return sorted(flags)

def pytest_runtest_setup(item):
    with open("browsers.jsonl", "a") as handle:
        handle.write(json.dumps({"test": item.name, "browsers": _browsers()}) + "\\n")
"""


def _browsers_seen(pytester) -> dict[str, list]:
    lines = (pytester.path / "browsers.jsonl").read_text().splitlines()
    return {entry["test"]: entry["browsers"] for entry in map(json.loads, lines)}


TIMED_TEST = """
import numpy as np

def test_timed(browserml):
    result = browserml.run({model!r}, {{"x": np.ones((2, 3), np.float32)}})
    with open("environment.json", "w") as handle:
        handle.write('{{"tier": "%s", "threads": %d}}' % (result.environment.wasm_tier,
                                                          result.environment.wasm_threads))
"""


def test_auto_runs_onnx_folders_on_liftoff_and_timed_tests_on_tier_up_each_in_its_own_browser(pytester, models):
    """Both kinds in one session: each result says its tier, and each browser was launched with just that."""
    write_case(pytester.path / "cases" / "abs")
    pytester.makeconftest(ENGINE_PROBE)
    pytester.makepyfile(test_timed=TIMED_TEST.format(model=str(models["add"])))
    result = pytester.runpytest_subprocess("cases", "test_timed.py", "-p", "no:randomly",
                                           "--browserml-report", "report.json")
    result.assert_outcomes(passed=2)
    report = json.loads((pytester.path / "report.json").read_text())
    tiers = {test["test"]: [run["wasm_tier"] for run in test["runs"]] for test in report["tests"]}
    assert tiers == {"cases/abs::test_data_set_0": ["liftoff"], "test_timed.py::test_timed": ["tier-up"]}
    assert json.loads((pytester.path / "environment.json").read_text())["tier"] == "tier-up"
    # both started while pytest collected (the first test's run waits for them), each with only its own flag
    assert _browsers_seen(pytester)["test_timed[wasm]"] == [[], ["--js-flags=--liftoff-only"]]
    result.stdout.fnmatch_lines(["browserml: *wasm tier auto (tier-up for browserml tests, liftoff for ONNX "
                                 "test-data folders), threads auto (* a page on tier-up, 1 on liftoff)*"])


def test_liftoff_set_for_timed_tests_says_so_and_their_latency_budgets_fail_rather_than_pass_on_it(pytester, models):
    pytester.makeconftest(ENGINE_PROBE)
    pytester.makepyfile(test_timed=TIMED_TEST.format(model=str(models["add"])) + """
import pytest

@pytest.mark.budget(latency_p50="100 s")
def test_budget(browserml):
    browserml.run({model!r}, {{"x": np.ones((2, 3), np.float32)}})
""".format(model=str(models["add"])))
    result = pytester.runpytest_subprocess("--browserml-wasm-tier", "liftoff", "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    assert json.loads((pytester.path / "environment.json").read_text())["tier"] == "liftoff"
    assert _browsers_seen(pytester)["test_budget[wasm]"] == [["--js-flags=--liftoff-only"]]
    result.stdout.fnmatch_lines([
        "*latency p50 has a budget of 100 s but was measured on Liftoff-only wasm code, which users' browsers "
        "do not run (marker on test_budget, wasm): set browserml_wasm_tier = auto*",
    ])


def test_threads_per_page_come_from_the_ini_and_show_in_the_result(pytester, models):
    pytester.makeini("[pytest]\nbrowserml_wasm_threads = 2\n")
    pytester.makepyfile(test_timed=TIMED_TEST.format(model=str(models["add"])))
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    assert json.loads((pytester.path / "environment.json").read_text()) == {"tier": "tier-up", "threads": 2}


def test_under_xdist_timed_tests_run_their_workers_share_of_the_cores_and_onnx_folders_one_thread(pytester, models):
    write_case(pytester.path / "cases" / "abs")
    write_case(pytester.path / "cases" / "neg", "Neg", outputs=(-X,))
    pytester.makepyfile(test_timed=TIMED_TEST.format(model=str(models["add"])))
    result = pytester.runpytest_subprocess("cases", "test_timed.py", "-n", "2", "--browserml-report", "report.json")
    result.assert_outcomes(passed=3)
    report = json.loads((pytester.path / "report.json").read_text())
    threads = {test["test"]: [run["wasm_threads"] for run in test["runs"]] for test in report["tests"]}
    share = wasm_engine.auto_threads(wasm_engine.cores_available(), 2)
    assert threads == {"cases/abs::test_data_set_0": [1], "cases/neg::test_data_set_0": [1],
                       "test_timed.py::test_timed": [share]}


def test_the_browser_starts_while_pytest_collects(pytester):
    """A browser takes 0.6-1.1 s to launch and open its page on the 16-core machine: it starts when collection
    meets the first test that needs it, and the rest of collection (each xdist worker collects every test)
    goes on meanwhile."""
    write_case(pytester.path / "cases" / "abs")
    pytester.makeconftest(ENGINE_PROBE + """
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session):
    with open("browsers.jsonl", "a") as handle:
        handle.write(json.dumps({"test": "collected", "browsers": _browsers()}) + "\\n")
""")
    pytester.makepyfile(test_slow="import time\n\ntime.sleep(3)  # collecting this module takes 3 s\n\n"
                                  "def test_plain():\n    pass\n")
    result = pytester.runpytest_subprocess("cases", "test_slow.py", "-p", "no:randomly")
    result.assert_outcomes(passed=2)
    assert _browsers_seen(pytester)["collected"] == [["--js-flags=--liftoff-only"]]


def test_collect_only_starts_no_browser(pytester):
    write_case(pytester.path / "cases" / "abs")
    pytester.makeconftest(ENGINE_PROBE + """
def pytest_sessionfinish(session):
    with open("browsers.jsonl", "a") as handle:
        handle.write(json.dumps({"test": "end", "browsers": _browsers()}) + "\\n")
""")
    result = pytester.runpytest_subprocess("cases", "--collect-only")
    assert result.ret == 0
    assert _browsers_seen(pytester) == {"end": []}


def test_a_test_left_without_eps_by_its_marker_is_skipped_and_no_browser_starts_for_it(pytester):
    pytester.makeconftest(ENGINE_PROBE)
    pytester.makepyfile("""
import pytest

@pytest.mark.browser_ep("webnn")
def test_webnn_only(browserml):
    pass

def test_plain():
    pass
""")
    result = pytester.runpytest_subprocess("--browser-ep", "wasm", "-p", "no:randomly")
    result.assert_outcomes(passed=1, skipped=1)
    assert _browsers_seen(pytester) == {"test_plain": []}


def test_loading_the_plugin_does_not_import_playwrights_sync_api():
    """xdist's controller loads the plugin but never opens a browser: the sync API (0.1-0.2 s) would delay
    every worker's start."""
    import subprocess
    import sys

    probe = "import sys, pytest_browserml.plugin; print(sorted(m for m in sys.modules if m.startswith('playwright.sync')))"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_the_playwright_driver_keeps_its_compiled_code_in_the_plugins_cache_and_tests_see_their_own_environment(
        pytester, models, tmp_path, monkeypatch):
    """Node's compile cache: each worker's driver starts faster (0.29 s against 0.22 s here), and the test's
    environment (which its own subprocesses inherit) is left as it was."""
    pytester.makepyfile(test_timed=TIMED_TEST.format(model=str(models["add"])) + """
import os

def test_environment_is_the_users(browserml):
    browserml.run({model!r}, {{"x": np.ones((2, 3), np.float32)}})
    assert "NODE_COMPILE_CACHE" not in os.environ
""".format(model=str(models["add"])))
    cache = tmp_path / "cache"
    cache.mkdir()
    for entry in ("chromium", "onnxruntime-web"):  # the downloads, without the compile cache
        (cache / entry).symlink_to(provision.cache_dir() / entry)
    monkeypatch.setenv("BROWSERML_CACHE", str(cache))
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=2)
    assert any(path.is_file() for path in (cache / "node-compile-cache").rglob("*"))


def test_an_onnx_that_fails_to_import_fails_the_tests_that_read_models_and_no_others(pytester):
    """e.g. onnx 1.18 beside an older ml_dtypes raises AttributeError on import: that is the failure of the
    tests that need onnx, not of the session."""
    (pytester.path / "onnx").mkdir()
    (pytester.path / "onnx" / "__init__.py").write_text("raise AttributeError(\"module 'ml_dtypes' has no "
                                                        "attribute 'float4_e2m1fn'\")\n")
    pytester.makepyfile(test_x="def test_browser(browserml):\n    pass\n\ndef test_plain():\n    pass\n")
    result = pytester.runpytest_subprocess("--browser-ep", "wasm", "-p", "no:randomly")
    result.assert_outcomes(passed=2)
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
