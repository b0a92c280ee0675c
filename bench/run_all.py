"""Run every benchmark of bench/ one after the other and print all their figures, then the targets.

Each script runs in its own process (a fresh browser each, no state shared); their output
is streamed as it comes. At the end: every line that names a target, met or MISSED, and the
time each script took. Figures only: nothing here fails (the exit code is 0 unless a
script crashed).

Run: python bench/run_all.py [--only NAME ...] [--quick]
     --quick: smaller node-suite subsets, xdist on 600 cases, no cold start (about 5 minutes)
The whole run takes about 8-9 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent

SCRIPTS = [
    ("node_suite", ["bench_node_suite.py"], ["--subset", "100", "--profile-cases", "150"]),
    ("transport", ["bench_transport.py"], []),
    ("session_cache", ["bench_session_cache.py"], []),
    ("xdist", ["bench_xdist.py"], ["--limit", "600"]),
    ("startup", ["bench_startup.py"], ["--no-cold"]),
    ("golden_memory", ["bench_golden_memory.py"], []),
    ("runner", ["bench_runner.py"], []),
    ("repeatability", ["bench_repeatability.py"], []),
    ("corpus", ["bench_corpus.py"], []),
    ("localise", ["bench_localise.py"], ["--blocks", "2", "--ep", "wasm"]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=[name for name, _, _ in SCRIPTS])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()

    print(f"machine: {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    print(_versions(), flush=True)
    targets: list[str] = []
    durations: list[tuple[str, float, int]] = []
    for name, script, quick in SCRIPTS:
        if args.only and name not in args.only:
            continue
        command = [sys.executable, str(BENCH / script[0]), *script[1:], *(quick if args.quick else [])]
        print(f"\n===== {name}: {' '.join(Path(part).name if part.endswith('.py') else part for part in command[1:])}",
              flush=True)
        started = time.perf_counter()
        with subprocess.Popen(command, cwd=BENCH.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, bufsize=1) as process:
            for line in process.stdout:
                print(line, end="", flush=True)
                if " target " in line or line.rstrip().endswith(("met", "MISSED")):
                    targets.append(line.rstrip())
        durations.append((name, time.perf_counter() - started, process.returncode))

    print("\n===== targets")
    for line in targets:
        print(line)
    print("\n===== time per script")
    for name, seconds, code in durations:
        print(f"{name:15s} {seconds:6.1f} s" + (f"  (exit code {code})" if code else ""))
    print(f"{'total':15s} {sum(seconds for _, seconds, _ in durations):6.1f} s")
    if any(code for _, _, code in durations):
        sys.exit(1)


def _versions() -> str:
    sys.path.insert(0, str(BENCH.parent))
    try:
        from importlib.metadata import version

        from pytest_browserml.browser import provision

        return (f"versions: pytest-browserml {version('pytest-browserml')}, onnxruntime-web {provision.ORT_WEB_VERSION}, "
                f"Chromium {provision.CHROMIUM_PACKAGE}@{provision.CHROMIUM_VERSION}, playwright {version('playwright')}, "
                f"pytest {version('pytest')}, pytest-xdist {version('pytest-xdist')}, numpy {version('numpy')}")
    except Exception as error:  # the figures matter more than this line
        return f"versions: unknown ({error})"


if __name__ == "__main__":
    main()
