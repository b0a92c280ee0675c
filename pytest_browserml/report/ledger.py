"""What people read after a run: the test x EP table, the JSON report, the CI summaries.

Every `browserml` test carries its EP, its runs' figures and its golden
comparisons in its report's user properties; under pytest-xdist those travel
to the controller, so this ledger (a pytest plugin) sees every worker's tests.
At the end it prints one table, writes `--browserml-report` (JSON, schema in
report.schema.json), `--browserml-html`, appends Markdown to
`$GITHUB_STEP_SUMMARY`, and saves `--budget-save`'s baseline.
"""

from __future__ import annotations

import datetime
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ..budget import baselines
from ..budget.limits import format_value
from .rows import TestRow

EP_PROPERTY = "browserml_ep"
TEST_PROPERTY = "browserml_test"
RUN_PROPERTY = "browserml_run"
GOLDEN_PROPERTY = "browserml_golden"
ADAPTER_PROPERTY = "browserml_adapter"
REPORT_VERSION = 2
SCHEMA = Path(__file__).with_name("report.schema.json")


def run_entry(test: str, result) -> dict:
    """What one run adds to its test's report: the baseline entry and the placement, and where it ran."""
    environment = result.environment
    return {**baselines.entry_of(test, result), "model": str(result.model), "device": environment.device,
            "wasm_tier": environment.wasm_tier, "wasm_threads": environment.wasm_threads,
            "fallback_nodes": result.placement.fallback_count,
            "shape_nodes": result.placement.shape_fallback_count,
            "nodes_per_provider": result.placement.nodes_per_provider}


def ep_of(report: pytest.TestReport) -> str | None:
    return next((value for key, value in report.user_properties if key == EP_PROPERTY), None)


@dataclass(eq=False)  # registered as a plugin: hashed by identity
class ReportLedger:
    json_path: Path | None
    html_path: Path | None
    save_as: Path | None  # --budget-save's baseline file
    rootdir: Path
    environment: dict  # reports.environment(settings)
    rows: dict[str, TestRow] = field(default_factory=dict)

    def session_environment(self) -> dict:
        created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        return {**self.environment, "created": created}

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        """The teardown report keeps the flat figures (what JUnit XML shows) but not the call's run and golden
        entries again: under pytest-xdist each report travels to the controller, which read them already."""
        report = yield
        if report.when == "teardown":
            report.user_properties = [(key, value) for key, value in report.user_properties
                                      if key not in (RUN_PROPERTY, GOLDEN_PROPERTY)]
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        ep = ep_of(report)
        if ep is None:
            return
        properties = report.user_properties
        row = self.rows.setdefault(report.nodeid, TestRow(
            report.nodeid, next(v for k, v in properties if k == TEST_PROPERTY), ep))
        row.duration_s += report.duration
        row.adapter = next((value for key, value in properties if key == ADAPTER_PROPERTY), row.adapter)
        if report.when == "call":
            row.runs = [value for key, value in properties if key == RUN_PROPERTY]
            row.goldens = [value for key, value in properties if key == GOLDEN_PROPERTY]
            row.verdict = _verdict(report)
        elif report.failed or (report.when == "setup" and report.skipped):
            row.verdict = "error" if report.failed else _verdict(report)
        if report.failed or report.skipped:
            row.message = _message(report)

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter, config: pytest.Config) -> None:
        if hasattr(config, "workerinput") or not self.rows:  # the controller reports for everyone
            return
        rows = sorted(self.rows.values(), key=lambda row: (row.test, row.ep))
        terminalreporter.write_sep("=", "browserml: tests x EPs")
        shown, hidden = terminal_rows(rows, verbose=config.getoption("verbose") > 0)
        if shown:  # a long table of passes only is all counted below, without a header of its own
            for line in table(shown):
                terminalreporter.write_line(line)
        if hidden:
            counts = Counter(row.verdict for row in hidden)
            terminalreporter.write_line(", ".join(f"{count} {verdict}" for verdict, count in counts.most_common())
                                        + " rows not shown: -v shows them, and --browserml-report and "
                                          "--browserml-html keep every row")
        if self.json_path:
            write_json(self.json_path, rows, self.session_environment())
            terminalreporter.write_line(f"browserml: JSON report written to {self.json_path}")
        if self.html_path:
            from .html import write_html

            write_html(self.html_path, rows, self.session_environment(), self.rootdir)
            terminalreporter.write_line(f"browserml: HTML report written to {self.html_path}")
        if summary := os.environ.get("GITHUB_STEP_SUMMARY"):
            with open(summary, "a", encoding="utf-8") as handle:
                handle.write(markdown(rows) + "\n")
        entries = [run for row in rows for run in row.runs]
        if self.save_as and entries:
            baselines.save(self.save_as, entries)
            terminalreporter.write_line(f"browserml: saved the figures of {len(entries)} runs to {self.save_as}")


TABLE_ROWS = 50  # more rows than this, and the terminal shows only those of QUIET_VERDICTS' complement
QUIET_VERDICTS = ("passed", "skipped", "xfailed")
COLUMNS = ("test", "ep", "adapter", "verdict", "worst abs", "worst ULP", "p50", "peak memory", "fallback")


def cells(row: TestRow) -> tuple[str, ...]:
    return (
        row.test, row.ep, row.adapter.partition(" (")[0] if row.adapter else "-", row.verdict,
        "-" if row.worst_abs is None else f"{row.worst_abs:.3g}",
        "-" if row.worst_ulp is None else f"{row.worst_ulp:.0f}",
        "-" if row.p50_ms is None else format_value(row.p50_ms, "time"),
        "-" if row.peak_memory is None else format_value(row.peak_memory, "size"),
        "-" if row.fallback_nodes is None else str(row.fallback_nodes) + (f" (+{row.shape_nodes} shape)"
                                                                          if row.shape_nodes else ""),
    )


def terminal_rows(rows: list[TestRow], verbose: bool) -> tuple[list[TestRow], list[TestRow]]:
    """The rows the terminal shows and those it only counts: past TABLE_ROWS every row (ONNX's node suite
    made 1,884 lines) only under -v; otherwise the rows to look at, those that did not pass or skip."""
    if verbose or len(rows) <= TABLE_ROWS:
        return rows, []
    shown = [row for row in rows if row.verdict not in QUIET_VERDICTS]
    return shown, [row for row in rows if row.verdict in QUIET_VERDICTS]


def table(rows: list[TestRow]) -> list[str]:
    body = [cells(row) for row in rows]
    widths = [max(len(line[i]) for line in [COLUMNS, *body]) for i in range(len(COLUMNS))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in [COLUMNS, *body]]


def markdown(rows: list[TestRow]) -> str:
    lines = ["### pytest-browserml", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in cells(row)) + " |" for row in rows]
    return "\n".join(lines)


def environment(settings) -> dict:
    """What every report says of the session, from the runner's Settings (passed in: reports import no runner)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        plugin_version = version("pytest-browserml")
    except PackageNotFoundError:  # imported from a folder without package metadata (PYTHONPATH)
        plugin_version = "unknown (not installed)"
    return {
        "plugin_version": plugin_version,
        "eps": [ep.id for ep in settings.eps],
        "ort_web_version": settings.ort_web_version,
        "ort_web_bundles": {ep.id: ep.bundle for ep in settings.eps},
        "webgpu_adapter": settings.webgpu_plan.summary if settings.webgpu_plan else None,
    }


def write_json(path: Path, rows: list[TestRow], environment: dict) -> None:
    document = {"report_version": REPORT_VERSION, "environment": environment,
                "tests": [row.to_json() for row in rows]}
    path.parent.mkdir(parents=True, exist_ok=True)
    # one line: with an indent json's encoder is pure Python (0.25 s for the node suite's 1,884 rows)
    path.write_text(json.dumps(document, allow_nan=False))


def _verdict(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail"):
        return "xpassed" if report.passed else "xfailed"
    return report.outcome


def _message(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail") and report.skipped:
        return report.wasxfail
    if report.skipped and isinstance(report.longrepr, tuple):
        return report.longrepr[2].removeprefix("Skipped: ")
    return report.longreprtext[-4000:]
