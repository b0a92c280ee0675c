"""The operating-system processes of one browser: kill the renderer, read peak memory, bound every wait.

Chromium reports its processes over CDP (SystemInfo.getProcessInfo). For a
browser on this machine we can then act on them directly: kill a renderer
that hangs, and read each process's peak resident set size from /proc
(resetting it before a run, so the figure belongs to that run). For a browser
elsewhere nothing here applies, and the figures are None.

A Playwright call into a frozen browser (SIGSTOP, a deadlocked browser process)
never returns: `BrowserTree.deadline` kills the browser's processes when a wait
runs past its deadline, which makes the waiting call fail at once.

The /proc files are opened once and read with pread: opening them anew on
every run cost about 0.4 ms a run (bench/bench_node_suite.py).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

PROC = Path("/proc")
_PF_EXITING = 0x4  # the kernel's flag of a process inside exit()


def _alive(stat: bytes) -> bool:
    """From /proc/<pid>/stat: not a zombie or dead, not exiting, and no SIGKILL pending. A killed process
    closes its sockets (and its page's channel) before /proc shows it as a zombie, longer so under load;
    it is exiting from the start."""
    fields = stat.rpartition(b")")[2].split()
    state, flags, pending = fields[0], int(fields[6]), int(fields[28])
    return state not in (b"Z", b"X") and not flags & _PF_EXITING and not pending & (1 << (signal.SIGKILL - 1))


def pid_alive(pid: int) -> bool:
    try:
        return _alive((PROC / str(pid) / "stat").read_bytes())
    except (OSError, IndexError, ValueError):
        return False


def descendants(pid: int, parents: dict[int, int | None] | None = None) -> set[int]:
    """Every process below `pid` (children, their children ...), from /proc."""
    if parents is None:
        parents = {int(entry.name): _parent(int(entry.name)) for entry in PROC.iterdir() if entry.name.isdigit()}
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def stop(process, grace_s: float) -> int:
    """SIGTERM a child `process` (a subprocess.Popen), give it `grace_s` to stop what it started, then
    SIGKILL whatever of its tree is left (orphans too: the tree is read before it can fall apart)."""
    import subprocess

    tree = descendants(process.pid)
    process.terminate()
    try:
        code = process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
    for pid in tree:
        if pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return code


class BrowserTree:
    """A local browser's main process and everything it started; `None` pid for a browser elsewhere."""

    def __init__(self, pid: int | None):
        self.pid = pid
        self.killed_waiting_for: str | None = None  # set when a deadline killed the browser

    @classmethod
    def launched_by(cls, launch: Callable[[], object]) -> tuple[object, "BrowserTree"]:
        """Call `launch` (Playwright's launch) and find the browser process it started: the new process
        below this one whose parent is not new (Playwright's driver, already running, is its parent)."""
        before = descendants(os.getpid())
        browser = launch()
        new = descendants(os.getpid()) - before
        roots = sorted(pid for pid in new if _parent(pid) not in new)
        return browser, cls(roots[0] if len(roots) == 1 else None)

    @property
    def alive(self) -> bool:
        return self.pid is None or pid_alive(self.pid)

    def kill(self) -> None:
        """SIGKILL the browser and all its processes (a stopped process dies of it too)."""
        if self.pid is None:
            return
        parents = {int(entry.name): _parent(int(entry.name)) for entry in PROC.iterdir() if entry.name.isdigit()}
        if self.pid not in descendants(os.getpid(), parents):  # exited (its pid may be another's by now)
            return
        for pid in (self.pid, *descendants(self.pid, parents)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    @contextmanager
    def deadline(self, seconds: float, waiting_for: str) -> Iterator[None]:
        """Kill the browser if the block still waits on it after `seconds`; the waiting call then fails."""
        if self.pid is None:  # a browser elsewhere: Playwright's own timeouts apply
            yield
            return

        def expire() -> None:
            self.killed_waiting_for = waiting_for
            self.kill()

        timer = threading.Timer(seconds, expire)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()


def _parent(pid: int) -> int | None:
    try:
        return int((PROC / str(pid) / "stat").read_bytes().rpartition(b")")[2].split()[1])
    except (OSError, IndexError, ValueError):
        return None


class BrowserProcesses:
    def __init__(self, pids_by_type: dict[str, tuple[int, ...]]):
        self.pids_by_type = pids_by_type
        self.all = tuple(pid for pids in pids_by_type.values() for pid in pids)
        self._files: dict[tuple[int, str], int] = {}  # (pid, name) -> open file descriptor

    @classmethod
    def of(cls, browser) -> "BrowserProcesses":
        found: dict[str, list[int]] = {}
        for process in browser.new_browser_cdp_session().send("SystemInfo.getProcessInfo")["processInfo"]:
            found.setdefault(process["type"], []).append(process["id"])
        local = {kind: tuple(pid for pid in pids if pid_alive(pid)) for kind, pids in found.items()}
        return cls({kind: pids for kind, pids in local.items() if pids})

    def kill_renderers(self) -> None:
        for pid in self.pids_by_type.get("renderer", ()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def running(self, kind: str) -> bool:
        """Whether every process of this kind exists and is neither dying nor a zombie (killed, not reaped yet).
        Safe from any thread: it opens its files anew."""
        return all(pid_alive(pid) for pid in self.pids_by_type.get(kind, ()))

    def first_gone(self, kinds: tuple[str, ...]) -> str | None:
        """The first of these kinds of process that is no longer running, or None."""
        return next((kind for kind in kinds if not self.running(kind)), None)

    def settle(self, kinds: tuple[str, ...], seconds: float = 2.0) -> str | None:
        """`first_gone`, waiting up to `seconds` for a death to show: a page's channel can close before the
        process that closed it is seen to die."""
        end = time.monotonic() + seconds
        while (gone := self.first_gone(kinds)) is None and time.monotonic() < end:
            time.sleep(0.05)
        return gone

    def watch(self, kinds: tuple[str, ...], on_gone: Callable[[str], None]) -> "Watch":
        return Watch(self, kinds, on_gone)

    def reset_peak_rss(self) -> None:
        """Start a new peak: writing 5 to clear_refs resets VmHWM (Linux)."""
        for pid in self.all:
            try:
                os.write(self._file(pid, "clear_refs", os.O_WRONLY), b"5")
            except OSError:
                pass

    def peak_rss(self) -> int | None:
        """Sum of the processes' peak resident set sizes in bytes, or None where /proc cannot tell."""
        total = 0
        for pid in self.all:
            try:
                text = self._read(pid, "status")
                start = text.index(b"VmHWM:") + len(b"VmHWM:")
                total += int(text[start:text.index(b"kB", start)]) * 1024
            except (OSError, ValueError):  # gone, or no VmHWM line
                return None
        return total or None

    def close(self) -> None:
        for descriptor in self._files.values():
            os.close(descriptor)
        self._files.clear()

    def _read(self, pid: int, name: str) -> bytes:
        return os.pread(self._file(pid, name, os.O_RDONLY), 8192, 0)

    def _file(self, pid: int, name: str, flags: int) -> int:
        key = (pid, name)
        if key not in self._files:
            self._files[key] = os.open(PROC / str(pid) / name, flags | os.O_CLOEXEC)
        return self._files[key]


class Watch:
    """While active, checks every POLL_S that the processes of `kinds` run, and calls `on_gone(kind)` once
    when one does not: a call into the page then ends at once instead of at its deadline (a killed GPU
    process leaves WebGPU's work pending forever). It also tells an activation's `on_slow(seconds)`
    when the wait passes SLOW_S, and every SLOW_EVERY_S after, so that no wait is silent."""

    POLL_S = 0.1
    SLOW_S = 5.0
    SLOW_EVERY_S = 30.0

    def __init__(self, processes: BrowserProcesses, kinds: tuple[str, ...], on_gone: Callable[[str], None]):
        self._processes, self._kinds, self._on_gone = processes, kinds, on_gone
        self._active = threading.Event()
        self._stopped = False
        self._on_slow: Callable[[float], None] | None = None
        self._since = self._next_notice = 0.0
        threading.Thread(target=self._run, name="browserml-watch", daemon=True).start()

    @contextmanager
    def active(self, on_slow: Callable[[float], None] | None = None) -> Iterator[None]:
        self._on_slow, self._since, self._next_notice = on_slow, time.monotonic(), self.SLOW_S
        self._active.set()
        try:
            yield
        finally:
            self._active.clear()

    def stop(self) -> None:
        self._stopped = True
        self._active.set()

    def _run(self) -> None:
        while True:
            self._active.wait()
            if self._stopped:
                return
            if (gone := self._processes.first_gone(self._kinds)) is not None:
                self._on_gone(gone)
                return
            passed, on_slow = self._next_notice, self._on_slow
            if on_slow is not None and time.monotonic() - self._since >= passed and self._active.is_set():
                self._next_notice += self.SLOW_EVERY_S
                on_slow(passed)  # the mark passed (5 s, 35 s ...), not a reading that a busy machine blurs
            time.sleep(self.POLL_S)
