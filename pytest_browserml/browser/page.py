"""The Python side of the page harness: one Playwright page running harness.js.

A local page takes its calls over its channel (a WebSocket to the plugin's
server, see channel.py), with a deadline kept here, not by the page: a page
whose main thread is stuck in wasm cannot run a JS timer, so at the deadline
we kill the page's renderer process. A remote page (its browser elsewhere)
takes them through Playwright, which keeps the deadline. A page that crashed,
hung or failed is closed; its owner opens a new one.

Every other wait on a local browser (opening and closing pages) has a deadline
too (processes.BrowserTree.deadline): a frozen browser is killed, never waited
for. While a call runs, a watch ends it at once if the browser or, on WebGPU,
the GPU process dies.
"""

from __future__ import annotations

import json
import queue
from collections.abc import Callable

# the classes playwright.sync_api exports, from where they are defined: importing the sync API costs 0.1-0.2 s,
# which xdist's controller (it never opens a browser) would pay before it starts the workers
from playwright._impl._errors import Error as PlaywrightError
from playwright._impl._errors import TimeoutError as PlaywrightTimeoutError

from .channel import ChannelClosed, PageChannel
from .playwright_thread import PlaywrightThread, in_playwright_thread
from .processes import BrowserProcesses, BrowserTree
from .remote import route_through_playwright
from .server import HarnessServer

_CALL = "text => window.browserml.{function}(JSON.parse(text)).then(JSON.stringify)"
CLOSE_DEADLINE_S = 10  # closing a page or a browser takes milliseconds unless the browser is frozen
OPEN_DEADLINE_MIN_S = 30  # opening a page loads and compiles onnxruntime-web: seconds on a loaded machine, whatever the timeout
_DIED = {  # a process of the browser that is gone -> what the failure says
    "browser": "the browser process exited (killed or crashed)",
    "GPU": "the GPU process died (killed or crashed), and WebGPU with it",
    "renderer": "the page crashed (renderer killed or out of memory)",
}


class PageFailure(RuntimeError):
    """The page crashed, hung past its deadline or was closed: it cannot be used again."""


class HarnessPage:
    def __init__(self, browser, tree: BrowserTree, server: HarnessServer, ort_bundle: str, timeout_s: float,
                 playwright_thread: PlaywrightThread, remote: bool = False, load_options: dict | None = None,
                 watched: tuple[str, ...] = ("browser",)):
        """`tree` is the browser's processes (pid None where unknown); `load_options`: more of harness.js
        load()'s arguments (the wasm engine's threads and warm-up); `watched`: the kinds of process whose
        death ends a call at once. Opened in `playwright_thread`, which its Playwright calls go to; its calls
        over the channel run in the caller's thread (Ctrl-C ends them there)."""
        self.playwright_thread = playwright_thread
        self.timeout_s = timeout_s
        self.tree = tree
        self.crashed = False
        self.channel: PageChannel | None = None
        self._watched = watched
        self._watch = None
        self.processes = BrowserProcesses({})  # a remote browser's process ids mean nothing here
        self._open_s = max(timeout_s, OPEN_DEADLINE_MIN_S)
        self._ready = True  # until load: after it harness.js compiles ORT's wasm in the background
        with tree.deadline(self._open_s, "opening a page"):
            self.page = browser.new_page()
            self.page.on("crash", self._on_crash)
            if remote:  # the page cannot reach this machine: answer its requests over the Playwright connection
                route_through_playwright(self.page, server.base_url)
            self.page.goto(server.url("index.html"))
            self.page.wait_for_function("() => window.browserml", timeout=self._open_s * 1000)
            if not remote:
                self.processes = BrowserProcesses.of(browser)
            self.info = self.call("load", {"ortUrl": server.url(f"ort/{ort_bundle}"), "wasmPaths": server.url("ort/"),
                                           **(load_options or {})}, timeout_s=self._open_s)
            self._ready = False
            if not remote:
                url, connected = server.expect_channel()
                self.page.evaluate("url => window.browserml.connect(url)", url)
                try:
                    self.channel = connected.get(timeout=self._open_s)
                except queue.Empty:
                    raise PageFailure(f"the page's call channel {url} did not connect within "
                                      f"{self._open_s:g} s (opening a page)") from None
                self._watch = self.processes.watch(watched, lambda _gone: self.channel.abort())

    def call(self, function: str, arg: dict, timeout_s: float | None = None,
             on_slow: Callable[[float], None] | None = None) -> dict:
        """Await `browserml.<function>(arg)` in the page and return its (JSON) result; `on_slow(seconds)`
        hears of a call that takes more than a few seconds (a local page only).

        Both ways travel as one JSON text, through Playwright too: its own value serialization
        walks every field on both sides and cost about 3 ms a call (bench/bench_node_suite.py).
        A fresh page's first run first waits, under the page opening's deadline, for ORT's wasm to be
        compiled, so that `timeout_s` is the run's own (a probe, e.g. at collection's end, does not wait).
        """
        if function == "run" and not self._ready:
            self._ready = True
            self.call("ready", {}, timeout_s=self._open_s)
        timeout_s = timeout_s or self.timeout_s
        if self.channel is None:
            return self._call_through_playwright(function, arg, timeout_s)
        try:
            with self._watch.active(on_slow):
                answer = json.loads(self.channel.call(json.dumps({"name": function, "arg": arg}), timeout_s))
        except TimeoutError:
            self.processes.kill_renderers()
            self.close()
            frozen = (f"; the browser did not answer {self.tree.killed_waiting_for} either and was killed"
                      if self.tree.killed_waiting_for else "")
            raise PageFailure(self._timed_out(timeout_s) + frozen) from None
        except ChannelClosed as closed:
            raise self._replaced(str(closed), settle=True) from None
        except BaseException:  # e.g. Ctrl-C: an answer still on its way must not reach the next call
            self.close()
            raise
        if "browsermlError" in answer:
            raise self._replaced(answer["browsermlError"])
        return answer

    @in_playwright_thread
    def _call_through_playwright(self, function: str, arg: dict, timeout_s: float) -> dict:
        """One more round trip than evaluate, but the deadline holds without a local process to kill."""
        try:
            handle = self.page.wait_for_function(_CALL.format(function=function), arg=json.dumps(arg),
                                                 timeout=timeout_s * 1000)
            return json.loads(handle.json_value())
        except PlaywrightTimeoutError:
            self.close()
            raise PageFailure(self._timed_out(timeout_s)) from None
        except PlaywrightError as error:
            raise self._replaced(error.message.splitlines()[0]) from error

    def _timed_out(self, timeout_s: float) -> str:
        deadline = f"browserml_timeout = {timeout_s:g} s" if timeout_s == self.timeout_s else \
            f"{timeout_s:g} s (opening a page: loading and compiling onnxruntime-web)"
        return f"the page did not answer within {deadline}; it was replaced"

    def _replaced(self, detail: str, settle: bool = False) -> PageFailure:
        """Close the page (its owner opens a new one) and say what became of it.

        With `settle`, a closed channel waits briefly for the death that closed it to show in /proc:
        the channel can close before the killed process is seen to die, longer so on a loaded machine.
        """
        kinds = (*self._watched, "renderer")
        gone = self.processes.settle(kinds) if settle and self.processes.all else self.processes.first_gone(kinds)
        if gone is None and self.crashed:
            gone = "renderer"
        failure = _DIED[gone] if gone else "the page failed"
        self.close()
        return PageFailure(f"{failure}: {detail.strip()}; it was replaced")

    def failure_if_gone(self, detail: str) -> str:
        """What a call that answered with `detail` became when a watched process died under it (the page is
        then replaced: "the GPU process died ...; it was replaced"); `detail` alone when all live."""
        if self.processes.settle((*self._watched, "renderer")) is None:
            return detail
        return str(self._replaced(detail, settle=True))

    @property
    def usable(self) -> bool:
        return not self.crashed and not self.page.is_closed()

    @property
    def browser_usable(self) -> bool:
        """False once the local browser process is gone (Playwright notices only when it next talks to it)
        or a process it needs died, e.g. the GPU process on WebGPU (Chromium restarts it, then gives up on it)."""
        return self.tree.alive and self.processes.first_gone(self._watched) is None

    @in_playwright_thread
    def close(self) -> None:
        if self._watch is not None:
            self._watch.stop()
        if self.channel is not None:
            self.channel.close()
        with self.tree.deadline(CLOSE_DEADLINE_S, "closing a page"):
            try:
                self.page.close(run_before_unload=False)
            except PlaywrightError:
                pass
        self.processes.close()

    def _on_crash(self, _page) -> None:
        self.crashed = True

