"""The Python side of the page harness: one Playwright page running harness.js.

Every call into the page has a deadline kept by a watchdog thread, not by the
page: a page whose main thread is stuck in wasm cannot run a JS timer, so at
the deadline the watchdog kills the page's renderer process, which makes the
pending call fail at once. A page that crashed or hung is closed; its owner
opens a new one.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from typing import Callable

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from .processes import BrowserProcesses
from .remote import route_through_playwright
from .server import HarnessServer

CONSOLE_KEPT = 200
_CALL = "text => window.browserml.{function}(JSON.parse(text)).then(JSON.stringify)"


class PageFailure(RuntimeError):
    """The page crashed, hung past its deadline or was closed: it cannot be used again."""


class HarnessPage:
    def __init__(self, browser, server: HarnessServer, ort_bundle: str, timeout_s: float, remote: bool = False):
        self.timeout_s = timeout_s
        self.crashed = False
        self.timed_out = False
        self.console: deque[str] = deque(maxlen=CONSOLE_KEPT)
        self.page = browser.new_page()
        self.page.on("console", self._on_console)
        self.page.on("crash", self._on_crash)
        if remote:  # the page cannot reach this machine: answer its requests over the Playwright connection
            route_through_playwright(self.page, server.base_url)
        self.page.goto(server.url("index.html"))
        self.page.wait_for_function("() => window.browserml", timeout=timeout_s * 1000)
        # a remote browser's process ids mean nothing here
        self.processes = BrowserProcesses({}) if remote else BrowserProcesses.of(browser)
        self.info = self.call("load", {"ortUrl": server.url(f"ort/{ort_bundle}"), "wasmPaths": server.url("ort/")})

    def call(self, function: str, arg: dict, timeout_s: float | None = None) -> dict:
        """Await `browserml.<function>(arg)` in the page and return its (JSON) result.

        Both ways travel as one JSON text: Playwright's own value serialization walks every
        field on both sides and cost about 3 ms a call (bench/bench_node_suite.py).
        """
        timeout_s = timeout_s or self.timeout_s
        deadline = None
        try:
            if not self.processes.all:  # no renderer to kill: let Playwright keep the deadline
                return self._call_with_driver_deadline(function, arg, timeout_s)
            deadline = WATCHDOG.arm(timeout_s, self._time_out)
            return json.loads(self.page.evaluate(_CALL.format(function=function), json.dumps(arg)))
        except PlaywrightTimeoutError:
            self.close()
            raise PageFailure(f"the page did not answer within browserml_timeout = {timeout_s:g} s; "
                              "it was replaced") from None
        except PlaywrightError as error:
            self.close()
            if self.timed_out:
                raise PageFailure(f"the page did not answer within browserml_timeout = {timeout_s:g} s; "
                                  "it was replaced") from None
            if self.crashed:
                reason = "the page crashed (renderer killed or out of memory)"
            elif not self.browser_alive:
                reason = "the browser process exited (killed or crashed)"
            else:
                reason = "the page failed"
            raise PageFailure(f"{reason}: {error.message.splitlines()[0]}; it was replaced") from error
        finally:
            WATCHDOG.disarm(deadline)

    def _call_with_driver_deadline(self, function: str, arg: dict, timeout_s: float) -> dict:
        """One more round trip than evaluate, but the deadline holds without a local process to kill."""
        handle = self.page.wait_for_function(_CALL.format(function=function), arg=json.dumps(arg),
                                             timeout=timeout_s * 1000)
        return json.loads(handle.json_value())

    def new_console_lines(self) -> list[str]:
        """Browser console errors and warnings since the last call (WebGPU validation errors come this way)."""
        lines = list(self.console)
        self.console.clear()
        return lines

    @property
    def usable(self) -> bool:
        return not self.crashed and not self.page.is_closed()

    @property
    def browser_alive(self) -> bool:
        """False once the local browser process is gone; Playwright notices only when it next talks to it."""
        return self.processes.running("browser")

    def close(self) -> None:
        try:
            self.page.close(run_before_unload=False)
        except PlaywrightError:
            pass
        self.processes.close()

    def _time_out(self) -> None:
        self.timed_out = True
        self.processes.kill_renderers()

    def _on_console(self, message) -> None:
        if message.type in ("error", "warning"):
            self.console.append(message.text)

    def _on_crash(self, _page) -> None:
        self.crashed = True



class Watchdog:
    """Calls a function once its deadline passes, unless disarmed first.

    One thread for the whole process, started on first use; arming and disarming
    only touch a dict, where a threading.Timer per call cost 0.16 ms a call.
    """

    TICK_S = 0.05

    def __init__(self):
        self._pending: dict[object, tuple[float, Callable[[], None]]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def arm(self, timeout_s: float, on_deadline: Callable[[], None]) -> object:
        key = object()
        with self._lock:
            self._pending[key] = (time.monotonic() + timeout_s, on_deadline)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="browserml-watchdog", daemon=True)
                self._thread.start()
        return key

    def disarm(self, key: object) -> None:
        with self._lock:
            self._pending.pop(key, None)

    def _watch(self) -> None:
        while True:
            time.sleep(self.TICK_S)
            now = time.monotonic()
            with self._lock:
                due = [key for key, (deadline, _) in self._pending.items() if deadline <= now]
                callbacks = [self._pending.pop(key)[1] for key in due]
            for callback in callbacks:
                callback()


WATCHDOG = Watchdog()
