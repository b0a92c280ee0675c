"""pytest-xdist on the ONNX node suite (wasm): throughput with 2 workers against 1.

Target: `-n 2` gives at least 1.7 times the throughput of `-n 0` on this 2-core machine.
Throughput is test items per second of wall time, end to end (process start to exit), and
from the first test to the last (start-up and collection excluded). The CPU time of the whole
process tree, and sampled per kind of process, shows how much of the 2 cores one worker
already uses: the ceiling of the speed-up is about 2 cores / (CPU seconds per wall second of -n 0).

Run: python bench/bench_xdist.py [--limit N] (N cases of the suite; default all)
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import _common
from _common import figure

NAME = "xdist"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, help="only the first N cases of the node suite")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()
    print(f"[{NAME}] load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory(prefix="bench-xdist-") as tmp:
        folder = Path(tmp)
        cases = _common.generate_node_suite(folder, limit=args.limit)
        rates = {}
        for workers in args.workers:
            rates[workers] = measure(folder, workers, len(cases))
        if 0 in rates and 2 in rates:
            end_to_end = rates[2][0] / rates[0][0]
            steady = rates[2][1] / rates[0][1]
            figure(NAME, "throughput -n 2 / -n 0, end to end", end_to_end, "x", ">= 1.7x", end_to_end >= 1.7)
            figure(NAME, "throughput -n 2 / -n 0, first test to last", steady, "x", ">= 1.7x", steady >= 1.7)
            ceiling = 2 / rates[0][2]
            figure(NAME, "ceiling from -n 0's CPU use (2 cores / cores one worker keeps busy)", ceiling, "x",
                   note="on an otherwise idle machine")


def measure(folder: Path, workers: int, cases: int) -> tuple[float, float, float]:
    run = _common.run_pytest(["node", "-q", "-n", str(workers), "--browser-ep", "wasm"], folder,
                             timings=folder / f"timings-{workers}.jsonl", sample=True)
    items = len(run.items)
    firsts = [mark["marks"].get("first_test_call") for mark in run.marks if mark["marks"].get("first_test_call")]
    lasts = [mark["marks"].get("session_finished") for mark in run.marks if mark["marks"].get("session_finished")]
    steady_s = (max(lasts) - min(firsts)) if firsts and lasts else run.wall_s
    label = f"-n {workers}"
    figure(NAME, f"{label}: pytest", None, "", note=f"{run.summary_line()}; {items} items timed")
    rate = items / run.wall_s
    steady = items / steady_s
    ours = sum(run.cpu_by_kind.values())
    busy = ours / run.wall_s
    figure(NAME, f"{label}: throughput end to end", rate, "items/s", note=f"{run.wall_s:.1f} s wall for {cases} cases")
    figure(NAME, f"{label}: throughput first test to last", steady, "items/s", note=f"{steady_s:.1f} s")
    figure(NAME, f"{label}: CPU of pytest's process tree (sampled from /proc)", ours, "s",
           note=f"{busy:.2f} cores busy on average; the whole machine {run.system_busy_cores:.2f} cores busy "
                f"(others: {run.system_busy_cores - busy:.2f}); by process: "
                + ", ".join(f"{kind} {seconds:.1f}" for kind, seconds in run.cpu_by_kind.items() if seconds >= 0.5))
    return rate, steady, busy


if __name__ == "__main__":
    main()
