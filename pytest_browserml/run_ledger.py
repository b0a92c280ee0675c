"""The figures of every run, gathered where the session is reported.

Each `browserml.run` adds its figures to its test report; under pytest-xdist
they travel with the report to the controller, which saves the baseline
(`--budget-save NAME`) once, with every worker's figures in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from . import baselines

RUN_PROPERTY = "browserml_run"


def baseline_path(config: pytest.Config, name: str) -> Path:
    return config.rootpath / ".browserml" / "baselines" / f"{name}.json"


@dataclass(eq=False)  # registered as a plugin: hashed by identity
class RunLedger:
    save_as: Path | None
    entries: list[dict] = field(default_factory=list)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call":
            self.entries += [value for key, value in report.user_properties if key == RUN_PROPERTY]

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.save_as and self.entries and not hasattr(session.config, "workerinput"):
            baselines.save(self.save_as, self.entries)

    def pytest_terminal_summary(self, terminalreporter, config: pytest.Config) -> None:
        if self.save_as and self.entries and not hasattr(config, "workerinput"):
            terminalreporter.write_line(f"browserml: saved the figures of {len(self.entries)} runs to {self.save_as}")
