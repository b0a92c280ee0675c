"""A pytest plugin for the benchmarks (loaded with `-p _bench_timing`, bench/ on PYTHONPATH).

It changes nothing the plugin does; it only records, per test item, wall times taken
around pytest's phases and around the plugin's calls into the page, with the figures
the page measured itself (session creation, first run, transfers, whether the session
came from the page's cache). The records go as JSON lines to $BENCH_TIMINGS (one file
per process: ".<worker>" is appended under pytest-xdist).

Why not --browserml-report: ONNX test-data items (onnx_suite.py) call EpBrowser.run
directly, not through the fixture, so they carry no run properties and the JSON report
has no row for them.
"""

from __future__ import annotations

import json
import os
import time

import pytest

PROCESS_IMPORTED = time.time()
_path = os.environ.get("BENCH_TIMINGS")
_records: list[dict] = []
_current: dict | None = None
_marks: dict[str, float] = {"plugin_imported": PROCESS_IMPORTED}
_cpu: dict[str, float] = {"plugin_imported": time.process_time()}  # this process's CPU (all threads) at each mark


def _mark(name: str) -> None:
    _marks.setdefault(name, time.time())
    _cpu.setdefault(name, time.process_time())


def _wrap(owner, name, record):
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        return record(original, time.perf_counter(), *args, **kwargs)

    wrapper.__wrapped__ = original
    setattr(owner, name, wrapper)


def _install() -> None:
    from pytest_browserml import runner
    from pytest_browserml.browser import launch as browser
    from pytest_browserml.browser import page

    def page_call(original, started, self, function, arg, *args, **kwargs):
        answer = original(self, function, arg, *args, **kwargs)
        if function == "run" and _current is not None:
            wall = (time.perf_counter() - started) * 1000
            _current["page_calls"].append({
                "wall_ms": wall, "ok": answer.get("ok"), "cached": answer.get("cached"),
                "create_ms": answer.get("createMs"), "first_run_ms": answer.get("firstRunMs"),
                "times_ms": answer.get("timesMs"), "transfer": answer.get("transfer"),
                "log_lines": len(answer.get("log") or ()), "log_chars": sum(map(len, answer.get("log") or ())),
                "wasm_memory": (answer.get("memory") or {}).get("wasm"),
                "output_base64_chars": len(answer.get("outputBase64") or ""),
            })
        elif function == "load":
            _mark("ort_loaded")
        return answer

    def ep_run(original, started, *args, **kwargs):
        try:
            return original(*args, **kwargs)
        finally:
            if _current is not None:
                _current["ep_run_ms"] += (time.perf_counter() - started) * 1000

    def timed(mark):
        def record(original, started, *args, **kwargs):
            _mark(mark + "_start")
            try:
                return original(*args, **kwargs)
            finally:
                _marks[mark + "_ms"] = _marks.get(mark + "_ms", 0.0) + (time.perf_counter() - started) * 1000
                _mark(mark + "_end")
        return record

    def function_timer(label):
        def record(original, started, *args, **kwargs):
            try:
                return original(*args, **kwargs)
            finally:
                if _current is not None:
                    spent = (time.perf_counter() - started) * 1000
                    _current["functions"][label] = _current["functions"].get(label, 0.0) + spent
        return record

    from pytest_browserml import model, onnx_suite
    from pytest_browserml.browser import processes, provision, transport
    from pytest_browserml.budget import placement, stats

    for owner, name, label in [
        (onnx_suite, "_parse", "onnx_suite._parse"),
        (onnx_suite, "_values", "onnx_suite._values"),
        (onnx_suite, "compare_outputs", "compare_outputs"),
        (onnx_suite, "usable_ep_browser", "context.usable_ep_browser"),
        (runner.Runtime, "model_files", "Runtime.model_files"),
        (model, "load_without_weights", "model.load_without_weights (onnx.load)"),
        (provision, "file_sha256", "provision.file_sha256"),
        (placement, "parse", "placement.parse"),
        (transport, "encode", "transport.encode"),
        (transport, "decode", "transport.decode"),
        (stats, "latency", "stats.latency"),
        (processes.BrowserProcesses, "reset_peak_rss", "processes.reset_peak_rss"),
        (processes.BrowserProcesses, "peak_rss", "processes.peak_rss"),
        (runner.EpBrowser, "environment", "EpBrowser.environment"),
    ]:
        if hasattr(owner, name):
            _wrap(owner, name, function_timer(label))

    for owner, name, mark in [
        (provision, "ort_web", "provision_ort_web"),
        (provision, "pinned_chromium", "provision_chromium"),
        (provision, "_npm_pack", "npm_pack"),
        (provision, "_verify_integrity", "npm_verify_integrity"),
        (provision, "_unpack_ort_web", "unpack_ort_web"),
        (provision, "_unpack_chromium", "unpack_chromium"),
        (provision, "_manifest", "manifest_hashing"),
        (runner, "HarnessServer", "server_start"),
    ]:
        if hasattr(owner, name):
            _wrap(owner, name, timed(mark))
    try:
        from playwright.sync_api._context_manager import PlaywrightContextManager

        _wrap(PlaywrightContextManager, "start", timed("playwright_start"))
    except ImportError:
        pass

    _wrap(page.HarnessPage, "call", page_call)
    _wrap(runner.EpBrowser, "run", ep_run)
    _wrap(runner.Runtime, "start", timed("runtime_start"))
    _wrap(browser.BrowserChoice, "launch", timed("browser_launch"))
    _wrap(page.HarnessPage, "__init__", timed("page_open"))
    _wrap(runner.EpBrowser, "probe", timed("probe"))


_install()


def pytest_configure(config):
    _mark("configure")


def pytest_collection_finish(session):
    _mark("collection_finished")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    global _current
    _current = {"nodeid": item.nodeid, "page_calls": [], "ep_run_ms": 0.0, "phases": {}, "functions": {}}
    started = time.perf_counter()
    yield
    _current["protocol_ms"] = (time.perf_counter() - started) * 1000
    _records.append(_current)
    _current = None


def _phase(name):
    @pytest.hookimpl(hookwrapper=True)
    def hook(item):
        if name == "call":
            _mark("first_test_call")
        started = time.perf_counter()
        yield
        if _current is not None:
            _current["phases"][name] = (time.perf_counter() - started) * 1000
    return hook


pytest_runtest_setup = _phase("setup")
pytest_runtest_call = _phase("call")
pytest_runtest_teardown = _phase("teardown")


def pytest_runtest_logreport(report):
    if _current is not None and (report.when == "call" or report.outcome != "passed"):
        _current["outcome"] = report.outcome
        _current.setdefault("outcome_when", report.when)


def pytest_sessionfinish(session):
    _mark("session_finished")


def pytest_unconfigure(config):
    if not _path:
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    path = f"{_path}.{worker}" if worker else _path
    _mark("unconfigure")
    with open(path, "w") as handle:
        handle.write(json.dumps({"marks": _marks, "cpu": _cpu, "pid": os.getpid(), "worker": worker}) + "\n")
        for record in _records:
            handle.write(json.dumps(record) + "\n")
