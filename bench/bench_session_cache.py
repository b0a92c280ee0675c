"""The session cache: one model used by 50 tests is created once per EP per worker.

Writes a test file with 50 tests that run the same model and runs pytest on it in a
subprocess, with `--browserml-report`, on each EP that works here, with -n 0 and -n 2.
Evidence, two independent ways:
  - the JSON report: every run carries figures.session_create, the creation time of the
    session it used; a session created again would report a new value, so the number of
    distinct values per EP is the number of sessions created (the figure is measured with
    performance.now() to microseconds: two creations giving the same float is unlikely);
  - the page itself: bench/_bench_timing.py records each run's answer, whose `cached` flag
    says whether the page found the session in its cache; counted per EP per worker.
Target: sessions created = EPs x workers (1 per EP per worker).

Run: python bench/bench_session_cache.py [--tests 50] [--ep wasm --ep webgpu --ep webnn]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import _common
from _common import figure, mean

NAME = "session-cache"

TEST_FILE = '''
import numpy as np
import pytest
from pathlib import Path

MODEL = Path(__file__).with_name("conv.onnx")


@pytest.mark.parametrize("k", range({tests}))
def test_same_model(browserml, k):
    x = np.full((1, 3, 16, 16), k / 10, np.float32)
    result = browserml.run(MODEL, {{"x": x}}, warmup=0, iterations=1)
    assert result.outputs["y"].shape == (1, 8, 16, 16)
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tests", type=int, default=50)
    parser.add_argument("--ep", action="append")
    args = parser.parse_args()
    eps = args.ep or ["wasm", "webgpu", "webnn"]

    from tests import modelzoo

    print(f"[{NAME}] load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="bench-session-cache-") as tmp:
        folder = Path(tmp)
        modelzoo.conv(folder / "conv.onnx")
        (folder / "test_cache.py").write_text(TEST_FILE.format(tests=args.tests))
        for workers in (0, 2):
            check(folder, eps, workers, args.tests)


def check(folder: Path, eps: list[str], workers: int, tests: int) -> None:
    report = folder / f"report-{workers}.json"
    ep_args = [arg for ep in eps for arg in ("--browser-ep", ep)]
    run = _common.run_pytest(["test_cache.py", "-q", "-n", str(workers), "--browserml-report", str(report), *ep_args],
                             folder, timings=folder / f"timings-{workers}.jsonl")
    label = f"-n {workers}"
    if not report.exists():
        print(f"[{NAME}] {label}: no JSON report written; pytest said:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
        return
    document = json.loads(report.read_text())
    per_ep: dict[str, list[dict]] = defaultdict(list)
    verdicts = Counter()
    for row in document["tests"]:
        verdicts[(row["ep"], row["verdict"])] += 1
        per_ep[row["ep"]].extend(row["runs"])
    figure(NAME, f"{label}: pytest", None, "", note=f"{run.summary_line()}; {run.wall_s:.1f} s wall")

    # The page's own word: answers with cached == false, per EP and worker process.
    created: dict[str, Counter] = defaultdict(Counter)
    workers_of_ep: dict[str, set] = defaultdict(set)
    cached_ms, fresh_ms = defaultdict(list), defaultdict(list)
    ep_of_nodeid = {}
    for row in document["tests"]:
        ep_of_nodeid[row["nodeid"]] = row["ep"]
    for item in run.items:
        ep = ep_of_nodeid.get(item["nodeid"], "?")
        worker = item.get("worker", "?")
        for call in item["page_calls"]:
            workers_of_ep[ep].add(worker)
            if call["cached"]:
                cached_ms[ep].append(call["wall_ms"])
            else:
                created[ep][worker] += 1
                fresh_ms[ep].append(call["wall_ms"])

    for ep in eps:
        runs = per_ep.get(ep, [])
        passed = verdicts.get((ep, "passed"), 0)
        if not runs:
            skipped = {verdict: count for (e, verdict), count in verdicts.items() if e == ep}
            figure(NAME, f"{label} [{ep}] no runs", None, "", note=f"verdicts {skipped}")
            continue
        distinct = len({run["figures"].get("session_create") for run in runs})
        distinct_first = len({run["figures"].get("first_run") for run in runs})
        n_workers = max(1, len(workers_of_ep.get(ep, ())))
        page_created = sum(created[ep].values())
        figure(NAME, f"{label} [{ep}] sessions created, from the report (distinct session_create values)", distinct,
               "", f"== {n_workers} (1 per worker)", distinct == n_workers,
               note=f"{len(runs)} runs in {passed} passed tests; distinct first_run values {distinct_first}")
        figure(NAME, f"{label} [{ep}] sessions created, from the page (answers with cached=false)", page_created, "",
               f"== {n_workers}", page_created == n_workers,
               note=f"per worker {dict(created[ep]) or '{}'}; page.call wall: creating "
                    f"{mean(fresh_ms[ep]) or 0:.1f} ms, cached {mean(cached_ms[ep]) or 0:.1f} ms mean")


if __name__ == "__main__":
    main()
