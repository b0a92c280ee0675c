"""pytest-xdist scaling: -n 0/1/2/4/8/16 (as many as this machine has cores) on ONNX's node suite and a corpus.

Targets: node suite -n 2 at least 1.4x faster than -n 0 on 2 cores; on 16 cores -n 8 at least 3x faster
than -n 0 and -n 16 no slower than -n 8; the same passed/failed/skipped counts at every N.

First the CPU ceiling: how much N busy processes of a pure Python loop get done at once against one, the
most any -n N can gain on this machine. Per N: wall time (process start to exit), speed-up over -n 0,
efficiency (speed-up / max(N, 1)), the CPU of the whole process tree (sampled from /proc, by kind of
process), the outcome counts, the wasm tier and threads the runs report, and a worker's fixed costs
(start to collected, collected to first test, of which its browser's start). `--tiers` adds which V8
tier wins for each kind of suite: the node suite at -n 0 and at the largest N on tier-up (V8's default)
and on Liftoff only, and a larger model timed by a `browserml` test (p50 of 30 runs, and the test's
wall) on each tier; and -n 0 on as many threads a page as tier-up pages get. Runs go in interleaved
rounds (`--rounds`), so that load from other processes falls on every N alike; the load average is
printed.

`--pytest-args=-p_parallel_spawn` loads bench/_parallel_spawn.py into every run: xdist's workers started all
at once instead of one after another (an experiment on xdist, not the plugin).

The corpus: the ONNX-layout folders the onnx wheel ships (pytorch-converted, pytorch-operator, simple:
convolutions, RNNs and the like, larger than node cases).

Run: python bench/bench_xdist.py [--workers 0 1 2 ...] [--limit N] [--rounds R] [--tiers] [--no-corpus]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common
from _common import figure

NAME = "xdist"
CORPUS_SETS = ("pytorch-converted", "pytorch-operator", "simple")
PLUGINS: list[str] = []  # the plugins every run loads by name: all installed ones load by themselves if empty
CPU_LOOP = "x = 0\nfor i in range(5_000_000): x += i * i"  # pure Python, no I/O: what N busy processes get
OUTCOME = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)")
TIMED_TEST = """
import json, os
import numpy as np

def test_larger_model(browserml):
    x = np.random.default_rng(0).standard_normal((1, 64, 32, 32), dtype=np.float32)
    result = browserml.run("larger.onnx", {"x": x}, warmup=5, iterations=30)
    with open(os.environ["BENCH_LATENCY"], "w") as handle:
        json.dump({"p50": result.latency.p50, "create": result.latency.session_create,
                   "first_run": result.latency.first_run, "tier": result.environment.wasm_tier,
                   "threads": result.environment.wasm_threads}, handle)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cores = os.cpu_count() or 1
    parser.add_argument("--workers", type=int, nargs="+", default=[n for n in (0, 1, 2, 4, 8, 16) if n <= cores])
    parser.add_argument("--limit", type=int, help="only the first N cases of the node suite")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds over all N (best wall is kept)")
    parser.add_argument("--tiers", action="store_true", help="also compare tier-up and Liftoff on each kind of suite")
    parser.add_argument("--no-corpus", action="store_true")
    parser.add_argument("--pytest-args", default="", help="more pytest arguments for every run, as one string")
    parser.add_argument("--all-plugins", action="store_true",
                        help="load every pytest plugin installed here, not only browserml and xdist")
    args = parser.parse_args()
    print(f"[{NAME}] {cores} cores; load average at start: {_load()}; python {sys.version.split()[0]}; "
          + ("every installed pytest plugin" if args.all_plugins else "plugins: browserml and xdist only"), flush=True)
    if not args.all_plugins:  # others' per-process costs are not the plugin's (hypothesis imports itself at each exit)
        os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        PLUGINS[:] = ["-p", "xdist.plugin", "-p", "pytest_browserml.plugin"]
    cpu_ceiling(args.workers)
    with tempfile.TemporaryDirectory(prefix="bench-xdist-") as tmp:
        folder = Path(tmp)
        cases = _common.generate_node_suite(folder, limit=args.limit)
        figure(NAME, "node suite", len(cases), "cases")
        suites = {"node suite": "node"}
        if not args.no_corpus:
            figure(NAME, "corpus (the onnx wheel's model folders)", _write_corpus(folder / "corpus"), "cases")
            suites["corpus"] = "corpus"
        results = {suite: {} for suite in suites}
        for round_number in range(args.rounds):
            for workers in args.workers:
                for suite, path in suites.items():
                    run = measure(folder, path, workers, f"{suite} -n {workers} (round {round_number + 1})",
                                  tuple(args.pytest_args.split()))
                    best = results[suite].get(workers)
                    if best is None or run["wall_s"] < best["wall_s"]:
                        results[suite][workers] = run
        for suite, runs in results.items():
            scaling(suite, runs)
        if args.tiers:
            tiers(folder, max(args.workers))
    print(f"[{NAME}] load average at the end: {_load()}", flush=True)


def cpu_ceiling(workers: list[int]) -> None:
    """How much N CPU-bound processes at once get done against one: the most any -n N can gain here, since a
    test costs CPU in its worker and its browser (shared cores, SMT siblings and turbo clocks lower it)."""
    def wall(count: int) -> float:
        started = time.perf_counter()
        for process in [subprocess.Popen([sys.executable, "-c", CPU_LOOP]) for _ in range(count)]:
            process.wait()
        return time.perf_counter() - started

    one = min(wall(1) for _ in range(2))
    for count in sorted({n for n in workers if n > 1}):
        figure(NAME, f"CPU ceiling: {count} busy processes at once do the work of",
               count * one / min(wall(count) for _ in range(2)),
               "processes", note=f"one alone: {one:.2f} s")


def measure(folder: Path, target: str, workers: int, label: str, extra: tuple[str, ...] = ()) -> dict:
    report = folder / "report.json"
    timings = folder / "timings.jsonl"
    run = _common.run_pytest([*PLUGINS, target, "-q", "-n", str(workers), "--browser-ep", "wasm",
                              "--browserml-report", str(report), *extra], folder, timings=timings, sample=True)
    document = json.loads(report.read_text()) if report.exists() else {"tests": []}
    report.unlink(missing_ok=True)
    engines = sorted({(entry["wasm_tier"], entry["wasm_threads"]) for test in document["tests"] for entry in test["runs"]})
    outcomes = {kind.rstrip("s") if kind.startswith("error") else kind: int(count)
                for count, kind in OUTCOME.findall(run.summary_line())}
    cpu = sum(run.cpu_by_kind.values())
    fixed = _fixed_costs(run)
    figure(NAME, label, run.wall_s, "s", note=f"{run.summary_line()}; load {_load()}; CPU {cpu:.1f} s ("
           + ", ".join(f"{kind} {seconds:.1f}" for kind, seconds in run.cpu_by_kind.items() if seconds >= 0.5)
           + f"); wasm {', '.join(f'{tier} x{threads}' for tier, threads in engines) or '?'}; {fixed}")
    return {"wall_s": run.wall_s, "cpu_s": cpu, "outcomes": outcomes, "engines": engines, "fixed": fixed}


def scaling(suite: str, runs: dict[int, dict]) -> None:
    """The table: N, wall, speed-up, efficiency, CPU, outcomes; then the targets."""
    base = runs.get(0)
    print(f"[{NAME}] {suite}: | -n | wall s | speed-up | efficiency | CPU s | outcomes | wasm |", flush=True)
    for workers, run in sorted(runs.items()):
        speedup = base["wall_s"] / run["wall_s"] if base else None
        efficiency = speedup / max(workers, 1) if speedup else None
        outcomes = ", ".join(f"{count} {kind}" for kind, count in sorted(run["outcomes"].items()))
        engines = ", ".join(f"{tier} x{threads}" for tier, threads in run["engines"])
        print(f"[{NAME}] {suite}: | {workers} | {run['wall_s']:.1f} | "
              f"{'-' if speedup is None else f'{speedup:.2f}x'} | {'-' if efficiency is None else f'{efficiency:.0%}'} | "
              f"{run['cpu_s']:.0f} | {outcomes} | {engines} |", flush=True)
    same = len({json.dumps(run["outcomes"], sort_keys=True) for run in runs.values()}) == 1
    print(f"[{NAME}] {suite}: the same outcome counts at every N: {'yes  met' if same else 'NO  MISSED: '}"
          + ("" if same else "; ".join(f"-n {n}: {run['outcomes']}" for n, run in sorted(runs.items()))), flush=True)
    if base is None or suite != "node suite":
        return
    cores = os.cpu_count() or 1
    if 2 in runs and cores <= 2:
        speedup = base["wall_s"] / runs[2]["wall_s"]
        figure(NAME, "node suite -n 2 against -n 0 (2 cores)", speedup, "x", ">= 1.4x", speedup >= 1.4)
    if 8 in runs:
        speedup = base["wall_s"] / runs[8]["wall_s"]
        figure(NAME, "node suite -n 8 against -n 0", speedup, "x", ">= 3x", speedup >= 3)
    if 8 in runs and 16 in runs:
        ratio = runs[8]["wall_s"] / runs[16]["wall_s"]
        figure(NAME, "node suite -n 16 against -n 8 (>= 1: no slower)", ratio, "x", ">= 1x", ratio >= 1)


def tiers(folder: Path, most: int) -> None:
    """Which tier wins: the node suite on each tier at -n 0 and -n `most`; a larger model's timed test on each."""
    for workers in dict.fromkeys((0, most)):
        walls = {}
        for tier in ("tier-up", "liftoff"):
            run = measure(folder, "node", workers, f"node suite -n {workers}, --browserml-wasm-tier {tier}",
                          ("--browserml-wasm-tier", tier))
            walls[tier] = run["wall_s"]
        figure(NAME, f"node suite -n {workers}: tier-up wall / liftoff wall", walls["tier-up"] / walls["liftoff"], "x",
               note="> 1: liftoff wins (the default for ONNX test-data folders)")
    from pytest_browserml.browser import wasm_engine

    share = wasm_engine.auto_threads(wasm_engine.cores_available(), 1)
    many = measure(folder, "node", 0, f"node suite -n 0, --browserml-wasm-threads {share}",
                   ("--browserml-wasm-threads", str(share)))
    figure(NAME, f"node suite -n 0 on {share} threads a page (tier-up pages' default)", many["wall_s"], "s",
           note="against the default above, 1 on Liftoff pages: whether more threads help the node suite")
    timed = folder / "timed"
    timed.mkdir(exist_ok=True)
    _larger_model(timed / "larger.onnx")
    (timed / "test_larger.py").write_text(TIMED_TEST)
    seen = {}
    for tier in ("tier-up", "liftoff"):
        latency = timed / f"latency-{tier}.json"
        run = _common.run_pytest([*PLUGINS, "test_larger.py", "-q", "-p", "no:randomly", "--browserml-wasm-tier", tier],
                                 timed, env={"BENCH_LATENCY": str(latency)}, sample=True)
        figures = json.loads(latency.read_text())
        seen[tier] = figures["p50"]
        figure(NAME, f"larger model (4 Conv 64x3x3 on 32x32), {tier}: p50", figures["p50"], "ms",
               note=f"session create {figures['create']:.0f} ms, first run {figures['first_run']:.0f} ms, "
                    f"reported tier {figures['tier']} x{figures['threads']}; test {run.wall_s:.1f} s wall, "
                    f"CPU {sum(run.cpu_by_kind.values()):.1f} s; {run.summary_line()}")
    figure(NAME, "larger model: liftoff p50 / tier-up p50", seen["liftoff"] / seen["tier-up"], "x",
           note="> 1: tier-up wins (the default for browserml tests, which time their runs)")


def _write_corpus(dest: Path) -> int:
    import onnx

    data = Path(onnx.__file__).parent / "backend" / "test" / "data"
    count = 0
    for name in CORPUS_SETS:
        for case in sorted((data / name).iterdir()):
            if (case / "model.onnx").is_file():
                shutil.copytree(case, dest / name / case.name)
                count += 1
    return count


def _larger_model(path: Path) -> None:
    """Four 64-channel 3x3 convolutions with ReLU on a 32x32 map: about 0.6 GFLOP a run."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper, save

    rng = np.random.default_rng(0)
    nodes, weights, name = [], [], "x"
    for layer in range(4):
        weight = numpy_helper.from_array((rng.standard_normal((64, 64, 3, 3)) * 0.05).astype(np.float32), f"w{layer}")
        weights.append(weight)
        nodes += [helper.make_node("Conv", [name, f"w{layer}"], [f"c{layer}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{layer}"], [f"r{layer}"])]
        name = f"r{layer}"
    graph = helper.make_graph(nodes, "larger", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64, 32, 32])],
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 64, 32, 32])], weights)
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))


def _fixed_costs(run) -> str:
    """Where the wall time goes: per worker, start to collected, collected to first test (of which its browser's
    start), last test to exit (medians); then a timeline from the process's start, min-max over the workers,
    and the test phase: first test to the last worker's end, and how busy the workers were in it."""
    marks = [entry["marks"] for entry in run.marks if entry["marks"].get("first_test_call")]
    if not marks:
        return "no timing marks"

    def median(start: str, end: str) -> float:
        values = [m[end] - m[start] for m in marks if start in m and end in m]
        return statistics.median(values) if values else float("nan")

    def spread(mark: str) -> str:
        values = [m[mark] - run.started for m in marks if mark in m]
        return f"{min(values):.1f}-{max(values):.1f}" if values else "?"

    finished = max(m.get("session_finished", 0) for m in marks)
    first = min(m["first_test_call"] for m in marks)
    busy = sum(item.get("protocol_ms", 0) for item in run.items) / 1000
    phase = finished - first
    controller = next((entry["marks"] for entry in run.marks if not entry["marks"].get("first_test_call")), {})
    return (f"per worker: start to collected {median('plugin_imported', 'collection_finished'):.2f} s, "
            f"collected to first test {median('collection_finished', 'first_test_call'):.2f} s "
            f"(browser start {median('runtime_start_start', 'probe_end'):.2f} s), last worker's end to exit "
            f"{run.started + run.wall_s - finished:.2f} s; timeline (s): workers imported {spread('plugin_imported')}, "
            f"collected {spread('collection_finished')}, first test {spread('first_test_call')}, finished "
            f"{spread('session_finished')}, unconfigured {spread('unconfigure')}"
            + (f"; controller unconfigured {controller['unconfigure'] - run.started:.1f}" if "unconfigure" in controller
               else "") + f", exit {run.wall_s:.1f}; tests {phase:.2f} s (workers busy {busy / len(marks) / phase:.0%}"
            f" of it); pytest process CPU {run.root_cpu_s or 0:.1f} s")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
