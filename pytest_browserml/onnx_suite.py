"""ONNX test-data folders as tests: ONNX's own backend suite, run in the browser.

A folder holding `model.onnx` (or `model.ort`) and `test_data_set_N/` folders
of `input_K.pb` and `output_K.pb` tensors is ONNX's backend-test layout. Each
data set becomes one test per EP, and its `output_K.pb` files are the goldens,
so `pytest --browser-ep wasm node/` reports every node test of ONNX as passed,
failed (wrong outputs, or ORT cannot load or run the model) or skipped.
"""

from __future__ import annotations

import fnmatch
import os
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from .browser.launch import ExecutionProvider
from .browser.transport import NUMPY_TYPES, TransportError, cannot_take
from .context import PROJECT_TOLERANCE_KEY, RUNTIME_KEY, usable_ep_browser
from .golden.check import GoldenRecord
from .golden.compare import OutputComparison, compare_outputs
from .golden.tolerances import BUILTIN, resolve
from .onnx_proto import TYPE_NAMES, read_tensor, to_array
from .report.ledger import EP_PROPERTY, GOLDEN_PROPERTY, RUN_PROPERTY, TEST_PROPERTY, run_entry
from .results import ModelRunError
from .runner import ModelFiles

if TYPE_CHECKING:
    from _pytest._code.code import TerminalRepr

MODEL_NAMES = ("model.onnx", "model.ort")
DATA_SET = "test_data_set"
PLUGIN_MODULE = "pytest_browserml.plugin"
_IGNORE_RULES_KEY = pytest.StashKey[tuple]()


class OnnxCaseError(Exception):
    """A data set that cannot be run or whose outputs differ from its goldens; the text says which and why."""


def collect_directory(path: Path, parent: pytest.Collector) -> OnnxTestFolder | None:
    """The folder's tests if it is an ONNX test case; None lets pytest walk it as usual."""
    model = _model_file(path)
    data_sets = _numbered(path.iterdir(), DATA_SET) if model is not None else []
    if data_sets:
        return OnnxTestFolder.from_parent(parent, path=path, model=model, data_sets=data_sets)
    return None


def ignore_case_folder(path: Path, config: pytest.Config) -> bool | None:
    """Whether pytest ignores an ONNX case folder, decided as pytest's hook chain would: the hooks after
    this plugin's in pytest's order, with pytest's own rules (`__pycache__`, virtualenvs, `norecursedirs`)
    at its place worked out without the path parsing it does for every pattern and path (half of
    collecting ONNX's node suite). None (pytest decides) for any other path, and wherever more rules apply:
    `--ignore`, `--ignore-glob`, `collect_ignore`, a conftest's hook, a hook wrapper."""
    try:
        if _model_file(path) is None:
            return None
    except OSError:  # a folder this user may not read: pytest's rules may skip it unread
        return None
    rules = _ignore_rules(config)
    if rules is None:
        return None
    names, later_hooks = rules
    arguments = {"collection_path": path, "config": config}
    for hook in later_hooks:
        if hook is None:  # pytest's own
            in_venv = (path / "pyvenv.cfg").is_file() or (path / "conda-meta" / "history").is_file()
            if (path.name == "__pycache__" or (in_venv and not config.getoption("collect_in_virtualenv"))
                    or names.match(os.path.normcase(path.name)) is not None):
                return True
        elif (decided := hook.function(**{name: arguments[name] for name in hook.argnames})) is not None:
            return decided
    return False


def _ignore_rules(config: pytest.Config):
    """`norecursedirs` as one pattern of names, and the pytest_ignore_collect hooks that pytest would call
    after this plugin's, in its order (None for pytest's own); None where a conftest, an option, a wrapper
    or a hook on pytest's legacy `path` brings rules of its own, or pytest's rules are not those above
    (before 8.3.2). Worked out again when a plugin registers (conftests register during collection)."""
    manager = config.pluginmanager
    plugins = manager.get_plugins()
    cached = config.stash.get(_IGNORE_RULES_KEY, None)
    if cached is not None and cached[0] == len(plugins):
        return cached[1]
    patterns = config.getini("norecursedirs")
    builtin, ours = manager.get_plugin("main"), sys.modules[PLUGIN_MODULE]
    in_call_order = list(reversed(manager.hook.pytest_ignore_collect.get_hookimpls()))  # as pluggy calls them
    plugins_of = [impl.plugin for impl in in_call_order]
    later = in_call_order[plugins_of.index(ours) + 1:] if ours in plugins_of else []
    decidable_here = (
        pytest.version_tuple >= (8, 3, 2) and builtin in [impl.plugin for impl in later]
        and not config.getoption("ignore") and not config.getoption("ignore_glob")
        and not any(impl.hookwrapper or impl.wrapper or "path" in impl.argnames
                    or getattr(impl.plugin, "__file__", "").endswith("conftest.py") for impl in in_call_order)
        and not any(hasattr(plugin, "collect_ignore") or hasattr(plugin, "collect_ignore_glob") for plugin in plugins)
        and not any("/" in pattern or "\\" in pattern for pattern in patterns)  # these match whole paths
    )
    rules = None
    if decidable_here:
        names = "|".join(fnmatch.translate(os.path.normcase(pattern)) for pattern in patterns) or "(?!)"  # as fnmatch
        rules = (re.compile(names), [None if impl.plugin is builtin else impl for impl in later])
    config.stash[_IGNORE_RULES_KEY] = (len(plugins), rules)
    return rules


class OnnxTestFolder(pytest.Directory):
    """One ONNX test case: its model run on each data set on each EP of the session."""

    def __init__(self, *, model: Path, data_sets: list[Path], **kwargs) -> None:
        super().__init__(**kwargs)
        self.model = model  # found by collect_directory: each folder is listed once (suites have thousands)
        self.data_sets = data_sets

    def collect(self) -> Iterator[pytest.Item]:
        for data_set in self.data_sets:
            for ep in self.config.stash[RUNTIME_KEY].settings.eps:
                yield OnnxDataSet.from_parent(self, name=f"{data_set.name}[{ep.id}]", model=self.model,
                                              data_set=data_set, ep=ep)


class OnnxDataSet(pytest.Item):
    """One data set on one EP: feed its inputs, compare the outputs with its output .pb files."""

    def __init__(self, *, model: Path, data_set: Path, ep: ExecutionProvider, **kwargs) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.data_set = data_set
        self.ep = ep

    def runtest(self) -> None:
        test = self.nodeid.rpartition("[")[0]
        self.user_properties += [(EP_PROPERTY, self.ep.id), (TEST_PROPERTY, test)]  # rows of the reports
        ep_browser = usable_ep_browser(self, self.ep, timed=False)  # one untimed run per data set
        model_files = self.config.stash[RUNTIME_KEY].model_files(self.model)
        input_names, output_names = _tensor_names(model_files)
        entries = list(self.data_set.iterdir())  # listed once for inputs and outputs
        inputs = self._read_tensors("input", input_names, entries)
        expected = self._read_tensors("output", output_names, entries)
        try:
            feeds = {name: _feed(name, tensor, self._show(file)) for name, (file, tensor) in inputs.items()}
            result = ep_browser.run(model_files, feeds, warmup=0, iterations=1)
        except TransportError as error:  # e.g. bfloat16: the transport carries no tensor of it
            pytest.skip(f"{self.path.name}: {error}")
        self.user_properties.append((RUN_PROPERTY, run_entry(test, result)))
        # after the run: a bfloat16 golden, which onnx converts (its import), is read only where a run succeeded
        goldens = {name: _values(tensor, self._show(file)) for name, (file, tensor) in expected.items()}
        layers = [BUILTIN, *self.config.stash[PROJECT_TOLERANCE_KEY]]
        comparisons = compare_outputs(
            result.outputs, goldens,
            lambda name, dtype: resolve(layers, ep=self.ep.id, dtype=dtype, output=name,
                                        precision=model_files.facts.precision),
        )
        self.user_properties.append(
            (GOLDEN_PROPERTY, GoldenRecord(str(self.data_set), self.ep.id, comparisons=tuple(comparisons)).to_json()))
        if not all(comparison.passed for comparison in comparisons):
            raise OnnxCaseError(self._mismatch_text(comparisons, {name: file for name, (file, _) in expected.items()}))

    def _read_tensors(self, kind: str, names: list[str] | None, entries: list[Path]) -> dict[str, tuple[Path, object]]:
        """`kind`_K.pb among the data set's `entries` in K order, parsed (TensorProto), keyed by the model's K-th
        name (by the tensor's own name for .ort models)."""
        files = _numbered(entries, kind, ".pb")
        if names is not None and len(files) > len(names):
            raise OnnxCaseError(f"{self._show(self.data_set)} has {len(files)} {kind}_K.pb files, "
                                f"but {self.model.name} has only {len(names)} {kind}s ({', '.join(names)})")
        tensors = {}
        for position, file in enumerate(files):
            tensor = _parse(file, self._show(file))
            name = names[position] if names is not None else tensor.name
            if not name:
                raise OnnxCaseError(f"{self._show(file)}: the tensor has no name, and a .ort model "
                                    f"does not tell which {kind} it is")
            tensors[name] = (file, tensor)
        return tensors

    def _mismatch_text(self, comparisons: list[OutputComparison], goldens: dict[str, Path]) -> str:
        failed = [c for c in comparisons if not c.passed]
        lines = [f"{len(failed)} of {len(comparisons)} outputs differ from the goldens of "
                 f"{self._show(self.data_set)} on {self.ep.id}"]
        for comparison in failed:
            lines.append(comparison.format())
            if comparison.name in goldens:
                lines.append(f"  golden: {self._show(goldens[comparison.name])}")
        lines += [f"output {c.name!r}: within tolerance ({c.tolerance.describe()})" for c in comparisons if c.passed]
        return "\n".join(lines)

    def _show(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.config.rootpath))
        except ValueError:
            return str(path)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style=None) -> str | TerminalRepr:
        """ORT's message or the comparison, without a traceback through the plugin."""
        if isinstance(excinfo.value, (OnnxCaseError, ModelRunError)):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Path, None, str]:
        """The case folder, and a name that says which case (failure headers show only this name)."""
        return self.path, None, f"{self.path.name}/{self.name}"


def _model_file(folder: Path) -> Path | None:
    return next((folder / name for name in MODEL_NAMES if (folder / name).is_file()), None)


def _numbered(entries: Iterable[Path], prefix: str, suffix: str = "") -> list[Path]:
    """The `prefix`_N entries of a folder in N order (10 after 9), as ONNX's runner reads them."""
    pattern = re.compile(rf"{re.escape(prefix)}_(\d+){re.escape(suffix)}")
    found = [(int(match[1]), path) for path in entries if (match := pattern.fullmatch(path.name))]
    return [path for _, path in sorted(found)]


def _tensor_names(model: ModelFiles) -> tuple[list[str] | None, list[str] | None]:
    """The graph's input names without initializers, and its output names (ONNX's backend convention).

    Skips cases with sequence, optional or map values: onnxruntime-web's API takes and returns tensors only.
    None for a .ort model (or one onnx cannot parse; ORT will say what is wrong with it).
    """
    facts = model.facts
    if facts.inputs is None or facts.outputs is None:
        return None, None
    for role, values in (("input", facts.inputs), ("output", facts.outputs)):
        for value in values:
            if value.kind not in ("tensor", "unknown"):
                pytest.skip(f"{model.path.parent.name}: {role} {value.name!r} is of {value.kind} type, "
                            f"but onnxruntime-web takes and returns tensors only")
    return [value.name for value in facts.inputs if not value.optional], [value.name for value in facts.outputs]


def _parse(file: Path, shown: str):
    """The TensorProto in `file`; any problem with the file is this data set's failure."""
    try:
        return read_tensor(file)
    except Exception as error:  # protobuf and OS errors alike mean an unreadable tensor
        raise _unreadable(shown, error) from None


def _values(tensor, shown: str) -> np.ndarray:
    """The tensor's values; one that does not convert is this data set's failure."""
    try:
        return to_array(tensor)
    except Exception as error:  # numpy errors too (values that do not fill the shape)
        raise _unreadable(shown, error) from None


def _feed(name: str, tensor, shown: str) -> np.ndarray:
    """An input's values. One of a type numpy lacks that the transport does not carry either is said so before
    onnx is imported to convert it (0.6-1.1 s in each xdist worker)."""
    dtype = TYPE_NAMES.get(tensor.data_type)
    if dtype is not None and dtype not in NUMPY_TYPES:
        raise cannot_take(name, dtype)
    return _values(tensor, shown)


def _unreadable(shown: str, error: Exception) -> OnnxCaseError:
    return OnnxCaseError(f"cannot read the tensor in {shown}: {type(error).__name__}: {error}")
