"""`browserml.assert_golden`: compare a run with its golden, or write the golden on purpose.

A golden is never written without `--update-goldens`, never half-written
(see goldens.py), and a mismatch leaves the obtained outputs beside it for
review. Reference goldens come from native onnxruntime on the CPU and hold
every EP to them; per-EP goldens hold one EP to what it returned before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from . import goldens, reference
from . import model as model_facts
from .compare import OutputComparison, compare_outputs
from .results import RunResult
from .tolerances import BUILTIN, ToleranceLayer, resolve

# A per-EP golden is this device's own earlier output: allow rounding-sized drift only.
SAME_DEVICE = ToleranceLayer("built-in default for per-EP goldens", {"atol": 0.0, "rtol": 0.0, "ulp": 2})
UPDATE_MODES = ("all", "missing")


class GoldenMismatch(AssertionError):
    """Outputs out of tolerance, or no golden to compare with."""


@dataclass(frozen=True)
class GoldenTarget:
    """Where one test's goldens go and how the test is named in messages."""

    golden_dir: Path
    module_stem: str
    test_name: str  # without the EP id
    nodeid: str
    rootdir: Path

    @property
    def nodeid_without_ep(self) -> str:
        return f"{self.nodeid.split('[')[0].rpartition('::')[0]}::{self.test_name}"

    def files(self, ep: str | None) -> goldens.GoldenFiles:
        return goldens.GoldenFiles.for_test(self.golden_dir, self.module_stem, self.test_name, ep)

    def show(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.rootdir))
        except ValueError:
            return str(path)


@dataclass(frozen=True)
class GoldenPolicy:
    """How this test treats goldens: the update mode, its tolerance layers, where records go."""

    update: str | None  # None, "all" or "missing"
    layers: tuple[ToleranceLayer, ...]  # project settings, then the test's marker
    record: Callable[["GoldenRecord"], None]


@dataclass(frozen=True)
class GoldenRecord:
    """What one assert_golden did; travels to the xdist controller in the test report."""

    path: str
    ep: str
    written: bool = False
    changes: tuple[str, ...] = ()
    comparisons: tuple[OutputComparison, ...] = ()
    obtained: str | None = None  # the obtained file, written on a mismatch

    def to_json(self) -> dict:
        return {
            "path": self.path, "ep": self.ep, "written": self.written, "changes": list(self.changes),
            "obtained": self.obtained,
            "outputs": [{"name": c.name, "passed": c.passed, "shape": list(c.shape), "dtype": c.dtype,
                         "max_abs_error": c.max_abs_error, "max_ulp": c.max_ulp,
                         "mismatched_percent": c.mismatched_percent, "diagnosis": c.diagnosis,
                         "tolerance": c.tolerance.describe()} for c in self.comparisons],
        }


def assert_golden(result: RunResult, target: GoldenTarget, policy: GoldenPolicy, *, per_ep: bool) -> None:
    __tracebackhide__ = True
    files = target.files(result.ep if per_ep else None)
    layers = [SAME_DEVICE if per_ep else BUILTIN, *policy.layers]
    record = GoldenRecord(str(files.npz), result.ep)
    exists = files.npz.exists()
    if policy.update == "all" or (policy.update == "missing" and not exists):
        wanted = dict(result.outputs) if per_ep else reference.outputs(result.model, result.inputs)
        old = _readable_or_none(files.npz) if exists else None
        found = goldens.changes(old, wanted)
        if old is None or any(change.kind != "unchanged" for change in found):
            goldens.write_golden(files, wanted, _metadata(result, target, wanted, per_ep, layers))
            record = replace(record, written=True, changes=tuple(change.describe() for change in found))
    elif not exists:
        policy.record(record)
        raise GoldenMismatch(
            f"no golden for this test: {target.show(files.npz)} does not exist.\n"
            f"Create it with: pytest --update-goldens {target.nodeid}  (then review and commit it)"
        )
    expected = goldens.read_golden(files.npz)
    precision = model_facts.read(result.model).precision
    comparisons = compare_outputs(
        result.outputs, expected,
        lambda name, dtype: resolve(layers, ep=result.ep, dtype=dtype, output=name, precision=precision),
    )
    record = replace(record, comparisons=tuple(comparisons))
    if all(comparison.passed for comparison in comparisons):
        goldens.remove_obtained(files)
        policy.record(record)
        return
    goldens.write_obtained(files, result.outputs, _metadata(result, target, result.outputs, per_ep, layers))
    policy.record(replace(record, obtained=str(files.obtained)))
    raise GoldenMismatch(_mismatch_text(result, target, files, comparisons))


def _readable_or_none(path: Path) -> dict | None:
    """An unreadable old golden is replaced on update; its problem is not the new one's."""
    try:
        return goldens.read_golden(path)
    except goldens.GoldenError:
        return None


def _mismatch_text(result: RunResult, target: GoldenTarget, files: goldens.GoldenFiles,
                   comparisons: Sequence[OutputComparison]) -> str:
    failed = [c for c in comparisons if not c.passed]
    lines = [f"{len(failed)} of {len(comparisons)} outputs differ from the golden {target.show(files.npz)} "
             f"on {result.ep}"]
    sidecar = _sidecar_or_none(files.sidecar)
    if sidecar:
        lines[0] += f" (made by {_made_by(sidecar)})"
        if sidecar.get("model_sha256") not in (None, result.model_sha256):
            lines.append("note: the golden was made from a different model file (sha256 differs)")
        if sidecar.get("inputs") and sidecar["inputs"] != _input_digests(result.inputs):
            lines.append("note: the golden was made from different inputs (their digests differ)")
    lines += [c.format() for c in failed]
    lines += [f"output {c.name!r}: within tolerance ({c.tolerance.describe()})" for c in comparisons if c.passed]
    lines.append(f"obtained outputs written to {target.show(files.obtained)}")
    lines.append(f"if this change is intended, run: pytest --update-goldens {target.nodeid}")
    return "\n".join(lines)


def _sidecar_or_none(path: Path) -> dict | None:
    try:
        return goldens.read_sidecar(path)
    except goldens.GoldenError:
        return None


def _made_by(sidecar: dict) -> str:
    made_by = sidecar.get("made_by", {})
    if "reference" in made_by:
        return made_by["reference"]
    return ", ".join(f"{key} {value}" for key, value in made_by.items() if value)


def _metadata(result: RunResult, target: GoldenTarget, arrays: dict, per_ep: bool,
              layers: Sequence[ToleranceLayer]) -> dict:
    environment = result.environment
    if per_ep:
        made_by = {"ep": environment.ep, "device": environment.device, "browser": environment.browser_version,
                   "ort_web": environment.ort_web_version,
                   "bundle": environment.ort_web_bundle, "adapter": environment.adapter and environment.adapter.describe()}
    else:
        made_by = {"reference": reference.describe()}
    return {
        "format": 1,
        "test": target.nodeid,
        "kind": "per-EP" if per_ep else "reference",
        "model": target.show(result.model),
        "model_sha256": result.model_sha256,
        "inputs": _input_digests(result.inputs),
        "made_by": made_by,
        "compared_on": {"ep": environment.ep, "device": environment.device, "browser": environment.browser_version,
                        "ort_web": environment.ort_web_version, "bundle": environment.ort_web_bundle,
                        "adapter": environment.adapter and environment.adapter.describe()},
        "outputs": {name: {"dtype": str(array.dtype), "shape": list(array.shape)} for name, array in arrays.items()},
        "tolerance": {name: resolve(layers, ep=result.ep, dtype=array.dtype, output=name,
                                    precision=model_facts.read(result.model).precision).describe()
                      for name, array in arrays.items() if array.dtype.kind in "biuf"},
    }


def _input_digests(inputs: dict) -> dict:
    return {
        name: {"dtype": str(array.dtype), "shape": list(array.shape),
               "sha256": hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()}
        for name, array in ((name, np.asarray(value)) for name, value in inputs.items())
    }

