"""The plugin as users meet it: pytester runs pytest on example test files."""

from __future__ import annotations

import re
import shutil
import stat
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from pytest_browserml import options
from pytest_browserml.browser import provision
from pytest_browserml.context import RUNTIME_KEY
from pytest_browserml.runner import BrowserML, Settings
from tests import modelzoo

ADD_TEST = """
import numpy as np

def test_add(browserml):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    result = browserml.run("models/add.onnx", {"x": x}, warmup=1, iterations=5)
    np.testing.assert_allclose(result.outputs["y"], x + x, rtol=1e-4)
    assert result.latency.rounds == 5
"""


@pytest.fixture
def project(pytester):
    """A user project with one model."""
    modelzoo.add(pytester.path / "models" / "add.onnx")
    return pytester


def test_one_test_per_ep_with_the_ep_in_its_id(project):
    project.makepyfile(test_model=ADD_TEST + "\ndef test_ep(browserml):\n    print('EP is', browserml.ep)\n")
    result = project.runpytest_subprocess("--browser-ep", "wasm", "--browser-ep", "webgpu", "--browser-ep", "webnn",
                                          "-v", "-s")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["*test_add?wasm? PASSED*", "*test_add?webgpu? PASSED*", "*test_add?webnn? PASSED*"])
    result.stdout.fnmatch_lines(["*EP is webnn*"])


def test_the_ini_twin_and_the_default(project):
    project.makepyfile(test_model=ADD_TEST)
    project.makeini("[pytest]\nbrowserml_eps = webgpu\n")
    project.runpytest_subprocess("-v").stdout.fnmatch_lines(["*test_add?webgpu? PASSED*"])
    project.makeini("[pytest]\n")
    project.runpytest_subprocess("-v").stdout.fnmatch_lines(["*test_add?wasm? PASSED*"])


INI_TWINS = [  # (ini, value, what the session then uses)
    ("browserml_eps", "webgpu webnn:gpu", lambda c: [ep.id for ep in _settings(c).eps] == ["webgpu", "webnn:gpu"]),
    ("browserml_ep_strict", "true", lambda c: _settings(c).strict is True),
    ("browserml_browser_executable", "/opt/chrome", lambda c: _settings(c).browser_executable == "/opt/chrome"),
    ("browserml_browser_channel", "msedge", lambda c: _settings(c).browser_channel == "msedge"),
    ("browserml_ws_endpoints", "ws://a:1/x ws://b:2/y",
     lambda c: _settings(c).ws_endpoints == ("ws://a:1/x", "ws://b:2/y")),
    ("browserml_ort_web_version", "1.29.0", lambda c: _settings(c).ort_web_version == "1.29.0"),
    ("browserml_golden_dir", "refs", lambda c: options.golden_dir(c) == c.rootpath / "refs"),
    ("browserml_budget_scale", "2.5", lambda c: _settings(c).budget_scale == 2.5),
    ("browserml_report", "out/r.json", lambda c: c.pluginmanager.get_plugin("browserml-reports").json_path
     == Path("out/r.json")),
    ("browserml_html", "out/r.html", lambda c: c.pluginmanager.get_plugin("browserml-reports").html_path
     == Path("out/r.html")),
]


def _settings(config):
    return config.stash[RUNTIME_KEY].settings


@pytest.mark.parametrize(("ini", "value", "used"), INI_TWINS, ids=[twin[0] for twin in INI_TWINS])
def test_each_ini_twin_by_itself_sets_its_option(pytester, ini, value, used):
    pytester.makeini(f"[pytest]\n{ini} = {value}\n")
    config = pytester.parseconfigure()
    assert used(config), f"{ini} = {value} in the ini alone was not used"


def test_strict_from_the_ini_alone_makes_an_ep_that_cannot_run_an_error(project, browser_without_webnn):
    project.makepyfile(test_model=ADD_TEST)
    project.makeini("[pytest]\nbrowserml_ep_strict = true\n")
    # one argument: a path given by itself would move the rootdir (and the ini search) to a common ancestor
    result = project.runpytest_subprocess("--browser-ep", "wasm", "--browser-ep", "webnn",
                                          f"--browser-executable={browser_without_webnn}")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*webnn cannot run in this browser: navigator.ml is undefined*"])


@pytest.mark.parametrize(("ini", "value", "says"), [
    ("browserml_timeout", "nan", "expected a number above 0 up to 86400"),
    ("browserml_timeout", "inf", "expected a number above 0 up to 86400"),
    ("browserml_timeout", "1e300", "expected a number above 0 up to 86400"),
    ("browserml_budget_scale", "nan", "expected a number above 0 up to 1000"),
    ("browserml_budget_scale", "inf", "expected a number above 0 up to 1000"),
    ("browserml_iterations", "2.5", "expected a whole number from 0 to 1000000"),
    ("browserml_warmup", "-1", "expected a whole number from 0 to 1000000"),
])
def test_a_number_setting_out_of_its_range_is_refused_naming_it_and_the_range(pytester, ini, value, says):
    pytester.makeini(f"[pytest]\n{ini} = {value}\n")
    with pytest.raises(pytest.UsageError, match=re.escape(f"{ini} = {value!r}: {says}")):
        pytester.parseconfigure()


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_budget_scale_on_the_command_line_is_held_to_the_same_range(pytester, value):
    with pytest.raises(pytest.UsageError, match=f"browserml_budget_scale = '{value}': expected a number above 0"):
        pytester.parseconfigure("--budget-scale", value)


def test_an_unknown_localise_mode_in_the_ini_is_a_usage_error_at_start(pytester):
    """Was a failure of every browserml test, each with a browser started for nothing."""
    pytester.makeini("[pytest]\nbrowserml_localise = sometimes\n")
    with pytest.raises(pytest.UsageError, match=re.escape("browserml_localise = 'sometimes': choose from ")):
        pytester.parseconfigure()


@pytest.mark.parametrize(("arguments", "says"), [
    ({"warmup": -1}, "browserml.run: warmup=-1: expected a whole number from 0 to 1000000"),
    ({"iterations": -3}, "browserml.run: iterations=-3: expected a whole number from 0 to 1000000"),
    ({"iterations": 2.5}, "browserml.run: iterations=2.5: expected a whole number from 0 to 1000000"),
    ({"iterations": True}, "browserml.run: iterations=True: expected a whole number"),
    ({"inputs": [np.ones(3)]}, "browserml.run: inputs must map each input name to an array, e.g. {'x': array}; "
                               "got list"),
])
def test_run_arguments_that_would_run_other_rounds_or_break_later_are_refused(arguments, says):
    inputs = arguments.pop("inputs", {"x": np.ones(3)})
    fixture = BrowserML(None, Settings(eps=(), strict=False, timeout_s=1, ort_web_version="",
                                       browser_executable=None, browser_channel=None, auto_install=False,
                                       warmup=1, iterations=5), roots=())
    with pytest.raises((ValueError, TypeError), match=re.escape(says)):
        fixture.run("models/add.onnx", inputs, **arguments)


@pytest.mark.parametrize(("toml", "says"), [
    ("[tool.browserml.tolerence]\natol = 1e-3\n",
     "[tool.browserml] has an unknown key 'tolerence'; did you mean [tool.browserml.tolerance]?"),
    ("[tool.browserml]\ntimeout = 5\n",
     "[tool.browserml] has an unknown key 'timeout'; did you mean browserml_timeout = ... in [tool.pytest.ini_options]?"),
    ("[tool.browserml.budgets]\nlatency_p50 = '5 ms'\n",
     "[tool.browserml] has an unknown key 'budgets'; did you mean [tool.browserml.budget]?"),
])
def test_an_unknown_key_in_tool_browserml_is_an_error_naming_the_nearest_known_one(pytester, toml, says):
    pytester.makepyprojecttoml(toml)
    with pytest.raises(pytest.UsageError, match=re.escape(says)):
        pytester.parseconfigure()


def test_browser_ep_marker_limits_a_test_to_some_eps(project):
    project.makepyfile(test_model="""
        import pytest

        @pytest.mark.browser_ep("webgpu")
        def test_gpu_only(browserml):
            assert browserml.ep == "webgpu"
    """)
    result = project.runpytest_subprocess("--browser-ep", "wasm", "--browser-ep", "webgpu", "-v")
    result.assert_outcomes(passed=1)


def test_an_unknown_ep_in_the_browser_ep_marker_is_an_error_not_a_silent_skip(project):
    project.makepyfile(test_model="""
        import pytest

        @pytest.mark.browser_ep("cuda")
        def test_on_cuda(browserml):
            pass
    """)
    result = project.runpytest_subprocess("--browser-ep", "wasm")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*@pytest.mark.browser_ep('cuda') on test_on_cuda: unknown execution provider; "
                                 "choose from wasm, webgpu, webnn*"])


def test_an_unknown_ep_is_a_usage_error(project):
    project.makepyfile(test_model=ADD_TEST)
    result = project.runpytest_subprocess("--browser-ep", "cuda")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--browser-ep 'cuda': unknown execution provider; choose from wasm, webgpu, webnn*"])


@pytest.fixture
def browser_without_webnn(tmp_path):
    """The pinned Chromium started without its WebNN switch: a real browser in which webnn cannot run."""
    chromium = provision.pinned_chromium()
    wrapper = tmp_path / "chromium-without-webnn"
    wrapper.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import os, sys
        os.environ["LD_LIBRARY_PATH"] = {str(chromium.library_dir)!r}
        args = [a for a in sys.argv[1:] if a != "--enable-features=WebMachineLearningNeuralNetwork"]
        os.execv({str(chromium.executable)!r}, [{str(chromium.executable)!r}, "--no-zygote", *args])
    """))
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    return wrapper


def test_an_ep_that_cannot_run_is_skipped_with_the_reason_or_fails_when_strict(project, browser_without_webnn):
    project.makepyfile(test_model=ADD_TEST)
    args = ("--browser-ep", "wasm", "--browser-ep", "webnn", "--browser-executable", str(browser_without_webnn), "-rs")
    result = project.runpytest_subprocess(*args)
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*webnn cannot run in this browser: navigator.ml is undefined*"])
    strict = project.runpytest_subprocess(*args, "--browser-ep-strict")
    strict.assert_outcomes(passed=1, errors=1)
    strict.stdout.fnmatch_lines(["*webnn cannot run in this browser: navigator.ml is undefined*--browser-ep-strict*"])


def test_a_failure_in_the_browser_fails_that_test_and_the_next_runs(project):
    (project.path / "models" / "corrupt.onnx").write_bytes(b"this is not a model")
    project.makepyfile(test_model=textwrap.dedent("""
        import numpy as np

        def test_corrupt(browserml):
            browserml.run("models/corrupt.onnx", {"x": np.ones((2, 3), np.float32)})

        def test_missing(browserml):
            browserml.run("models/nowhere.onnx", {"x": np.ones((2, 3), np.float32)})
    """) + ADD_TEST)
    result = project.runpytest_subprocess("--browser-ep", "wasm")
    result.assert_outcomes(failed=2, passed=1)
    result.stdout.fnmatch_lines([
        "*ModelRunError: *models/corrupt.onnx on wasm: onnxruntime-web failed: *",
        "*FileNotFoundError: file not found: models/nowhere.onnx (looked at *",
    ])


def test_a_run_past_the_timeout_fails_and_the_page_is_replaced(project):
    """Past 5 s the wait says on the terminal what it waits for; at the timeout the page is replaced."""
    modelzoo.endless_loop(project.path / "models" / "endless.onnx")
    project.makeini("[pytest]\nbrowserml_timeout = 8\n")
    project.makepyfile(test_model=textwrap.dedent("""
        import numpy as np

        def test_endless(browserml):
            browserml.run("models/endless.onnx", {"x": np.ones(1, np.float32)}, warmup=0, iterations=1)
    """) + ADD_TEST)
    result = project.runpytest_subprocess("--browser-ep", "wasm")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["browserml: endless.onnx on wasm: waiting 5 s for onnxruntime-web to create the "
                                 "session (load, optimise) and 0 warm-up and 1 timed runs"])
    result.stdout.fnmatch_lines(["*models/endless.onnx on wasm: the page did not answer within "
                                 "browserml_timeout = 8 s; it was replaced*"])


def test_the_first_run_on_a_fresh_page_has_its_whole_timeout_for_itself(project):
    """A fresh page's first call also waits for the page to be ready (ORT compiling its wasm in the
    background): that wait is the page opening's deadline, not the run's. Staged: a fresh page's renderer
    is stopped for longer than browserml_timeout just before its first call."""
    project.makeini("[pytest]\nbrowserml_timeout = 3\n")
    project.makepyfile(test_model=textwrap.dedent("""
        import os
        import signal
        import threading
        import numpy as np

        def test_first_run(browserml):
            browserml._ep_browser.page().close()  # the next is a fresh page, ORT's wasm still compiling
            renderers = browserml._ep_browser.page().processes.pids_by_type["renderer"]
            for pid in renderers:
                os.kill(pid, signal.SIGSTOP)
            threading.Timer(5.0, lambda: [os.kill(pid, signal.SIGCONT) for pid in renderers]).start()
            x = np.ones((2, 3), np.float32)
            np.testing.assert_allclose(browserml.run("models/add.onnx", {"x": x}, warmup=0, iterations=1).outputs["y"], x + x)
    """))
    result = project.runpytest_subprocess("--browser-ep", "wasm")
    result.assert_outcomes(passed=1)


def test_missing_downloads_say_which_command_fixes_them(project, tmp_path, monkeypatch):
    project.makepyfile(test_model=ADD_TEST)
    project.makeini("[pytest]\nbrowserml_auto_install = false\n")
    monkeypatch.setenv("BROWSERML_CACHE", str(tmp_path / "empty-cache"))
    result = project.runpytest_subprocess("--browser-ep", "wasm")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*onnxruntime-web 1.30.0 is not in the cache*Run `browserml install*"])


def test_a_renderer_killed_mid_run_fails_that_test_and_the_next_gets_a_fresh_page(project):
    modelzoo.endless_loop(project.path / "models" / "endless.onnx")
    project.makepyfile(test_model=textwrap.dedent("""
        import threading
        import numpy as np

        def test_killed(browserml):
            page = browserml._ep_browser.page()
            threading.Timer(2.0, page.processes.kill_renderers).start()
            browserml.run("models/endless.onnx", {"x": np.ones(1, np.float32)}, warmup=0, iterations=1)
    """) + ADD_TEST)
    result = project.runpytest_subprocess("--browser-ep", "wasm")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*models/endless.onnx on wasm: the page crashed (renderer killed or out of memory)*"
                                 "it was replaced*"])


def test_a_channel_that_closes_before_the_renderer_is_seen_to_die_is_still_a_crash(project):
    """The race behind the kill being seen as "the page closed the channel" under load, staged: the channel
    ends first, the renderer dies a moment later."""
    modelzoo.endless_loop(project.path / "models" / "endless.onnx")
    project.makepyfile(test_model=textwrap.dedent("""
        import socket
        import threading
        import numpy as np

        def test_killed(browserml):
            page = browserml._ep_browser.page()

            def channel_closes_then_the_renderer_dies():
                page.channel._socket.shutdown(socket.SHUT_RDWR)
                threading.Timer(0.3, page.processes.kill_renderers).start()

            threading.Timer(2.0, channel_closes_then_the_renderer_dies).start()
            browserml.run("models/endless.onnx", {"x": np.ones(1, np.float32)}, warmup=0, iterations=1)
    """) + ADD_TEST)
    result = project.runpytest_subprocess("--browser-ep", "wasm")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*models/endless.onnx on wasm: the page crashed (renderer killed or out of memory)*"
                                 "it was replaced*"])


def test_a_relative_browser_executable_is_resolved_from_the_invocation_folder(project, browser_without_webnn):
    shutil.copy(browser_without_webnn, project.path / "chromium")
    project.makepyfile(test_model=ADD_TEST)
    result = project.runpytest_subprocess("--browser-ep", "wasm", "--browser-executable", "./chromium")
    result.assert_outcomes(passed=1)


def test_budget_sections_take_a_webnn_device_as_tolerance_sections_do():
    from pytest_browserml.budget.limits import BudgetLayer, resolve
    from pytest_browserml.golden.tolerances import ToleranceLayer

    settings = {"latency_p50": "50 ms", "webnn": {"latency_p50": "20 ms"}, "webnn:gpu": {"latency_p50": "5 ms"}}
    layer = BudgetLayer("marker on test_x", settings)
    assert resolve([layer], "webnn:gpu")["latency_p50"].origin == "marker on test_x [webnn:gpu]"
    assert resolve([layer], "webnn:gpu")["latency_p50"].limit == 5
    assert resolve([layer], "webnn")["latency_p50"].limit == 20
    assert resolve([layer], "wasm")["latency_p50"].limit == 50
    ToleranceLayer("marker on test_x", {"webnn:gpu": {"atol": 1e-3}})  # the same keys, accepted by both
    for key in ("webgpu:gpu", "webnn:tpu"):  # and refused by both
        with pytest.raises(ValueError, match=re.escape(key)):
            BudgetLayer("marker on test_x", {key: {"latency_p50": "5 ms"}})
        with pytest.raises(ValueError, match=re.escape(key)):
            ToleranceLayer("marker on test_x", {key: {"atol": 1e-3}})
