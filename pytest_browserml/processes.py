"""The operating-system processes of one browser: kill the renderer, read peak memory.

Chromium reports its processes over CDP (SystemInfo.getProcessInfo). For a
browser on this machine we can then act on them directly: kill a renderer
that hangs, and read each process's peak resident set size from /proc
(resetting it before a run, so the figure belongs to that run). For a browser
elsewhere nothing here applies, and the figures are None.

The /proc files are opened once and read with pread: opening them anew on
every run cost about 0.4 ms a run (bench/bench_node_suite.py).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

PROC = Path("/proc")


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
        local = {kind: tuple(pid for pid in pids if (PROC / str(pid)).exists()) for kind, pids in found.items()}
        return cls({kind: pids for kind, pids in local.items() if pids})

    def kill_renderers(self) -> None:
        for pid in self.pids_by_type.get("renderer", ()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def running(self, kind: str) -> bool:
        """Whether every process of this kind exists and is not a zombie (killed, not reaped yet)."""
        try:
            return all(self._read(pid, "stat").rpartition(b")")[2].split()[0] != b"Z"
                       for pid in self.pids_by_type.get(kind, ()))
        except (OSError, IndexError):
            return False

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
