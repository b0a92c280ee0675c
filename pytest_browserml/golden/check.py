"""`browserml.assert_golden`: compare a run with its golden, or write the golden on purpose.

A golden is never written without `--update-goldens`, never half-written
(see goldens.py), and a mismatch leaves the obtained outputs beside it for
review. Reference goldens come from native onnxruntime on the CPU and hold
every EP to them; per-EP goldens hold one EP to what it returned before.
"""

from __future__ import annotations

import hashlib
import math
import os
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .. import model as model_facts
from ..browser import provision
from ..results import RunResult
from . import reference
from . import store as goldens
from .compare import OutputComparison, compare_outputs
from .names import GoldenKey
from .tolerances import BUILTIN, ToleranceLayer, resolve, tolerance_for_value

# A per-EP golden is this device's own earlier output: allow rounding-sized drift only.
SAME_DEVICE = ToleranceLayer("built-in default for per-EP goldens", {"atol": 0.0, "rtol": 0.0, "ulp": 2})
UPDATE_MODES = ("all", "missing")


class GoldenMismatch(AssertionError):
    """Outputs out of tolerance, or no golden to compare with."""


@dataclass(frozen=True)
class GoldenTarget:
    """Where one test's goldens go and how the test is named in messages and commands."""

    golden_dir: Path
    key: GoldenKey
    nodeid_without_ep: str
    nodeid: str
    rootdir: Path
    invocation_dir: Path  # where pytest was started: printed commands name the test from there

    @classmethod
    def of_node(cls, nodeid: str, golden_dir: Path, rootdir: Path, invocation_dir: Path) -> GoldenTarget:
        key, test_id = GoldenKey.of_node(nodeid)
        return cls(Path(golden_dir), key, test_id, nodeid, Path(rootdir), Path(invocation_dir))

    def show(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.rootdir))
        except ValueError:
            return str(path)

    def update_command(self, ep: str) -> str:
        """`pytest <this test> --browser-ep <ep> --update-goldens`, runnable as printed from where pytest ran.

        The node id goes first: `--update-goldens` takes an optional mode, and
        would take a node id after it for one.
        """
        path, _, rest = self.nodeid.partition("::")
        where = os.path.relpath(self.rootdir / path, self.invocation_dir)
        return shlex.join(["pytest", f"{where}::{rest}", "--browser-ep", ep, "--update-goldens"])


@dataclass(frozen=True)
class GoldenPolicy:
    """How this test treats goldens: the update mode, its tolerance layers, where records go."""

    update: str | None  # None, "all" or "missing"
    layers: tuple[ToleranceLayer, ...]  # project settings, then the test's marker
    record: Callable[["GoldenRecord"], None]
    # says where a mismatch was born (localise.Localiser): (result, tolerance_for, passed=, per_ep=) -> Localisation
    localise: Callable | None = None


@dataclass(frozen=True)
class GoldenRecord:
    """What one assert_golden did; travels to the xdist controller in the test report."""

    path: str
    ep: str
    written: bool = False
    changes: tuple[str, ...] = ()
    comparisons: tuple[OutputComparison, ...] = ()
    obtained: str | None = None  # the obtained file, written on a mismatch
    localisation: dict | None = None  # per-node figures and first divergences (localise.py)

    def to_json(self) -> dict:
        return {
            "path": self.path, "ep": self.ep, "written": self.written, "changes": list(self.changes),
            "obtained": self.obtained, "localisation": self.localisation,
            "outputs": [{"name": c.name, "passed": c.passed, "shape": list(c.shape), "dtype": c.dtype,
                         "max_abs_error": c.max_abs_error, "max_ulp": c.max_ulp,
                         "mismatched_percent": c.mismatched_percent, "diagnosis": c.diagnosis,
                         "tolerance": c.tolerance.describe()} for c in self.comparisons],
        }


def assert_golden(result: RunResult, target: GoldenTarget, policy: GoldenPolicy, *, per_ep: bool,
                  name: str | None = None, reference_model: Path | None = None) -> None:
    """`reference_model`: the golden is that model's native onnxruntime outputs on the run's inputs, made
    anew on each call (nothing to update), e.g. to hold an int8 or float16 model to its float32 original."""
    __tracebackhide__ = True
    key = target.key if name is None else GoldenKey(target.key.module, name)
    files = key.golden(target.golden_dir, result.ep if per_ep else None)
    obtained = key.obtained(target.golden_dir, result.ep)
    layers = [SAME_DEVICE if per_ep else BUILTIN, *policy.layers]
    record = GoldenRecord(str(files.npz), result.ep)
    exists = files.npz.exists()
    sidecar = goldens.sidecar_or_none(files.sidecar)
    other_device = _other_device(result, sidecar) if per_ep and exists else []
    if reference_model is not None:
        record = replace(record, path=f"native onnxruntime outputs of {target.show(reference_model)}")
    elif policy.update == "all" or (policy.update == "missing" and not exists):
        if name is not None and _of_another_model(sidecar, result, target):
            policy.record(record)
            raise GoldenMismatch(
                f"{target.show(files.npz)} is the golden of {sidecar['model']}, not of {target.show(result.model)}: "
                f"a different model may not overwrite it. {_own_golden_advice(target, files)}"
            )
        wanted = dict(result.outputs) if per_ep else reference.outputs(result.model, result.inputs)
        old = _readable_or_none(files.npz) if exists else None
        found = goldens.changes(old, wanted)
        metadata = _metadata(result, target, wanted, per_ep, layers, _used_by(sidecar, target))
        if old is None or other_device or any(change.kind != "unchanged" for change in found):
            goldens.write_golden(files, wanted, metadata)
            record = replace(record, written=True, changes=tuple(change.describe() for change in found))
        else:  # same tensors: the sidecar still names this model, these inputs and this run
            goldens.write_sidecar(files, metadata)
        sidecar = goldens.sidecar_or_none(files.sidecar)  # what the update wrote, as a reader will see it
    elif not exists:
        policy.record(record)
        raise GoldenMismatch(f"no golden for this test: {target.show(files.npz)} does not exist."
                             f"{_legacy_note(key, target, files, per_ep and result.ep)}\n"
                             f"Create it with: {target.update_command(result.ep)}  (then review and commit it)")
    if other_device and not record.written:
        policy.record(record)
        raise GoldenMismatch(
            f"the per-EP golden {target.show(files.npz)} was made on another device: {'; '.join(other_device)}.\n"
            f"It is not compared. To replace it with this device's outputs: {target.update_command(result.ep)}"
        )
    if reference_model is not None:
        expected = reference.outputs(reference_model, result.inputs)
    else:
        expected = goldens.read_golden(files.npz, {name: np.asarray(value).size * _WIDEST_ITEM
                                                   for name, value in result.outputs.items()})
    precision = model_facts.read(result.model).precision
    comparisons = compare_outputs(
        result.outputs, expected,
        lambda name, dtype: resolve(layers, ep=result.ep, dtype=dtype, output=name, precision=precision),
        result.inputs,
    )
    passed = all(comparison.passed for comparison in comparisons)
    localisation = policy.localise and policy.localise(
        result, lambda name, dtype: tolerance_for_value(result.ep, dtype, precision, policy.layers, name),
        passed=passed, per_ep=per_ep)
    record = replace(record, comparisons=tuple(comparisons), localisation=localisation and localisation.to_json())
    if passed:
        goldens.remove(obtained)  # this EP's only: another EP's failure stays for review
        policy.record(record)
        return
    if reference_model is not None:
        text = _reference_model_text(result, record.path, comparisons, localisation)
    else:
        text = _mismatch_text(result, target, files, sidecar, comparisons, layers, precision, expected, per_ep,
                              name is not None, localisation)
    try:
        goldens.write_golden(obtained, result.outputs,
                             _metadata(result, target, result.outputs, per_ep, layers, [target.nodeid_without_ep],
                                       reference_model))
    except (OSError, goldens.GoldenError) as error:  # a full disk must not hide what differed
        policy.record(record)
        raise GoldenMismatch(f"{text}\nthe obtained outputs could not be written to {target.show(obtained.npz)}: "
                             f"{error}") from None
    policy.record(replace(record, obtained=str(obtained.npz)))
    raise GoldenMismatch(f"{text}\nobtained outputs written to {target.show(obtained.npz)}")


# Bytes per element of the widest dtype a golden may hold: its outputs need no more than this.
_WIDEST_ITEM = 8


def _of_another_model(sidecar: dict | None, result: RunResult, target: GoldenTarget) -> bool:
    return bool(sidecar) and not goldens.same_model(sidecar.get("model"), target.show(result.model))


def _own_golden_advice(target: GoldenTarget, files: goldens.GoldenFiles) -> str:
    return (f"Give this test its own golden (another name=), or delete {target.show(files.npz)} and "
            f"{target.show(files.sidecar)} to make it from this model.")


def _used_by(sidecar: dict | None, target: GoldenTarget) -> list[str]:
    """The tests that wrote this golden: how the session's account knows a name= golden's tests."""
    return sorted(goldens.used_by(sidecar) | {target.nodeid_without_ep})


def _legacy_note(key: GoldenKey, target: GoldenTarget, files: goldens.GoldenFiles, ep: str | None) -> str:
    """Names with `/`, `\\` or `:` used to become `_`; say so when such an old golden is there."""
    legacy = key.legacy_golden(target.golden_dir, ep or None)
    if legacy == files.npz or not legacy.is_file():
        return ""
    return (f"\nnote: {target.show(legacy)} is this test's golden under the names of earlier releases; "
            f"rename it (and its .json) to {files.npz.name}")


# What a per-EP golden holds to one device: outputs made on another adapter or by another WebGPU
# implementation (bundle) differ by design, so comparing them near-exactly says nothing.
DEVICE_KEYS = {"adapter": "adapter", "bundle": "onnxruntime-web bundle"}


def _other_device(result: RunResult, sidecar: dict | None) -> list[str]:
    """How the device a per-EP golden was made on differs from this run's (nothing when its sidecar does not say)."""
    made_by = (sidecar or {}).get("made_by", {})
    here = _device_of(result)
    return [f"{label} {made_by[key]!r} there, {here[key]!r} here" for key, label in DEVICE_KEYS.items()
            if key in made_by and made_by[key] != here[key]]


def _device_of(result: RunResult) -> dict:
    environment = result.environment
    return {"adapter": environment.adapter and environment.adapter.describe(), "bundle": environment.ort_web_bundle}


def _readable_or_none(path: Path) -> dict | None:
    """An unreadable old golden is replaced on update; its problem is not the new one's."""
    try:
        return goldens.read_golden(path)
    except goldens.GoldenError:
        return None


def _mismatch_text(result: RunResult, target: GoldenTarget, files: goldens.GoldenFiles, sidecar: dict | None,
                   comparisons: Sequence[OutputComparison], layers: Sequence[ToleranceLayer], precision,
                   expected: dict, per_ep: bool, shared: bool, localisation) -> str:
    failed = [c for c in comparisons if not c.passed]
    lines = [f"{len(failed)} of {len(comparisons)} outputs differ from the golden {target.show(files.npz)} "
             f"on {result.ep}"]
    stale = sidecar is None or not per_ep and not _same_model_and_inputs(sidecar, result)
    if sidecar:
        lines[0] += f" (made by {_made_by(sidecar)})"
        if sidecar.get("model_sha256") not in (None, result.model_sha256):
            lines.append("note: the golden was made from a different model file (sha256 differs)")
        if sidecar.get("inputs") and sidecar["inputs"] != _input_digests(result.inputs):
            lines.append("note: the golden was made from different inputs (their digests differ)")
    lines += [c.format() for c in failed]
    lines += [f"output {c.name!r}: within tolerance ({c.tolerance.describe()})" for c in comparisons if c.passed]
    if localisation:
        lines.append(localisation.format())
    if shared and _of_another_model(sidecar, result, target):  # an update would be refused
        lines.append(f"it is the golden of {sidecar['model']}, which this model may not overwrite. "
                     f"{_own_golden_advice(target, files)}")
    elif per_ep or stale:
        lines.append(f"if this change is intended, run: {target.update_command(result.ep)}")
    else:
        lines += _reference_advice(result, expected, failed, layers, precision)
    return "\n".join(lines)


def _reference_model_text(result: RunResult, reference_outputs: str, comparisons: Sequence[OutputComparison],
                          localisation) -> str:
    failed = [c for c in comparisons if not c.passed]
    return "\n".join([f"{len(failed)} of {len(comparisons)} outputs differ from the {reference_outputs} on {result.ep}",
                      *(c.format() for c in failed),
                      *(f"output {c.name!r}: within tolerance ({c.tolerance.describe()})" for c in comparisons if c.passed),
                      *([localisation.format()] if localisation else [])])


def _same_model_and_inputs(sidecar: dict, result: RunResult) -> bool:
    return sidecar.get("model_sha256") == result.model_sha256 and sidecar.get("inputs") == _input_digests(result.inputs)


def _reference_advice(result: RunResult, expected: dict, failed: Sequence[OutputComparison],
                      layers: Sequence[ToleranceLayer], precision) -> list[str]:
    """What helps when the golden is the reference's output of this very model and input.

    --update-goldens would write the same reference and fail again, so name a
    tolerance (the smallest atol that passes, checked by comparing again), a
    per-EP golden, or an xfail.
    """
    ep = result.ep
    lines = [f"the golden is native onnxruntime's output for this model and these inputs: --update-goldens would "
             f"write it again and {ep} would fail again. What helps:"]
    outputs = {c.name: {ep: {"atol": _round_up(c.max_abs_error)}} for c in failed
               if c.max_abs_error is not None and math.isfinite(c.max_abs_error)}
    suggested = ToleranceLayer("the suggested marker", {"outputs": outputs})
    tolerance = lambda name, dtype: resolve([*layers, suggested], ep=ep, dtype=dtype, output=name,  # noqa: E731
                                            precision=precision)
    if len(outputs) == len(failed) and all(c.passed for c in compare_outputs(
            {name: result.outputs[name] for name in outputs}, {name: expected[name] for name in outputs}, tolerance)):
        lines.append(f"- a tolerance, the smallest atol that passes: @pytest.mark.tolerance(outputs={outputs!r})")
    lines.append(f"- its own golden: assert_golden(result, per_ep=True) holds {ep} to its own earlier outputs")
    lines.append(f"- for a known defect of {ep}: @pytest.mark.xfail(reason=...) on this test")
    return lines


def _round_up(value: float) -> float:
    """`value` rounded up to two significant digits, for a tolerance that reads well."""
    if value <= 0:
        return 0.0
    step = 10.0 ** (math.floor(math.log10(value)) - 1)
    return float(f"{math.ceil(value / step) * step:.2g}")


def _made_by(sidecar: dict) -> str:
    made_by = sidecar.get("made_by", {})
    if "reference" in made_by:
        return made_by["reference"]
    return ", ".join(f"{key} {value}" for key, value in made_by.items() if value)


def _metadata(result: RunResult, target: GoldenTarget, arrays: dict, per_ep: bool,
              layers: Sequence[ToleranceLayer], used_by: list[str], reference_model: Path | None = None) -> dict:
    environment = result.environment
    if per_ep:
        made_by = {"ep": environment.ep, "device": environment.device, "browser": environment.browser_version,
                   "ort_web": environment.ort_web_version, **_device_of(result)}
    else:
        made_by = {"reference": reference.describe()}
    if reference_model is not None:
        made_by["reference_model"] = {"path": target.show(reference_model),
                                      "sha256": provision.file_sha256(reference_model)}
    return {
        "format": 1,
        "test": target.nodeid,
        "used_by": used_by,
        "kind": "per-EP" if per_ep else "reference",
        "model": target.show(result.model),
        "model_sha256": result.model_sha256,
        "inputs": _input_digests(result.inputs),
        "made_by": made_by,
        "compared_on": {"ep": environment.ep, "device": environment.device, "browser": environment.browser_version,
                        "ort_web": environment.ort_web_version, **_device_of(result)},
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

