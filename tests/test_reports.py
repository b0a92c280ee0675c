"""Reports people read: the terminal table, JSON (against its schema), JUnit properties,
the GitHub step summary, and the HTML report opened in a real headless Chromium."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ElementTree
from concurrent.futures import ThreadPoolExecutor
from importlib.resources import files

import jsonschema
import pytest

from pytest_browserml.browser import provision
from pytest_browserml.golden import store as goldens
from tests import modelzoo

TESTS = """
import numpy as np
import pytest

IMAGE = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)

def test_conv(browserml):
    browserml.assert_golden(browserml.run("models/conv.onnx", {"x": IMAGE}, warmup=0, iterations=3))

def test_add(browserml):
    browserml.run("models/add.onnx", {"x": np.ones((2, 3), np.float32)}, warmup=0, iterations=3)

@pytest.mark.browser_ep("webgpu")
def test_gpu_only(browserml):
    pytest.skip("nothing to do here")
"""


@pytest.fixture
def reported(pytester, tmp_path):
    """A run with a pass, a skip and a golden mismatch on an image-shaped output, with every report on."""
    modelzoo.conv(pytester.path / "models" / "conv.onnx")
    modelzoo.add(pytester.path / "models" / "add.onnx")
    pytester.makepyfile(test_model=TESTS)
    eps = ("--browser-ep", "wasm", "--browser-ep", "webgpu")
    pytester.runpytest_subprocess(*eps, "--update-goldens", "-k", "conv").assert_outcomes(passed=2)
    files_ = goldens.GoldenFiles(pytester.path / "goldens/test_model/test_conv.npz")
    y = goldens.read_golden(files_.npz)["y"].copy()
    y[0, 2, 4:10, 4:10] += 0.5  # a square patch in one channel: visible in the pictures
    goldens.write_golden(files_, {"y": y}, goldens.read_sidecar(files_.sidecar))
    summary = tmp_path / "step-summary.md"
    os.environ["GITHUB_STEP_SUMMARY"] = str(summary)
    try:
        result = pytester.runpytest_subprocess(
            *eps, "--browserml-report", "out/report.json", "--browserml-html", "out/report.html",
            "--junitxml", "out/junit.xml")
    finally:
        del os.environ["GITHUB_STEP_SUMMARY"]
    result.assert_outcomes(passed=2, failed=2, skipped=1)
    return pytester.path / "out", result, summary


def test_terminal_table_json_junit_and_step_summary(reported):
    out, result, summary = reported
    result.stdout.fnmatch_lines([
        "*browserml: tests x EPs*",
        "test * ep * verdict * worst abs * worst ULP * p50 * peak memory * fallback",
        "test_model.py::test_add * wasm * passed * - * - * ms * MiB * 0",
        "test_model.py::test_conv * webgpu * failed * 0.5 *",
        "test_model.py::test_gpu_only * webgpu * skipped *",
    ])
    report = json.loads((out / "report.json").read_text())
    schema = json.loads(files("pytest_browserml.report").joinpath("report.schema.json").read_text())
    jsonschema.validate(report, schema)
    rows = {(test["test"], test["ep"]): test for test in report["tests"]}
    assert len(rows) == 5
    conv = rows[("test_model.py::test_conv", "wasm")]
    assert conv["verdict"] == "failed" and conv["goldens"][0]["outputs"][0]["max_abs_error"] == pytest.approx(0.5, rel=1e-3)
    assert conv["runs"][0]["figures"]["latency_p50"] > 0
    assert rows[("test_model.py::test_gpu_only", "webgpu")]["message"] == "nothing to do here"
    properties = {p.get("name"): p.get("value") for p in ElementTree.parse(out / "junit.xml").iter("property")}
    assert properties["browserml_ep"] in ("wasm", "webgpu") and float(properties["browserml_latency_p50"]) > 0
    assert "| test_model.py::test_conv | webgpu | google swiftshader | failed |" in summary.read_text()


def test_html_report_in_a_real_browser(reported, tmp_path):
    out, _, _ = reported
    # a thread of its own: this process may already drive browsers with Playwright's sync API
    with ThreadPoolExecutor(1) as thread:
        thread.submit(check_html_report, out / "report.html", tmp_path / "report.png").result()
    assert (tmp_path / "report.png").stat().st_size > 10_000


def check_html_report(report, screenshot):
    from playwright.sync_api import sync_playwright

    chromium = provision.pinned_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium.executable), args=["--no-sandbox", "--no-zygote"],
            env={**os.environ, "LD_LIBRARY_PATH": str(chromium.library_dir)})
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(report.as_uri())
        assert page.locator("#matrix tr").count() == 4  # header + 3 tests
        assert page.locator("#matrix td.failed").count() == 2
        assert page.locator("#matrix td.skipped").count() == 1
        assert page.locator("#latency-chart rect").count() == 4
        assert page.locator("section.failure").count() == 2
        assert page.locator("svg.histogram").count() == 2
        pictures = page.locator("img.picture")
        assert pictures.count() == 6  # expected, obtained, difference on two EPs
        assert all(pictures.nth(i).evaluate("img => img.complete && img.naturalWidth >= 96")
                   for i in range(pictures.count()))
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()


def test_the_teardown_report_does_not_carry_the_calls_run_and_golden_entries_again(pytester):
    """Under pytest-xdist every report travels to the controller: the entries go once, in the call report
    (the ledgers read them there), and the teardown report keeps what JUnit XML shows, the flat figures."""
    modelzoo.add(pytester.path / "models" / "add.onnx")
    pytester.makepyfile(test_model="""
import numpy as np

def test_add(browserml):
    browserml.assert_golden(browserml.run("models/add.onnx", {"x": np.ones((2, 3), np.float32)}))
""")
    pytester.makeconftest("""
import json

def pytest_runtest_logreport(report):
    with open("properties.jsonl", "a") as handle:
        handle.write(json.dumps([report.when, [key for key, _ in report.user_properties]]) + "\\n")
""")
    result = pytester.runpytest_subprocess("--update-goldens", "-n", "1", "--junitxml", "junit.xml")
    result.assert_outcomes(passed=1)
    keys = dict(json.loads(line) for line in (pytester.path / "properties.jsonl").read_text().splitlines())
    assert {"browserml_run", "browserml_golden", "browserml_latency_p50"} <= set(keys["call"])
    assert not {"browserml_run", "browserml_golden"} & set(keys["teardown"])
    assert "browserml_latency_p50" in keys["teardown"]
    properties = {p.get("name") for p in ElementTree.parse(pytester.path / "junit.xml").iter("property")}
    assert {"browserml_ep", "browserml_latency_p50", "browserml_fallback_nodes"} <= properties
    result.stdout.fnmatch_lines(["test_model.py::test_add * wasm * passed *"])


def test_a_long_table_shows_the_rows_to_look_at_and_counts_the_others_and_verbose_shows_all(pytester):
    """ONNX's node suite made a table of 1,884 lines; the JSON and HTML reports keep every row."""
    pytester.makepyfile(test_many="""
import pytest

@pytest.mark.parametrize("n", range(60))
def test_many(browserml, n):
    assert n != 7
""")
    result = pytester.runpytest_subprocess("--browser-ep", "wasm", "-p", "no:randomly")
    result.assert_outcomes(passed=59, failed=1)
    table = result.outlines[result.outlines.index(next(line for line in result.outlines if "tests x EPs" in line)):]
    assert [line.split()[0] for line in table if line.startswith("test_")] == ["test_many.py::test_many[7]"]
    result.stdout.fnmatch_lines(["59 passed rows not shown: -v shows them, and --browserml-report and "
                                 "--browserml-html keep every row"])
    verbose = pytester.runpytest_subprocess("--browser-ep", "wasm", "-p", "no:randomly", "-v")
    assert sum(line.startswith("test_many.py::test_many[") and " wasm " in line for line in verbose.outlines) >= 60
    verbose.stdout.no_fnmatch_line("*rows not shown*")
