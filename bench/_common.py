"""Shared helpers of the benchmark scripts: running pytest in a subprocess, the node suite, printing figures."""

from __future__ import annotations

import glob
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MB = 1 << 20


def figure(bench: str, name: str, value: float | None, unit: str, target: str | None = None,
           met: bool | None = None, note: str = "") -> None:
    """One figure line: `[bench] name: value unit  target ...  met|MISSED  (note)`."""
    if value is None and not unit and not target:
        print(f"[{bench}] {name}" + (f": {note}" if note else ""), flush=True)
        return
    shown = "n/a" if value is None else (f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}") if isinstance(
        value, float) else str(value)
    line = f"[{bench}] {name}: {shown}{(' ' + unit) if unit else ''}"
    if target:
        line += f"  target {target}"
        if met is not None:
            line += "  " + ("met" if met else "MISSED")
    if note:
        line += f"  ({note})"
    print(line, flush=True)


def generate_node_suite(dest: Path, *patterns: str, limit: int | None = None) -> list[Path]:
    """ONNX's node-test cases under dest/node, written by the project's generator; the case folders, sorted."""
    command = [sys.executable, str(ROOT / "tests" / "generate_node_tests.py"), str(dest)]
    for pattern in patterns:
        command += ["--pattern", pattern]
    if limit:
        command += ["--limit", str(limit)]
    subprocess.run(command, check=True, capture_output=True, text=True)
    return sorted(path for path in (dest / "node").iterdir() if path.is_dir())


@dataclass
class PytestRun:
    wall_s: float
    returncode: int
    stdout: str
    stderr: str
    started: float  # time.time() just before the subprocess was started
    marks: list[dict] = field(default_factory=list)  # one per process (controller and workers)
    items: list[dict] = field(default_factory=list)
    cpu_by_kind: dict[str, float] = field(default_factory=dict)  # sampled from /proc, by process kind
    system_busy_cores: float | None = None  # the whole machine's busy cores during the run (all processes)
    root_cpu_s: float | None = None  # the pytest process itself (under xdist: the controller)

    def summary_line(self) -> str:
        lines = [line for line in self.stdout.splitlines() if " in " in line and ("passed" in line or "failed" in line)]
        return lines[-1].strip("= ") if lines else "(no pytest summary line)"


def run_pytest(args: list[str], cwd: Path, timings: Path | None = None, env: dict | None = None,
               timeout: float = 900, sample: bool = False) -> PytestRun:
    """`python -m pytest ARGS` in `cwd`, with the timing plugin when `timings` is given."""
    environment = {**os.environ, **(env or {})}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH), environment.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]
    if timings is not None:
        for old in glob.glob(f"{timings}*"):
            os.remove(old)
        environment["BENCH_TIMINGS"] = str(timings)
        command[3:3] = ["-p", "_bench_timing"]
    started_wall = time.time()
    started = time.perf_counter()
    with subprocess.Popen(command, cwd=cwd, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as process:
        sampler = ProcessSampler(process.pid) if sample else None
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        finally:
            if sampler:
                sampler.stop()
    run = PytestRun(time.perf_counter() - started, process.returncode, stdout, stderr, started_wall)
    run.cpu_by_kind = sampler.by_kind() if sampler else {}
    run.system_busy_cores = sampler.system_busy_cores if sampler else None
    run.root_cpu_s = sampler.cpu.get(process.pid, (None, None))[1] if sampler else None
    if timings is not None:
        for path in sorted(glob.glob(f"{timings}*")):
            with open(path) as handle:
                lines = [json.loads(line) for line in handle if line.strip()]
            if lines:
                run.marks.append(lines[0])
                for item in lines[1:]:
                    item["worker"] = lines[0].get("worker") or "main"
                run.items += lines[1:]
    return run


class ProcessSampler:
    """Samples /proc every `interval` s for the CPU time of every descendant of `root`, by kind of process."""

    def __init__(self, root: int, interval: float = 0.25):
        import threading

        self.root = root
        self.interval = interval
        self.cpu: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._system_start = (time.perf_counter(), _system_busy())
        self.system_busy_cores = None
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        started, busy = self._system_start
        self.system_busy_cores = (_system_busy() - busy) / (time.perf_counter() - started)

    def _loop(self) -> None:
        ticks = os.sysconf("SC_CLK_TCK")
        while not self._stop.is_set():
            parents, stats = {}, {}
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry}/stat") as handle:
                        fields = handle.read().rpartition(")")[2].split()
                except OSError:
                    continue
                parents[int(entry)] = int(fields[1])
                stats[int(entry)] = (int(fields[11]) + int(fields[12])) / ticks
            for pid, cpu in stats.items():
                ancestor, depth = pid, 0
                while ancestor in parents and ancestor != self.root and depth < 20:
                    ancestor, depth = parents[ancestor], depth + 1
                if ancestor == self.root:
                    kind = _kind(pid)  # again each time: a forked child execs later; a zombie has no cmdline
                    if kind == "?" and pid in self.cpu:
                        kind = self.cpu[pid][0]
                    self.cpu[pid] = (kind, cpu)
            self._stop.wait(self.interval)

    def by_kind(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for kind, cpu in self.cpu.values():
            totals[kind] = totals.get(kind, 0.0) + cpu
        return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def _system_busy() -> float:
    """CPU seconds the whole machine spent busy (all cores, every process) since boot."""
    with open("/proc/stat") as handle:
        fields = [int(v) for v in handle.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _kind(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            args = handle.read().replace(b"\0", b" ").split()  # Chromium rewrites its title: one string
    except OSError:
        return "?"
    if not args:
        return "?"
    text = b" ".join(args).decode(errors="replace")
    if "chromium" in text:
        kind = next((a.decode().split("=", 1)[1] for a in args if a.startswith(b"--type=")), "browser")
        if kind == "utility":
            kind = next((a.decode().split("=", 1)[1] for a in args if a.startswith(b"--utility-sub-type=")), kind)
        return f"chromium {kind}"
    if "run-driver" in text:
        return "playwright driver (node)"
    if "python" in text:
        return "python (pytest worker)" if "xdist" in text or "execnet" in text or "-c" in text else "python (pytest)"
    return Path(args[0].decode(errors="replace")).name


def median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def percentile(values, q: float) -> float | None:
    """The plugin's own percentile (numpy's linear interpolation), so bench and reports agree."""
    from pytest_browserml.budget.stats import percentile as interpolated

    values = sorted(v for v in values if v is not None)
    return interpolated(values, q) if values else None


def settings(ep, *, warmup: int = 0, iterations: int = 1):
    from pytest_browserml.browser.provision import ORT_WEB_VERSION
    from pytest_browserml.runner import Settings

    return Settings(eps=(ep,), strict=True, timeout_s=300, ort_web_version=ORT_WEB_VERSION,
                    browser_executable=None, browser_channel=None, auto_install=True, warmup=warmup,
                    iterations=iterations)
