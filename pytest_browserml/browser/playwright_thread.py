"""The one thread that talks to Playwright, so that a browser can start while pytest collects.

Playwright's sync API serves only the thread that started it. A browser takes 0.6-1.1 s to launch and
open its page on the 16-core machine, and each pytest-xdist worker collects every test (0.5-1.3 s)
before its first one: the runtime starts the browser in this thread when collection meets the first
test that needs it, and every later Playwright call runs here too: opening and closing pages and
browsers, one at a time and in order, while the caller waits. A run's calls go over the page's
WebSocket channel, not Playwright, and stay in the caller's thread: Ctrl-C ends them there, and a run
hands nothing over while its page is usable.
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Callable
from typing import Any


class PlaywrightThread:
    """Runs functions in one daemon thread, in the order given; from that thread itself, at once."""

    def __init__(self, name: str = "browserml-playwright"):
        self._name = name
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pending = 0  # calls handed over and not yet done

    @property
    def started(self) -> bool:
        return self._thread is not None

    @property
    def busy(self) -> bool:
        """Whether calls handed over are still queued or running (e.g. a browser starting ahead of its test)."""
        return self._pending > 0

    def call(self, function: Callable[..., Any], *args, **kwargs) -> Any:
        """`function(*args, **kwargs)` in the thread; its value, or its exception with its own traceback."""
        __tracebackhide__ = True
        if threading.current_thread() is self._thread:
            return function(*args, **kwargs)
        done = threading.Event()
        outcome: dict[str, Any] = {}
        self._put((function, args, kwargs, outcome, done))
        done.wait()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    def start(self, function: Callable[..., Any], *args) -> None:
        """`function(*args)` in the thread, without waiting for it (nor for what it raises)."""
        self._put((function, args, {}, {}, threading.Event()))

    def stop(self, timeout_s: float) -> None:
        """End the thread once the calls before this one are done (a frozen call is the deadlines' to end)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._calls.put(None)
            thread.join(timeout_s)

    def _put(self, item) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
                self._thread.start()
            self._pending += 1
            self._calls.put(item)

    def _serve(self) -> None:
        while (item := self._calls.get()) is not None:
            function, args, kwargs, outcome, done = item
            try:
                outcome["value"] = function(*args, **kwargs)
            except BaseException as error:  # handed to the caller, who raises it
                outcome["error"] = error
            finally:
                with self._lock:
                    self._pending -= 1
                done.set()


def in_playwright_thread(method: Callable) -> Callable:
    """A method of an object with a `playwright_thread`, run in that thread."""
    @functools.wraps(method)
    def run_there(self, *args, **kwargs):
        __tracebackhide__ = True
        return self.playwright_thread.call(method, self, *args, **kwargs)
    return run_there
