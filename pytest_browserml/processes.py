"""The operating-system processes of one browser: kill the renderer, read peak memory.

Chromium reports its processes over CDP (SystemInfo.getProcessInfo). For a
browser on this machine we can then act on them directly: kill a renderer
that hangs, and read each process's peak resident set size from /proc
(resetting it before a run, so the figure belongs to that run). For a browser
elsewhere nothing here applies, and the figures are None.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class BrowserProcesses:
    pids_by_type: dict[str, tuple[int, ...]]

    @classmethod
    def of(cls, browser) -> "BrowserProcesses":
        found: dict[str, list[int]] = {}
        for process in browser.new_browser_cdp_session().send("SystemInfo.getProcessInfo")["processInfo"]:
            found.setdefault(process["type"], []).append(process["id"])
        local = {kind: tuple(pid for pid in pids if (PROC / str(pid)).exists()) for kind, pids in found.items()}
        return cls({kind: pids for kind, pids in local.items() if pids})

    @property
    def all(self) -> tuple[int, ...]:
        return tuple(pid for pids in self.pids_by_type.values() for pid in pids)

    def kill_renderers(self) -> None:
        for pid in self.pids_by_type.get("renderer", ()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def reset_peak_rss(self) -> None:
        """Start a new peak: writing 5 to clear_refs resets VmHWM (Linux)."""
        for pid in self.all:
            try:
                (PROC / str(pid) / "clear_refs").write_text("5")
            except OSError:
                pass

    def peak_rss(self) -> int | None:
        """Sum of the processes' peak resident set sizes in bytes, or None where /proc cannot tell."""
        total = 0
        for pid in self.all:
            try:
                with open(PROC / str(pid) / "status", "rb") as status:
                    text = status.read()
                start = text.index(b"VmHWM:") + len(b"VmHWM:")
                total += int(text[start:text.index(b"kB", start)]) * 1024
            except (OSError, ValueError):  # gone, or no VmHWM line
                return None
        return total or None
