"""The end-of-session account of goldens: what was written, what no test maps to.

Registered as a pytest plugin. A golden is unused only when no collected test
maps to it (any EP, any outcome: golden_names.py answers that), its sidecar
names none of them (assert_golden(name=...) goldens) and no test used it this
run. Only files this store wrote (their sidecar says so) are ever listed or
deleted, and only after the whole suite was collected and ran; otherwise
`--delete-unused-goldens` says why not and what it would have deleted.
Under pytest-xdist the records and the collected ids reach the controller,
which reports for everyone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from . import store as goldens
from .names import EP_TAGS, GoldenIndex, GoldenKey

_ARGS_NOT_WHOLE = {"keyword": "-k", "markexpr": "-m", "lf": "--lf", "collectonly": "--collect-only",
                   "deselect": "--deselect", "ignore": "--ignore", "ignore_glob": "--ignore-glob",
                   "stepwise": "--stepwise"}
_COLLISION = ("two tests map to one golden file: {}\n"
              "rename one of the tests (or its module), or pass each its own name= to assert_golden")


@dataclass(eq=False)  # registered as a plugin: hashed by identity
class GoldenLedger:
    golden_dir: Path
    property_name: str
    index: GoldenIndex = None  # type: ignore[assignment]  # set in __post_init__
    used: set[str] = field(default_factory=set)
    written: dict[str, tuple[str, ...]] = field(default_factory=dict)
    not_whole: list[str] = field(default_factory=list)  # why this session did not collect and run every test
    _indexed: set[str] = field(default_factory=set)  # node ids the workers sent (the controller's index)
    refusals: dict[str, str] = field(default_factory=dict)  # test id -> the golden file it would share

    def __post_init__(self) -> None:
        self.index = GoldenIndex(self.golden_dir)

    @pytest.hookimpl(tryfirst=True)  # before -k and -m deselect: every collected test counts
    def pytest_collection_modifyitems(self, config: pytest.Config, items) -> None:
        for item in items:
            if "browserml" in getattr(item, "fixturenames", ()):
                self.index.add(item.nodeid)
        for line, tests in self.index.collisions().items():
            self.refusals.update(dict.fromkeys(tests, _COLLISION.format(line)))
        if self.refusals and not hasattr(config, "workerinput"):
            raise pytest.UsageError("\n".join(dict.fromkeys(self.refusals.values())))
        # an xdist worker cannot stop the session cleanly: those tests fail at setup instead (refusal)

    def refusal(self, test_id: str) -> str | None:
        """Why this test may not run: it shares a golden file with another test."""
        return self.refusals.get(test_id)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node, ids) -> None:
        # every worker sends the same ids: index each once (16 workers x 1,884 node-suite ids took seconds)
        for nodeid in ids:
            if nodeid not in self._indexed:
                self._indexed.add(nodeid)
                self.index.add(nodeid)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed and report.when != "call":
            self._not_whole(f"{report.nodeid} did not run ({report.when} failed)")
        if report.when != "call":
            return
        for key, value in report.user_properties:
            if key == self.property_name:
                self.used.add(value["path"])
                if value["written"]:
                    self.written[value["path"]] = tuple(value["changes"])

    def pytest_deselected(self, items) -> None:
        self._not_whole("tests were deselected")

    def pytest_collectreport(self, report) -> None:
        if report.failed:
            self._not_whole(f"{report.nodeid or 'a file'} failed to collect")

    def pytest_keyboard_interrupt(self) -> None:
        self._not_whole("the session was interrupted")

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if session.shouldstop or session.shouldfail:
            self._not_whole(f"the session stopped early ({session.shouldstop or session.shouldfail})")

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter, exitstatus, config: pytest.Config) -> None:
        if hasattr(config, "workerinput"):  # the controller reports for everyone
            return
        lines = [f"written {self._show(path, config)}: {'; '.join(changes) or 'new'}"
                 for path, changes in sorted(self.written.items())]
        reasons = self._reasons(config, exitstatus)
        unused, kept = self._unused() if self.golden_dir.is_dir() else ([], [])
        delete = config.getoption("delete_unused_goldens")
        if reasons and delete:
            lines.append(f"--delete-unused-goldens deleted nothing: {'; '.join(reasons)}")
            lines += [f"would have deleted {self._show(path, config)}" for path in unused
                      if path.parent.name in self.index.folders]
        elif not reasons and unused and delete:
            for path in unused:
                _delete(path)
            lines += [f"deleted unused golden {self._show(path, config)}" for path in unused]
        elif not reasons and unused:
            lines += [f"unused golden (no collected test maps to it): {self._show(path, config)}" for path in unused]
            lines.append("delete them with --delete-unused-goldens")
        if delete and not reasons:
            lines += [f"kept {self._show(path, config)}: no test maps to it, but its sidecar is not one this "
                      "store writes" for path in kept]
        if lines:
            terminalreporter.write_sep("=", "browserml goldens")
            for line in lines:
                terminalreporter.write_line(line)

    def _not_whole(self, reason: str) -> None:
        if reason not in self.not_whole:
            self.not_whole.append(reason)

    def _reasons(self, config: pytest.Config, exitstatus) -> list[str]:
        """Why this session cannot tell unused goldens (empty when every test was collected and ran)."""
        reasons = list(self.not_whole)
        reasons += [f"{flag} was given" for name, flag in _ARGS_NOT_WHOLE.items() if getattr(config.option, name, None)]
        source = config.args_source
        if source == pytest.Config.ArgsSource.ARGS and any(Path(arg).resolve() != config.rootpath for arg in config.args):
            reasons.append(f"only {' '.join(config.args)} was collected")
        if source == pytest.Config.ArgsSource.INVOCATION_DIR and config.invocation_params.dir != config.rootpath:
            reasons.append(f"only {config.invocation_params.dir} was collected (not the rootdir)")
        if exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
            reasons.append(f"pytest exits with {pytest.ExitCode(exitstatus).name}")
        if not self.index.test_ids:
            reasons.append("no browserml test was collected")
        return reasons

    def _unused(self) -> tuple[list[Path], list[Path]]:
        """Goldens no collected test maps to: those this store wrote, and other .npz files (kept)."""
        unused, kept = [], []
        for path in goldens.find_goldens(self.golden_dir):
            if str(path) in self.used or self.index.owners(path):
                continue
            sidecar = goldens.sidecar_or_none(goldens.GoldenFiles(path).sidecar)
            if not goldens.is_store_sidecar(sidecar):
                kept.append(path)
            elif not self._claimed(sidecar):
                unused.append(path)
        return unused, kept

    def _claimed(self, sidecar: dict) -> bool:
        """Whether a collected test wrote this golden (the only record of a name= golden's tests)."""
        writers = goldens.used_by(sidecar)
        writers.add(GoldenKey.of_node(sidecar["test"])[1])  # sidecars before used_by name only their writer
        return bool(writers & self.index.test_ids)

    @staticmethod
    def _show(path, config: pytest.Config) -> str:
        try:
            return str(Path(path).relative_to(config.rootpath))
        except ValueError:
            return str(path)


def _delete(npz: Path) -> None:
    """The golden and the obtained files of every EP beside it, each only if this store wrote it."""
    stem = npz.name[: -len(".npz")]
    names = [npz.name, stem + goldens.OBTAINED_NPZ, *(f"{stem}[{tag}]{goldens.OBTAINED_NPZ}" for tag in EP_TAGS)]
    for name in names:
        files = goldens.GoldenFiles(npz.with_name(name))
        if goldens.is_store_sidecar(goldens.sidecar_or_none(files.sidecar)):
            goldens.remove(files)
