"""The Python side of the page harness: one Playwright page running harness.js.

A local page takes its calls over its channel (a WebSocket to the plugin's
server, see channel.py), with a deadline kept here, not by the page: a page
whose main thread is stuck in wasm cannot run a JS timer, so at the deadline
we kill the page's renderer process. A remote page (its browser elsewhere)
takes them through Playwright, which keeps the deadline. A page that crashed,
hung or failed is closed; its owner opens a new one.
"""

from __future__ import annotations

import json
import queue

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from .channel import ChannelClosed, PageChannel
from .processes import BrowserProcesses
from .remote import route_through_playwright
from .server import HarnessServer

_CALL = "text => window.browserml.{function}(JSON.parse(text)).then(JSON.stringify)"


class PageFailure(RuntimeError):
    """The page crashed, hung past its deadline or was closed: it cannot be used again."""


class HarnessPage:
    def __init__(self, browser, server: HarnessServer, ort_bundle: str, timeout_s: float, remote: bool = False,
                 load_options: dict | None = None):
        """`load_options`: more of harness.js load()'s arguments (the wasm engine's threads and warm-up)."""
        self.timeout_s = timeout_s
        self.crashed = False
        self.channel: PageChannel | None = None
        self.page = browser.new_page()
        self.page.on("crash", self._on_crash)
        if remote:  # the page cannot reach this machine: answer its requests over the Playwright connection
            route_through_playwright(self.page, server.base_url)
        self.page.goto(server.url("index.html"))
        self.page.wait_for_function("() => window.browserml", timeout=timeout_s * 1000)
        # a remote browser's process ids mean nothing here
        self.processes = BrowserProcesses({}) if remote else BrowserProcesses.of(browser)
        self.info = self.call("load", {"ortUrl": server.url(f"ort/{ort_bundle}"), "wasmPaths": server.url("ort/"),
                                       **(load_options or {})})
        if not remote:
            url, connected = server.expect_channel()
            self.page.evaluate("url => window.browserml.connect(url)", url)
            try:
                self.channel = connected.get(timeout=timeout_s)
            except queue.Empty:
                raise PageFailure(f"the page's call channel {url} did not connect within "
                                  f"browserml_timeout = {timeout_s:g} s") from None

    def call(self, function: str, arg: dict, timeout_s: float | None = None) -> dict:
        """Await `browserml.<function>(arg)` in the page and return its (JSON) result.

        Both ways travel as one JSON text, through Playwright too: its own value serialization
        walks every field on both sides and cost about 3 ms a call (bench/bench_node_suite.py).
        """
        timeout_s = timeout_s or self.timeout_s
        if self.channel is None:
            return self._call_through_playwright(function, arg, timeout_s)
        try:
            answer = json.loads(self.channel.call(json.dumps({"name": function, "arg": arg}), timeout_s))
        except TimeoutError:
            self.processes.kill_renderers()
            self.close()
            raise PageFailure(_timed_out(timeout_s)) from None
        except ChannelClosed as closed:
            raise self._replaced(str(closed)) from None
        except BaseException:  # e.g. Ctrl-C: an answer still on its way must not reach the next call
            self.close()
            raise
        if "browsermlError" in answer:
            raise self._replaced(answer["browsermlError"])
        return answer

    def _call_through_playwright(self, function: str, arg: dict, timeout_s: float) -> dict:
        """One more round trip than evaluate, but the deadline holds without a local process to kill."""
        try:
            handle = self.page.wait_for_function(_CALL.format(function=function), arg=json.dumps(arg),
                                                 timeout=timeout_s * 1000)
            return json.loads(handle.json_value())
        except PlaywrightTimeoutError:
            self.close()
            raise PageFailure(_timed_out(timeout_s)) from None
        except PlaywrightError as error:
            raise self._replaced(error.message.splitlines()[0]) from error

    def _replaced(self, detail: str) -> PageFailure:
        """Close the page (its owner opens a new one) and say what became of it."""
        if not self.browser_alive:
            failure = "the browser process exited (killed or crashed)"
        elif self.crashed or (self.processes.all and not self.processes.running("renderer")):
            failure = "the page crashed (renderer killed or out of memory)"
        else:
            failure = "the page failed"
        self.close()
        return PageFailure(f"{failure}: {detail}; it was replaced")

    @property
    def usable(self) -> bool:
        return not self.crashed and not self.page.is_closed()

    @property
    def browser_alive(self) -> bool:
        """False once the local browser process is gone; Playwright notices only when it next talks to it."""
        return self.processes.running("browser")

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
        try:
            self.page.close(run_before_unload=False)
        except PlaywrightError:
            pass
        self.processes.close()

    def _on_crash(self, _page) -> None:
        self.crashed = True


def _timed_out(timeout_s: float) -> str:
    return f"the page did not answer within browserml_timeout = {timeout_s:g} s; it was replaced"
