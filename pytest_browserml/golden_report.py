"""The end-of-session account of goldens: what was written, what no test used.

Registered as a pytest plugin. Under pytest-xdist the records arrive with
the workers' test reports, so the controller sees every worker's goldens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .goldens import GoldenFiles, find_goldens


@dataclass(eq=False)  # registered as a plugin: hashed by identity
class GoldenLedger:
    golden_dir: Path
    eps: tuple[str, ...]
    property_name: str
    used: set[str] = field(default_factory=set)
    written: dict[str, tuple[str, ...]] = field(default_factory=dict)
    partial: bool = False  # some tests were deselected or failed to collect: "unused" would lie

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for key, value in report.user_properties:
            if key == self.property_name:
                self.used.add(value["path"])
                if value["written"]:
                    self.written[value["path"]] = tuple(value["changes"])

    def pytest_deselected(self, items) -> None:
        self.partial = True

    def pytest_collectreport(self, report) -> None:
        if report.failed:
            self.partial = True

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter, exitstatus, config: pytest.Config) -> None:
        if hasattr(config, "workerinput"):  # the controller reports for everyone
            return
        lines = [f"written {self._show(path, config)}: {'; '.join(changes) or 'new'}"
                 for path, changes in sorted(self.written.items())]
        unused = self._unused(config, exitstatus)
        if unused and config.getoption("delete_unused_goldens"):
            for path in unused:
                files = GoldenFiles(path)
                for leftover in (files.npz, files.sidecar, files.obtained, files.obtained_sidecar):
                    leftover.unlink(missing_ok=True)
            lines += [f"deleted unused golden {self._show(path, config)}" for path in unused]
        elif unused:
            lines += [f"unused golden (no test used it): {self._show(path, config)}" for path in unused]
            lines.append("delete them with --delete-unused-goldens")
        if lines:
            terminalreporter.write_sep("=", "browserml goldens")
            for line in lines:
                terminalreporter.write_line(line)

    def _unused(self, config: pytest.Config, exitstatus) -> list[Path]:
        """Goldens no test used, only when the whole suite ran (anything less would list the unselected)."""
        whole_suite = (
            not self.partial
            and not config.option.keyword
            and not config.option.markexpr
            and not getattr(config.option, "lf", False)
            and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)
            and (config.args_source != pytest.Config.ArgsSource.ARGS
                 or all(Path(arg).resolve() == config.rootpath for arg in config.args))
        )
        if not whole_suite or not self.golden_dir.is_dir():
            return []
        return [path for path in find_goldens(self.golden_dir)
                if str(path) not in self.used and self._ep_of(path) in (None, *self.eps)]

    @staticmethod
    def _ep_of(path: Path) -> str | None:
        """`test[webgpu].npz` is webgpu's own golden; a golden of an EP that did not run is not unused."""
        stem = path.stem
        if stem.endswith("]") and "[" in stem:
            candidate = stem[stem.rindex("[") + 1:-1]
            return candidate.replace("_", ":") if candidate.split("_")[0] in ("wasm", "webgpu", "webnn") else None
        return None

    @staticmethod
    def _show(path, config: pytest.Config) -> str:
        try:
            return str(Path(path).relative_to(config.rootpath))
        except ValueError:
            return str(path)
