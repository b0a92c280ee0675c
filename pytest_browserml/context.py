"""What the plugin keeps per pytest session, shared by the fixture and the ONNX folder collector."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

import pytest

from .browser.launch import BrowserSetupError, ExecutionProvider
from .browser.provision import ProvisionError
from .report.ledger import ADAPTER_PROPERTY
from .runner import EpBrowser, Runtime

RUNTIME_KEY = pytest.StashKey[Runtime]()
PROJECT_TOLERANCE_KEY = pytest.StashKey[tuple]()  # ToleranceLayer from pyproject.toml, or ()
PROJECT_BUDGET_KEY = pytest.StashKey[tuple]()  # BudgetLayer from pyproject.toml, or ()


def usable_ep_browser(node: pytest.Item, ep: ExecutionProvider, timed: bool = True) -> EpBrowser:
    """The EP's browser, or skip the test with doctor's reason (fail it under --browser-ep-strict).
    The test's report rows name the WebGPU adapter it ran on.

    `timed`: the test times its runs (a `browserml` test), so its browser runs the wasm tier users' browsers run.
    """
    __tracebackhide__ = True
    runtime = node.config.stash[RUNTIME_KEY]
    try:
        ep_browser = runtime.browser_for(ep, timed)
        probe = ep_browser.probe()
    except (ProvisionError, BrowserSetupError) as error:
        raise pytest.fail.Exception(str(error), pytrace=False) from None
    if not probe["ok"]:
        message = f"{ep.id} cannot run in this browser: {probe['reason']}"
        if runtime.settings.strict:
            pytest.fail(f"{message} (--browser-ep-strict or browserml_ep_strict is set)", pytrace=False)
        pytest.skip(message)
    if ep.name == "webgpu" and (adapter := ep_browser.environment().adapter):
        node.user_properties.append((ADAPTER_PROPERTY, adapter.describe()))
    return ep_browser


def reporter_progress(config: pytest.Config) -> Callable[[str], None] | None:
    """A line on pytest's terminal for a long wait, from any thread (a download, a slow run); None without
    a terminal (xdist workers: their controller shows nothing of theirs)."""
    if hasattr(config, "workerinput"):
        return None
    lock = threading.Lock()

    def say(message: str) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")  # registered after this plugin's configure
        capture = config.pluginmanager.get_plugin("capturemanager")
        if reporter is None:
            return
        with lock, capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.write_line(f"browserml: {message}")

    return say
