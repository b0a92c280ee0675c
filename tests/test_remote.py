"""Remote browsers: a real Playwright browser server on loopback, with the pinned Chromium."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

import pytest

from pytest_browserml.browser import remote
from pytest_browserml.browser.launch import BrowserChoice
from tests import modelzoo

TESTS = """
import numpy as np

X = np.random.default_rng(5).standard_normal((1, 3, 16, 16)).astype(np.float32)

def test_conv(browserml):
    browserml.assert_golden(browserml.run("models/conv.onnx", {"x": X}, warmup=0, iterations=2), per_ep=True)
"""
EPS = ("--browser-ep", "wasm", "--browser-ep", "webgpu", "--browser-ep", "webnn")


@pytest.fixture
def browser_server():
    process, endpoint = remote.start_server(BrowserChoice.resolve(None, None, fetch=True))
    yield process, endpoint
    remote.stop_server(process)


def test_remote_runs_give_the_same_outputs_as_local_and_name_the_device(pytester, browser_server):
    _, endpoint = browser_server
    modelzoo.conv(pytester.path / "models" / "conv.onnx")
    pytester.makepyfile(test_model=TESTS)
    pytester.runpytest_subprocess(*EPS, "--update-goldens").assert_outcomes(passed=3)  # local goldens, per EP
    result = pytester.runpytest_subprocess(*EPS, "--browser-ws-endpoint", endpoint, "--browserml-report", "r.json")
    result.assert_outcomes(passed=3)  # the remote outputs match the local ones within 2 ULP
    report = json.loads((pytester.path / "r.json").read_text())
    devices = {test["ep"]: test["runs"][0]["device"] for test in report["tests"]}
    assert set(devices) == {"wasm", "webgpu", "webnn"}
    assert all(device.startswith("browser server 127.0.0.1:") and "Linux" in device for device in devices.values())
    assert not list(pytester.path.glob("goldens/**/*.obtained.npz"))


def test_a_server_that_stops_mid_suite_fails_clearly_and_never_runs_locally(pytester, browser_server):
    process, endpoint = browser_server
    modelzoo.add(pytester.path / "models" / "add.onnx")
    pytester.makepyfile(test_model=f"""
        import os, signal
        import numpy as np
        import pytest

        X = np.ones((2, 3), np.float32)

        def test_before(browserml):
            browserml.run("models/add.onnx", {{"x": X}}, warmup=0, iterations=1)

        def test_server_stops(browserml):
            os.kill({process.pid}, signal.SIGKILL)
            browserml.run("models/add.onnx", {{"x": X}}, warmup=0, iterations=1)

        @pytest.mark.parametrize("i", range(3))
        def test_after(browserml, i):
            browserml.run("models/add.onnx", {{"x": X}}, warmup=0, iterations=1)
    """)
    started = time.monotonic()
    result = pytester.runpytest_subprocess("--browser-ws-endpoint", endpoint, "-p", "no:randomly")
    assert time.monotonic() - started < 120
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed") == 1, result.stdout.str()
    assert outcomes.get("failed", 0) + outcomes.get("errors", 0) == 4
    result.stdout.fnmatch_lines(["*models/add.onnx on wasm: the page *", "*cannot reach the browser server ws://127.0.0.1:*"])


def test_xdist_workers_spread_over_several_endpoints(pytester, browser_server):
    _, first = browser_server
    second_process, second = remote.start_server(BrowserChoice.resolve(None, None, fetch=True))
    try:
        modelzoo.add(pytester.path / "models" / "add.onnx")
        pytester.makepyfile(test_model="""
            import numpy as np
            import pytest

            @pytest.mark.parametrize("i", range(6))
            def test_add(browserml, i):
                browserml.run("models/add.onnx", {"x": np.full((2, 3), i, np.float32)}, warmup=0, iterations=1)
        """)
        result = pytester.runpytest_subprocess("-n", "2", "--browser-ws-endpoint", first, "--browser-ws-endpoint",
                                               second, "--browserml-report", "r.json")
        result.assert_outcomes(passed=6)
        devices = {test["runs"][0]["device"].split(",")[0] for test in json.loads((pytester.path / "r.json").read_text())["tests"]}
        assert devices == {f"browser server {endpoint.split('/')[2]}" for endpoint in (first, second)}
    finally:
        remote.stop_server(second_process)


def below(pid: int) -> list[int]:
    """The processes `pid` started, and theirs (Playwright starts Chromium in a session of its own)."""
    children = map(int, subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split())
    return [found for child in children for found in (child, *below(child))]


@pytest.mark.slow
def proc(pid: int, name: str) -> bytes:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as file:
            return file.read()
    except OSError:  # gone
        return b""


def running(pids: list[int]) -> list[int]:
    """Those of `pids` that run (a zombie is no longer running)."""
    return [pid for pid in pids if proc(pid, "stat").rpartition(b")")[2].split()[:1] not in ([], [b"Z"])]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGKILL],
                         ids=lambda s: s.name)
def test_browserml_serve_stopped_by_a_signal_leaves_nothing_running(signum):
    """SIGKILL gives serve no chance: Node is told by the kernel (its parent died) and stops Chromium."""
    serve = subprocess.Popen([sys.executable, "-m", "pytest_browserml.cli", "serve"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    started = []
    try:
        endpoint = serve.stdout.readline().strip()
        assert endpoint.startswith("ws://"), endpoint
        started = below(serve.pid)  # Node's browser server and Chromium's processes
        assert len(started) >= 2
        os.kill(serve.pid, signum)
        code = serve.wait(timeout=60)
        if signum == signal.SIGKILL:  # Node stops after serve is gone
            deadline = time.monotonic() + 30
            while running(started) and time.monotonic() < deadline:
                time.sleep(0.1)
        assert not running(started), f"still running after {signum.name}: {running(started)}"
        assert code == (-signal.SIGKILL if signum == signal.SIGKILL else 0)
        address = urlsplit(endpoint)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((address.hostname, address.port), timeout=5)
    finally:
        serve.kill()
        for pid in running(started):  # on failure, what was left (checked: a pid may be another's by now)
            if any(name in proc(pid, "cmdline") for name in (b"chromium", b"playwright")):
                os.kill(pid, signal.SIGKILL)
