"""The real-model corpus (tests/test_corpus.py): wall time per model on wasm, and the README's model x EP table.

    python bench/bench_corpus.py                      # wasm: wall time, p50 and verdict per corpus test
    python bench/bench_corpus.py --eps wasm webgpu webnn --table   # also the Markdown table of the README

Runs the corpus through pytest with a JSON report (the wheels and the encoders come from the cache after
the first run); prints one figure line per test and the total.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from _common import ROOT, figure, run_pytest

from pytest_browserml import model as model_facts
from pytest_browserml.budget.limits import format_value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eps", nargs="+", default=["wasm"], help="EPs to run the corpus on (default wasm)")
    parser.add_argument("--table", action="store_true", help="print the README's Markdown table")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "corpus.json"
        eps = [option for ep in args.eps for option in ("--browser-ep", ep)]
        run = run_pytest(["tests/test_corpus.py", *eps, "-p", "no:randomly", "-q", "--browserml-report", str(report)],
                         cwd=ROOT, timeout=1800)
        figure("corpus", "pytest", run.wall_s, "s", note=run.summary_line())
        rows = json.loads(report.read_text())["tests"] if report.exists() else []
    for row in rows:
        figure("corpus", f"{row['test'].split('::')[-1]} [{row['ep']}]", row["duration_s"], "s",
               note=f"{row['verdict']}, p50 {_p50(row)}")
    for ep in args.eps:
        total = sum(row["duration_s"] for row in rows if row["ep"] == ep)
        figure("corpus", f"total on {ep}", total, "s", note=f"{sum(row['ep'] == ep for row in rows)} tests")
    if args.table:
        print("\n".join(table(rows, args.eps)))
    return 0 if run.returncode in (0, 1) else run.returncode


def table(rows: list[dict], eps: list[str]) -> list[str]:
    """test x EP: verdict, worst abs error, tolerance class, p50, peak memory, compute/shape fallback nodes."""
    lines = ["| test | EP | verdict | worst abs error | tolerance class | p50 | memory | fallback (compute/shape) |",
             "|---|---|---|---|---|---|---|---|"]
    order = {ep: index for index, ep in enumerate(eps)}
    for row in sorted(rows, key=lambda row: (row["test"], order.get(row["ep"], 99))):
        runs = row["runs"]
        outputs = [output for golden in row["goldens"] for output in golden["outputs"]]
        worst = max((output["max_abs_error"] for output in outputs if output["max_abs_error"] is not None),
                    default=None)
        memory_figure = "gpu_memory" if row["ep"] == "webgpu" else "wasm_memory"
        memory = max((run["figures"].get(memory_figure) or 0 for run in runs), default=0)
        fallback = "/".join(str(max((run.get(key) or 0 for run in runs), default=0))
                            for key in ("fallback_nodes", "shape_nodes")) if runs else "-"
        lines.append(f"| {row['test'].split('::')[-1]} | {row['ep']} | {row['verdict']} | "
                     f"{'-' if worst is None else f'{worst:.3g}'} | {_precision(runs)} | {_p50(row)} | "
                     f"{format_value(memory, 'size') if memory else '-'} | {fallback} |")
    return lines


def _p50(row: dict) -> str:
    values = [run["figures"].get("latency_p50") for run in row["runs"]]
    values = [value for value in values if value is not None]
    return format_value(max(values), "time") if values else "-"


def _precision(runs: list[dict]) -> str:
    precisions = {(facts.precision.kind if facts.precision else "float32")
                  for facts in (model_facts.read(Path(run["model"])) for run in runs)}
    return ", ".join(sorted(precisions)) or "-"


if __name__ == "__main__":
    sys.exit(main())
