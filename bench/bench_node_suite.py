"""ONNX's node-test suite on wasm: per-case wall time of the plugin, against the in-page floor
(session creation + runs, as the page times them) and against a naive harness.

Targets: under 25 ms a case including session creation; the whole suite on wasm in under
a minute; plugin overhead over the in-page floor under 5 ms a case.

1. Writes ONNX's node suite (tests/generate_node_tests.py, ~1,900 cases) into a temp dir and
   runs `pytest node --browser-ep wasm` on it in a subprocess, with bench/_bench_timing.py
   recording per item the wall time of pytest's phases, of the plugin's calls into the page and
   the page's own figures (the node-suite items carry no run figures in --browserml-report).
2. Runs an evenly spaced subset (default 200 cases) with the plugin and with a naive harness
   (a new ORT session per case, tensors as JSON number lists through page.evaluate; same
   pinned Chromium, same ORT-web bundle, same COOP/COEP server): per-case wall of each.
3. Where the time beyond the floor goes: the timing breakdown, ORT's log level cost on
   session creation, and a cProfile of the pytest process on a subset.

Run: python bench/bench_node_suite.py [--subset 200] [--profile-cases 400] [--no-profile]
"""

from __future__ import annotations

import argparse
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common
from _common import figure, mean, median, percentile

NAME = "node-suite"
# where the pytest process waits for the browser: the page's channel, Playwright's event loop, the server
WAITS = ("<method 'recv_into' of '_socket.socket' objects>", "<method 'poll' of 'select.epoll' objects>",
         "<method 'acquire' of '_thread.lock' objects>")


def in_page_floor(call: dict) -> float:
    """Session creation + first run + the timed runs, as the page measured them."""
    return (call["create_ms"] or 0.0) + (call["first_run_ms"] or 0.0) + sum(call["times_ms"] or ())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subset", type=int, default=200, help="cases for the naive-harness comparison")
    parser.add_argument("--profile-cases", type=int, default=300)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (its path is printed)")
    args = parser.parse_args()

    print(f"[{NAME}] load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"({os.cpu_count()} cores; other processes on the machine skew every figure)")
    tmp = tempfile.TemporaryDirectory(prefix="bench-node-suite-")
    folder = Path(tmp.name)
    started = time.perf_counter()
    cases = _common.generate_node_suite(folder)
    figure(NAME, "node suite written", len(cases), "cases", note=f"in {time.perf_counter() - started:.1f} s")

    missed = full_suite(folder, cases)
    subset = [cases[round(i * len(cases) / args.subset)] for i in range(args.subset)]
    naive_comparison(folder, subset)
    print(f"[{NAME}] what the time beyond the floor is made of:")
    log_level_cost(subset[:150])
    round_trip_cost()
    if not args.no_profile:
        profile(folder, [cases[round(i * len(cases) / args.profile_cases)] for i in range(args.profile_cases)])
    elif missed:
        print(f"[{NAME}] (profile skipped: --no-profile)")
    if args.keep:
        tmp._finalizer.detach()
        print(f"[{NAME}] kept {folder}")
    else:
        tmp.cleanup()


def full_suite(folder: Path, cases: list[Path]) -> bool:
    run = _common.run_pytest(["node", "-q", "--browser-ep", "wasm"], folder, timings=folder / "timings.jsonl")
    items = run.items
    n = len(items)
    figure(NAME, "pytest result", n, "items", note=run.summary_line())
    per_case = run.wall_s * 1000 / n
    figure(NAME, "whole suite on wasm, wall (process start to exit)", run.wall_s, "s", "< 60 s", run.wall_s < 60)
    figure(NAME, "per case, wall incl. start-up and collection", per_case, "ms", "< 25 ms", per_case < 25)
    protocol = [item["protocol_ms"] for item in items]
    figure(NAME, "per case, pytest item protocol (setup+call+teardown+report)", mean(protocol), "ms",
           note=f"median {median(protocol):.1f}, p90 {percentile(protocol, 90):.1f}, max {max(protocol):.0f}")

    ran = [item for item in items if item["page_calls"] and item["page_calls"][0]["ok"]]
    failed_in_page = [item for item in items if item["page_calls"] and not item["page_calls"][0]["ok"]]
    no_call = [item for item in items if not item["page_calls"]]
    floors = [in_page_floor(item["page_calls"][0]) for item in ran]
    creates = [item["page_calls"][0]["create_ms"] for item in ran]
    figure(NAME, "in-page floor per case (session create + first run + timed run)", mean(floors), "ms",
           note=f"median {median(floors):.1f}; over the {len(ran)} cases ORT ran; session create alone mean "
                f"{mean(creates):.1f}, median {median(creates):.1f}; sum {sum(floors) / 1000:.1f} s")
    figure(NAME, "cases ORT could not load or run (no in-page figure)", len(failed_in_page), "",
           note=f"mean wall {mean(i['protocol_ms'] for i in failed_in_page) or 0:.1f} ms")
    figure(NAME, "cases skipped before the page (non-tensor types, bfloat16)", len(no_call), "",
           note=f"mean wall {mean(i['protocol_ms'] for i in no_call) or 0:.1f} ms")

    overhead = [item["protocol_ms"] - in_page_floor(item["page_calls"][0]) for item in ran]
    figure(NAME, "plugin overhead over the in-page floor, per case (item protocol - floor)", mean(overhead), "ms",
           "< 5 ms", mean(overhead) < 5, note=f"median {median(overhead):.1f}")
    whole = (run.wall_s * 1000 - sum(floors)) / n
    figure(NAME, "plugin overhead over the floor, whole run ((wall - sum of floors) / cases)", whole, "ms",
           "< 5 ms", whole < 5, note="includes start-up, collection and the cases ORT rejected")

    # --- where the time beyond the floor goes (means over the cases ORT ran) ---
    marks = run.marks[0]["marks"] if run.marks else {}
    startup = (marks.get("collection_finished", run.started) - run.started) * 1000
    browser = sum(marks.get(key, 0.0) for key in ("runtime_start_ms", "probe_ms"))
    print(f"[{NAME}] breakdown per case ORT ran (mean ms; the floor is in-page ORT work):")
    calls = [item["page_calls"][0] for item in ran]
    parts = {
        "in-page: session create": mean(c["create_ms"] for c in calls),
        "in-page: first run + timed run": mean((c["first_run_ms"] or 0) + sum(c["times_ms"] or ()) for c in calls),
        "in-page: tensor transfer (input + output)": mean(c["transfer"]["inputMs"] + c["transfer"]["outputMs"]
                                                          for c in calls),
        "the call beyond the timed in-page work (channel round trip, JSON, untimed run() parts)": mean(c["wall_ms"] - in_page_floor(c) - c["transfer"]["inputMs"]
                                      - c["transfer"]["outputMs"] for c in calls),
        "EpBrowser.run beyond page.call (encode, server, placement parse, stats, /proc RSS)":
            mean(item["ep_run_ms"] - item["page_calls"][0]["wall_ms"] for item in ran),
        "runtest beyond EpBrowser.run (read .pb, onnx.load, sha256, compare)":
            mean(item["phases"].get("call", 0) - item["ep_run_ms"] for item in ran),
        "pytest per item beyond runtest (setup, teardown, reports, terminal)":
            mean(item["protocol_ms"] - item["phases"].get("call", 0) for item in ran),
    }
    for label, value in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"    {value:7.2f}  {label}")
    functions: dict[str, list[float]] = {}
    for item in ran:
        for label, spent in item.get("functions", {}).items():
            functions.setdefault(label, []).append(spent)
    print(f"[{NAME}] Python functions inside an item (mean ms per case ORT ran):")
    for label, values in sorted(functions.items(), key=lambda kv: -sum(kv[1])):
        print(f"    {sum(values) / len(ran):7.2f}  {label}")
    log_lines = [c["log_lines"] for c in calls]
    log_chars = [c["log_chars"] for c in calls]
    figure(NAME, "ORT session log returned per new session", mean(log_lines), "lines",
           note=f"{mean(log_chars) / 1024:.1f} KiB mean, {max(log_chars) / 1024:.0f} KiB max, through the call channel")
    wasm = [c.get("wasm_memory") for c in calls if c.get("wasm_memory")]
    if wasm:
        figure(NAME, "page's wasm memory at the end (sessions are never released)", wasm[-1] / _common.MB, "MiB",
               note=f"{len(ran)} sessions cached in one page")
    figure(NAME, "start-up before the first item (interpreter, plugin, collection)", startup / 1000, "s",
           note=f"then {browser / 1000:.2f} s starting the server, browser and page in the first item")
    quintiles = []
    for k in range(5):
        chunk = ran[k * len(ran) // 5:(k + 1) * len(ran) // 5]
        quintiles.append(f"{median(i['page_calls'][0]['create_ms'] for i in chunk):.1f}")
    figure(NAME, "median session create by fifth of the suite (alphabetical)", None, "",
           note=" / ".join(quintiles) + " ms")
    return per_case >= 25 or run.wall_s >= 60 or mean(overhead) >= 5


def naive_comparison(folder: Path, subset: list[Path]) -> None:
    from _naive_harness import NaiveHarness

    subset_folder = copy_cases(subset, folder / "subset")  # one folder to collect, not hundreds of arguments
    run = _common.run_pytest(["node", "-q", "--browser-ep", "wasm"], subset_folder, timings=folder / "subset.jsonl")
    plugin_by_case = {item["nodeid"].split("::")[0].rsplit("/", 1)[-1]: item for item in run.items}

    harness = NaiveHarness()
    try:
        results = [harness.run_case(case) for case in subset]
    finally:
        harness.close()
    ran = [r for r in results if not r["skipped"]]
    both = [r for r in ran if r["case"] in plugin_by_case]
    naive_ms = mean(r["wall_ms"] for r in both)
    plugin_ms = mean(plugin_by_case[r["case"]]["protocol_ms"] for r in both)
    figure(NAME, f"naive harness, per case ({len(both)} of {len(subset)} evenly spaced cases)", naive_ms, "ms",
           note=f"median {median(r['wall_ms'] for r in both):.1f}; in-page create mean "
                f"{mean(r['create_ms'] for r in both if r['ok']):.1f}; {sum(r['passed'] for r in both)} matched the "
                f"goldens; browser start {harness.startup_s:.2f} s not counted")
    figure(NAME, "plugin, per case, same cases (item protocol)", plugin_ms, "ms",
           note=f"median {median(plugin_by_case[r['case']]['protocol_ms'] for r in both):.1f}; "
                f"{run.summary_line()}; whole subset run {run.wall_s:.1f} s")
    figure(NAME, "naive / plugin per-case time", naive_ms / plugin_ms, "x",
           note=f"medians: naive {median(r['wall_ms'] for r in both):.1f} ms, plugin "
                f"{median(plugin_by_case[r['case']]['protocol_ms'] for r in both):.1f} ms")


def round_trip_cost(rounds: int = 200) -> None:
    """The floor of any call into the page: an empty page.evaluate (through Playwright's driver) against
    HarnessPage.call('probe') over the page's WebSocket channel, interleaved."""
    from pytest_browserml.browser.launch import ExecutionProvider
    from pytest_browserml.runner import Runtime

    ep = ExecutionProvider.parse("wasm")
    runtime = Runtime(_common.settings(ep))
    try:
        page = runtime.browser_for(ep).page()
        round_trips, probes = [], []
        for _ in range(rounds):
            started = time.perf_counter()
            page.page.evaluate("() => 0")
            round_trips.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            page.call("probe", ep.to_js())
            probes.append((time.perf_counter() - started) * 1000)
    finally:
        runtime.close()
    figure(NAME, "HarnessPage.call('probe') over the channel", median(probes), "ms",
           note=f"an empty page.evaluate through Playwright's driver: {median(round_trips):.2f} ms (medians)")


def log_level_cost(subset: list[Path]) -> None:
    """On webgpu and webnn the plugin creates sessions at ORT log level 0 (for the placement log; wasm at 2):
    what that costs in the page, on these wasm cases."""
    from _naive_harness import NaiveHarness

    harness = NaiveHarness()
    try:
        for case in subset:  # warm up: V8 compiles ORT's wasm functions lazily, on first use
            harness.create_at_level(case, 2)
        times: dict[int, list[dict]] = {0: [], 2: []}
        for index, case in enumerate(subset):
            for level in (0, 2) if index % 2 else (2, 0):
                answer = harness.create_at_level(case, level)
                if answer["ok"]:
                    times[level].append(answer)
    finally:
        harness.close()
    verbose, quiet = (median(a["createMs"] for a in times[level]) for level in (0, 2))
    figure(NAME, "in-page session create at logSeverityLevel 0 (the plugin's level on webgpu and webnn)", verbose, "ms",
           note=f"median of {len(times[0])} cases; {mean(a['chars'] for a in times[0]) / 1024:.1f} KiB of log each")
    figure(NAME, "in-page session create at logSeverityLevel 2 (ORT's default; the plugin's on wasm)", quiet, "ms",
           note=f"median; the verbose log costs {verbose - quiet:.1f} ms a session")


def profile(folder: Path, subset: list[Path]) -> None:
    """cProfile of the pytest process on a subset: where the Python side spends its time."""
    output = folder / "pytest.prof"
    profiled = copy_cases(subset, folder / "profiled")
    command = [sys.executable, "-m", "cProfile", "-o", str(output), "-m", "pytest", "-p", "no:cacheprovider",
               "-q", "--browser-ep", "wasm", "node"]
    started = time.perf_counter()
    subprocess.run(command, cwd=profiled, capture_output=True, text=True)
    wall = time.perf_counter() - started
    stats = pstats.Stats(str(output))
    total = stats.total_tt
    waits = sum(tt for (file, _, name), (_, _, tt, _, _) in stats.stats.items()
                if name in WAITS)
    by_group: dict[str, float] = {}
    for (file, _, name), (_, _, tt, _, _) in stats.stats.items():
        if name in WAITS:
            continue
        by_group[_group(file, name)] = by_group.get(_group(file, name), 0.0) + tt
    print(f"[{NAME}] cProfile of the pytest process on {len(subset)} cases: {wall:.1f} s wall under the profiler, "
          f"{total:.1f} s profiled, of which {waits:.1f} s waiting for the browser (channel socket, epoll, lock)")
    print(f"[{NAME}] Python CPU time by package (s, {len(subset)} cases; the profiler inflates it):")
    for group, seconds in sorted(by_group.items(), key=lambda kv: -kv[1])[:10]:
        print(f"    {seconds:6.2f}  {seconds * 1000 / len(subset):6.2f} ms/case  {group}")
    print(f"[{NAME}] functions by own time, waits excluded (s; cumulative times are unusable: Playwright's sync "
          "API switches greenlets):")
    rows = [(tt, count, f"{_short(file)}:{line} {name}") for (file, line, name), (_, count, tt, _, _)
            in stats.stats.items() if name not in WAITS]
    for seconds, count, label in sorted(rows, reverse=True)[:16]:
        print(f"    {seconds:6.2f}  {count:8d} calls  {label}")


def _short(file: str) -> str:
    for marker in ("site-packages/", "lib/python3.11/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def copy_cases(cases: list[Path], into: Path) -> Path:
    for case in cases:
        shutil.copytree(case, into / "node" / case.name)
    return into


def _group(file: str, name: str) -> str:
    for marker in ("playwright", "pytest_browserml", "onnx", "google/protobuf", "numpy", "_pytest", "pluggy",
                   "asyncio", "xdist", "threading", "http/server", "socketserver", "json"):
        if f"/{marker}" in file:
            return marker
    if file == "~":
        return f"builtins ({name[:40]})" if "onnx" not in name else "onnx (C)"
    return Path(file).name


if __name__ == "__main__":
    main()
